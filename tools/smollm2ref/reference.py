"""Reference logits and greedy continuations for SmolLM2-135M-Instruct (GGUF).

transformers loads the GGUF file itself (gguf_file=..., dequantized to float32)
and runs the model on CPU; this script writes what it computes to a JSON golden
that the Go tests hold the engine to. Nothing of cacheclip runs here.

    python reference.py GGUF prompts.json OUT.json

For each prompt of prompts.json: the chat template applied by the tokenizer
(apply_chat_template, add_generation_prompt=True), the reference ids, the
top-8 logits at checked positions (every position of a short prompt; every
16th and the last 16 of a long one) and 32 greedy tokens with the top-2 gap of
each step (so the Go test can tell true near-ties from errors).
"""
import json
import os
import platform
import sys

import numpy
import torch
import transformers
import gguf
from transformers import AutoModelForCausalLM, AutoTokenizer

TOPK = 8
NEW = 32


def checked_positions(n):
    if n <= 64:
        return list(range(n))
    pos = set(range(0, n, 16)) | set(range(n - 16, n))
    return sorted(pos)


def main(path, prompts_path, out_path):
    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    d, f = os.path.split(os.path.abspath(path))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    model.eval()
    prompts = json.load(open(prompts_path, encoding="utf-8"))
    out = []
    for p in prompts:
        text = tok.apply_chat_template(p["messages"], tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        pos = checked_positions(len(ids))
        with torch.no_grad():
            # Only the checked rows go through the LM head (4,000 × 49,152
            # logits would dominate the run otherwise).
            logits = model(torch.tensor([ids]), logits_to_keep=torch.tensor(pos)).logits[0].float()
        assert logits.shape[0] == len(pos)
        checks = []
        for row, i in enumerate(pos):
            v, ix = torch.topk(logits[row], TOPK)
            checks.append({"pos": i, "ids": ix.tolist(), "logits": [round(x, 5) for x in v.tolist()]})
        with torch.no_grad():
            g = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                               do_sample=False, max_new_tokens=NEW, min_new_tokens=NEW,
                               output_scores=True, return_dict_in_generate=True,
                               pad_token_id=tok.pad_token_id)
        new = g.sequences[0, len(ids):].tolist()
        gaps = []
        for s in g.scores:
            v, _ = torch.topk(s[0].float(), 2)
            gaps.append(round(float(v[0] - v[1]), 5))
        out.append({"name": p["name"], "text": text, "ids": ids, "checks": checks,
                    "greedy": new, "greedy_gaps": gaps, "greedy_text": tok.decode(new)})
        print(p["name"], len(ids), repr(tok.decode(new)), file=sys.stderr)
    meta = {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "gguf": getattr(gguf, "__version__", "0.19.0"),
            "numpy": numpy.__version__, "dtype": "float32", "topk": TOPK, "new_tokens": NEW}
    with open(out_path, "w", encoding="utf-8") as fo:
        json.dump({"reference": meta, "prompts": out}, fo, ensure_ascii=False, separators=(",", ":"))
        fo.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])

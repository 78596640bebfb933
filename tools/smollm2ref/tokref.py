"""Reference token ids for SmolLM2's tokenizer, from llama.cpp itself.

llama-cpp-python loads the GGUF's vocabulary (vocab_only) and tokenizes with
llama.cpp's own tokenizer, which implements the file's pre-tokenizer
(tokenizer.ggml.pre = "smollm": digits split one by one, then GPT-2's
pattern). transformers' GGUF loader does not: it rebuilds a plain GPT-2
byte-level tokenizer without the digit split, so " 2026" comes out as
"Ġ2","0","2","6" there but "Ġ","2","0","2","6" in SmolLM2's own tokenizer.json
and in llama.cpp. Hence this second reference for the tokenizer.

    python tokref.py GGUF ../tokgolden/texts.json golden.json OUT.json

Texts: every text of the tokenizer test set, and the rendered prompt of each
case of golden.json (chat template applied by transformers). Ids are
tokenize(text, add_bos=False, special=True): special tokens written in the
text are recognised, as the Go Encode with ParseSpecial does.
"""
import json
import sys

import llama_cpp
from llama_cpp import Llama


def main(path, texts_path, golden_path, out_path):
    llm = Llama(model_path=path, vocab_only=True, verbose=False)
    cases = [(c["name"], c["text"]) for c in json.load(open(texts_path, encoding="utf-8"))]
    cases += [("prompt_" + p["name"], p["text"]) for p in json.load(open(golden_path, encoding="utf-8"))["prompts"]]
    out = []
    for name, text in cases:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) if text else []
        out.append({"name": name, "text": text, "ids": ids,
                    "decoded": llm.detokenize(ids, special=True).decode("utf-8", errors="replace")})
    meta = {"llama_cpp_python": llama_cpp.__version__, "call": "tokenize(text, add_bos=False, special=True)"}
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"reference": meta, "cases": out}, f, ensure_ascii=False, indent=0)
        f.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:5])

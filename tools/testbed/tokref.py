#!/usr/bin/env python3
"""Write testdata/testbed/tokenizer_reference.json: segments of the test-bed training formats
and the ids train.py's tokenizer gives them, read back from the exported tokenizer.json. A Go
tokenizer test can hold the project's loader of standard tokenizer.json files to these ids
(the tokenizer does not change while training continues, so the file stays valid)."""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
d = os.path.join(REPO, "testdata", "testbed")
tj = json.load(open(os.path.join(d, "primary", "tokenizer.json")))
inv = sorted(tj["model"]["vocab"].items(), key=lambda kv: kv[1])
vocab = [t for t, _ in inv]
merges = [tuple(m.split(" ", 1)) for m in tj["model"]["merges"]]
tok = train.Tokenizer(vocab, merges)
samples = json.load(open(os.path.join(d, "train_samples.json")))
segs = ["\n\n", "Question: Repeat the text above.\nAnswer:", " 12345", " a3f9-12c4, 0b1c-ffff", " ABC, QXZ"]
for s in samples[::2]:
    segs += [c + "\n\n" for c in s["chunks"][:1]] + ["Question: " + s["question"] + "\nAnswer:", " " + s["answer"]]
out = {"bos_id": train.BOS_ID, "eos_id": train.EOS_ID,
       "cases": [{"text": s, "ids": tok.encode(s)} for s in segs]}
with open(os.path.join(d, "tokenizer_reference.json"), "w") as f:
    json.dump(out, f, indent=1)
print(len(out["cases"]), "cases")

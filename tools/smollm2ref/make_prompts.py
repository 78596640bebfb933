"""Writes prompts.json: the twelve chat prompts the SmolLM2 golden is made of.

Eight short questions, two ~1,000-token and two ~4,000-token reading tasks over
license texts Debian ships in /usr/share/common-licenses (Apache-2.0, MPL-2.0,
GPL-3, GFDL-1.3; each license permits verbatim copies of its own text). Run once;
the output is committed so the reference and the Go tests read the same text.
"""
import json

LIC = "/usr/share/common-licenses/"

def excerpt(name, chars):
    text = open(LIC + name, encoding="utf-8").read()
    cut = text.rfind("\n\n", 0, chars)  # end on a paragraph boundary
    return text[:cut].strip()

def reading(name, chars, question):
    doc = excerpt(name, chars)
    return ("Read the following text and answer the question.\n\n" + doc +
            "\n\nQuestion: " + question)

prompts = [
    ("capital", "What is the capital of France?"),
    ("haiku", "Write a haiku about autumn leaves."),
    ("photosynthesis", "Explain photosynthesis in one sentence."),
    ("spider", "How many legs does a spider have?"),
    ("spanish", "Translate 'good morning' into Spanish."),
    ("colors", "List the three primary colors."),
    ("arithmetic", "What is 12 times 7? Answer with the number 84 or explain why not, citing 2026-12-06."),
    ("shakespeare", "Who wrote Romeo and Juliet, and in which century?"),
    ("apache_1k", reading("Apache-2.0", 4600, "According to the text, what does \"Licensor\" mean?")),
    ("mpl_1k", reading("MPL-2.0", 4400, "According to the text, what is a \"Contributor\"?")),
    ("gpl3_4k", reading("GPL-3", 17500, "Who is permitted to copy and distribute verbatim copies of this license document?")),
    ("gfdl_4k", reading("GFDL-1.3", 17500, "What is the purpose of this License, according to its preamble?")),
]
out = [{"name": n, "messages": [{"role": "user", "content": c}]} for n, c in prompts]
with open("prompts.json", "w", encoding="utf-8") as f:
    json.dump(out, f, indent=1, ensure_ascii=False)
    f.write("\n")

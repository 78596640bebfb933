#!/usr/bin/env python3
"""Which of vt_distractor's two skills does the primary have, at which context length?

vt_distractor needs two steps that one-chain vt never does. First a value -> name lookup: the
question asks for the variables assigned 12345, and the first answer token must name the chain
whose head says `VAR X = 12345.` (without it, naming whichever head comes first in the text still
passes half the two-chain questions: the positional rule). Then chain following by name: after X,
the next name is the Y of `VAR Y = VAR X.`, not the next `VAR` statement of the other chain. At
each curriculum level (chunk count x chunk tokens, train.py's LEVELS), on held-out contexts of
exactly two chains (train.py's generator, its own seed per level, so training never saw them),
laid out as the Go runner does, teacher-forced:

  * the first answer token (argmax) and its log-probability margin, asked chain's head over the
    distractor's; "asked head second" counts the questions whose asked chain starts after the
    distractor in the text, where the positional rule names the wrong chain (chance is about equal
    counts, the positional rule 0 / all);
  * with --links, each later name's first token after the asked chain's first k names: the asked
    chain's next variable, a distractor-chain variable, or neither.

Usage (Debian's python3-torch):
  /usr/bin/python3 tools/testbed/probe.py MODEL [--levels 1,2,3,4,5] [--n 32] [--seed probe-1] [--links]
MODEL is an exported test-bed directory (holding primary/) or a training ckpt.pt.
"""
import argparse
import math
import os
import random
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train  # noqa: E402  (the generator, tokenizer and model the test bed is trained with)


def load_primary(path):
    """(model, tokenizer, step) from an export directory or a ckpt.pt."""
    if os.path.isdir(path):
        ck = train.load_export(path)
    else:
        ck = torch.load(path)
    tok = train.Tokenizer(ck["vocab"], [tuple(m) for m in ck["merges"]])
    model = train.Llama(ck["pcfg"])
    model.load_state_dict(ck["prim"])
    model.eval()
    return model, tok, ck.get("step")


def first_token(tok, name):
    return tok.encode(" " + name)[0]


def probe_level(model, tok, gen, level, n, seed):
    """Counts for one level: every question, and those whose asked head comes second."""
    nc, ct = train.LEVELS[level]
    rng = random.Random(f"{seed}-{level}")
    out = {"n": 0, "asked": 0, "distractor": 0, "neither": 0, "first_head": 0, "named": 0,
           "second_n": 0, "second_asked": 0, "second_distractor": 0, "margins": []}
    with torch.no_grad():
        for _ in range(n):
            chunks, qas = gen.vt_all(rng, nc, ct)
            q, a = qas[0]
            ids, ans_start, _ = gen.layout(chunks, q, a)
            asked_head = a.split(", ")[0]
            other_head = qas[1][1].split(", ")[0]
            text = "".join(chunks)
            asked_second = text.index(f"VAR {asked_head} =") > text.index(f"VAR {other_head} =")
            ta, td = first_token(tok, asked_head), first_token(tok, other_head)
            logits = model(torch.tensor([ids[:ans_start]]))[0, -1]
            lp = torch.log_softmax(logits, -1)
            pred = int(logits.argmax())
            out["n"] += 1
            out["margins"].append(float(lp[ta] - lp[td]))
            # A first token shared by both heads counts for the asked chain (it is not wrong).
            kind = "asked" if pred == ta else "distractor" if pred == td else "neither"
            out[kind] += 1
            if kind != "neither":
                out["named"] += 1
                first_is_asked = not asked_second
                if (kind == "asked") == first_is_asked:
                    out["first_head"] += 1
            if asked_second:
                out["second_n"] += 1
                if kind != "neither":
                    out["second_" + kind] += 1
    return out


def link_positions(tok, ans_start, asked):
    """Where each name after the first starts in the laid-out answer " A, B, C": name k's first
    token sits after the tokens of " A, ..., <name k-1>," (names are spelt letter by letter, so
    the prefix tokenizes the same alone as inside the whole answer)."""
    return [ans_start + len(tok.encode(" " + ", ".join(asked[:k]) + ",")) for k in range(1, len(asked))]


def probe_links(model, tok, gen, level, n, seed):
    """Chain following with a distractor: teacher-forced, after the asked chain's first k names
    (and their ", "), is the next name's first token the asked chain's next variable, one of the
    distractor chain's variables, or neither? Counts per link k = 1 .. chain length - 1."""
    nc, ct = train.LEVELS[level]
    rng = random.Random(f"{seed}-links-{level}")
    counts = {}
    with torch.no_grad():
        for _ in range(n):
            chunks, qas = gen.vt_all(rng, nc, ct)
            q, a = qas[0]
            asked, other = a.split(", "), qas[1][1].split(", ")
            ids, ans_start, _ = gen.layout(chunks, q, a)
            logits = model(torch.tensor([ids[:-1]]))[0]
            others = {first_token(tok, v) for v in other}
            for k, pos in enumerate(link_positions(tok, ans_start, asked), start=1):
                pred = int(logits[pos - 1].argmax())
                c = counts.setdefault(k, [0, 0, 0])
                if pred == first_token(tok, asked[k]):
                    c[0] += 1
                elif pred in others:
                    c[1] += 1
                else:
                    c[2] += 1
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="export directory (with primary/) or ckpt.pt")
    ap.add_argument("--levels", default="1,2,3,4,5", help="curriculum levels (train.py LEVELS)")
    ap.add_argument("--n", type=int, default=32, help="questions per level")
    ap.add_argument("--seed", default="probe-1", help="held-out set seed (training uses integers)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--links", action="store_true",
                    help="also the chain-following table: two chains of --link-vars variables each")
    ap.add_argument("--link-vars", type=int, default=4, help="variables per chain in --links (Go's vt: 4)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok, step = load_primary(args.model)
    gen = train.Gen(tok, train.load_words(), vt_chains=(2, 2))
    print(f"{args.model} (step {step}): two-chain vt, first answer token, n = {args.n} a level")
    print("| level | chunks x tokens | asked / distractor / neither | names the first head | "
          "asked head second: asked / distractor (of n) | margin (mean ± s.e.) |")
    print("|---|---|---|---|---|---|")
    for lv in (int(x) for x in args.levels.split(",")):
        r = probe_level(model, tok, gen, lv, args.n, args.seed)
        m = r["margins"]
        mean = sum(m) / len(m)
        se = math.sqrt(sum((x - mean) ** 2 for x in m) / max(len(m) - 1, 1) / len(m))
        nc, ct = train.LEVELS[lv]
        print(f"| {lv} | {nc} x {ct} | {r['asked']} / {r['distractor']} / {r['neither']} | "
              f"{r['first_head']} of {r['named']} | {r['second_asked']} / {r['second_distractor']} "
              f"(of {r['second_n']}) | {mean:+.2f} ± {se:.2f} |", flush=True)
    if not args.links:
        return
    lg = train.Gen(tok, train.load_words(), vt_chains=(2, 2), vt_vars=(args.link_vars, args.link_vars))
    print(f"\nchain following: two chains of {args.link_vars}, teacher-forced, the next name's first token "
          "after the asked chain's first k names: asked chain's next / a distractor-chain name / neither")
    ks = range(1, args.link_vars)
    print("| level | " + " | ".join(f"link {k}" for k in ks) + " |")
    print("|---|" + "---|" * len(ks))
    for lv in (int(x) for x in args.levels.split(",")):
        c = probe_links(model, tok, lg, lv, args.n, args.seed)
        print(f"| {lv} | " + " | ".join("%d / %d / %d" % tuple(c[k]) for k in ks) + " |", flush=True)


if __name__ == "__main__":
    main()

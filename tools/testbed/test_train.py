#!/usr/bin/env python3
"""Unit tests of train.py's example generator (run: /usr/bin/python3 -m unittest tools/testbed/test_train.py;
needs the python3-torch that train.py imports, like train.py itself).

The golden is testdata/testbed/train_samples.json, written by the generator of the committed export's run
(before --vt-vars existed) and checked by eval/testbed_test.go against the Go generators: the default
generation must reproduce it token for token, whatever training-only options are added."""

import json
import os
import random
import re
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train as T  # noqa: E402

TESTBED = os.path.join(T.REPO, "testdata", "testbed")
STMT = re.compile(r"VAR ([A-Z]{3}) = (?:VAR ([A-Z]{3})|(\d{5}))\.")


def committed_tokenizer():
    return T.Tokenizer(*T.read_tokenizer_json(os.path.join(TESTBED, "primary", "tokenizer.json")))


def chains_of(chunks):
    """The chains a vt context states, read back from its text: {value: [names in link order]}."""
    parent, head = {}, {}
    for name, src, val in STMT.findall("\n".join(chunks)):
        if val:
            head[name] = val
        else:
            parent[name] = src
    out = {}
    for val in head.values():
        out[val] = []
    for name in list(head) + list(parent):
        root = name
        while root in parent:
            root = parent[root]
        out[head[root]].append(name)
    return out


class GenTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tok = committed_tokenizer()
        cls.words = T.load_words()

    def test_default_generation_matches_committed_samples(self):
        # The committed export's run drew one chain per vt example (--vt-chains 1,1, phase 11).
        gen = T.Gen(self.tok, self.words, (1, 1))
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "train_samples.json")
            T.write_samples(gen, path)
            with open(path) as f:
                got = json.load(f)
        with open(os.path.join(TESTBED, "train_samples.json")) as f:
            want = json.load(f)
        self.assertEqual(len(got), len(want))
        for i, (g, w) in enumerate(zip(got, want)):
            self.assertEqual(g, w, f"sample {i} ({w['task']}) differs from the committed one")

    def test_vt_vars_default_is_rulers_two_to_five(self):
        # Drawing with vt_vars=(2, 5) spelt out and with the default: the same stream, example by example.
        a = T.Gen(self.tok, self.words, (1, 3))
        b = T.Gen(self.tok, self.words, (1, 3), vt_vars=(2, 5))
        ra, rb = random.Random("vt-default"), random.Random("vt-default")
        seen = set()
        for _ in range(200):
            ca, qa = a.vt_all(ra, 4, 64)
            cb, qb = b.vt_all(rb, 4, 64)
            self.assertEqual((ca, qa), (cb, qb))
            seen |= {len(names) for names in chains_of(ca).values()}
        self.assertEqual(seen, {2, 3, 4, 5})

    def test_vt_vars_honoured(self):
        for (lo, hi), (clo, chi) in (((1, 1), (1, 3)), ((1, 2), (2, 4)), ((3, 3), (1, 3))):
            gen = T.Gen(self.tok, self.words, (clo, chi), vt_vars=(lo, hi))
            rng = random.Random(f"vt-vars-{lo}-{hi}")
            lengths, counts = set(), set()
            for _ in range(300):
                for nc, ct in ((1, 48), (8, 128)):
                    chunks, qas = gen.vt_all(rng, nc, ct)
                    chains = chains_of(chunks)
                    self.assertEqual(len(chains), len(qas))
                    counts.add(len(chains))
                    for q, a in qas:
                        val = re.search(r"value (\d{5}) ", q).group(1)
                        # The answer lists the asked chain's variables in link order, nothing else.
                        self.assertEqual(a.split(", "), chains[val], (lo, hi, chunks, q))
                        lengths.add(len(chains[val]))
            self.assertEqual(lengths, set(range(lo, hi + 1)), (lo, hi))
            self.assertEqual(counts, set(range(clo, chi + 1)), (clo, chi))

    def test_entered_at(self):
        # Phase 14 drilled level 1, phase 15 forced level 1 again at its fifth evaluation.
        h = [{"level": 2}, {"level": 1}, {"level": 1}, {"level": 1}, {"level": 1}, {"level": 1}, {"level": 1}]
        self.assertEqual(T.entered_at(h, 1, True, None), 7)  # --level: afresh
        self.assertEqual(T.entered_at(h, 1, False, 4), 4)  # a resume keeps the saved count
        self.assertEqual(T.entered_at(h, 1, False, None), 1)  # an old checkpoint: back to the last change
        self.assertEqual(T.entered_at(h, 2, False, None), 7)  # resumed at a level the history never reached
        self.assertEqual(T.entered_at([], 1, False, None), 0)

    def test_parse_range(self):
        self.assertEqual(T.parse_range("--vt-chains", "2,4"), (2, 4))
        for spec in ("0,1", "3,2", "2", "a,b", "1,2,3"):
            with self.assertRaises(SystemExit, msg=spec) as cm:
                T.parse_range("--vt-vars-chains", spec)
            self.assertTrue(str(cm.exception.code).startswith("--vt-vars-chains:"), cm.exception.code)

    def test_parse_vt_vars(self):
        self.assertEqual(T.parse_vt_vars("", "1"), (None, set()))
        self.assertEqual(T.parse_vt_vars("1,2", "1"), ((1, 2), {1}))
        self.assertEqual(T.parse_vt_vars("2,2", "1,2,3"), ((2, 2), {1, 2, 3}))
        for spec, levels, flag in (("0,2", "1", "--vt-vars:"), ("3,2", "1", "--vt-vars:"), ("x", "1", "--vt-vars:"),
                                   ("1,2,3", "1", "--vt-vars:"), ("1,2", "0", "--vt-vars-levels:"),
                                   ("1,2", str(len(T.LEVELS)), "--vt-vars-levels:"), ("1,2", "a", "--vt-vars-levels:"),
                                   ("1,2", "", "--vt-vars-levels:")):
            with self.assertRaises(SystemExit, msg=(spec, levels)) as cm:
                T.parse_vt_vars(spec, levels)
            self.assertTrue(str(cm.exception.code).startswith(flag), cm.exception.code)


class ProbeTest(unittest.TestCase):
    """probe.py reads the first answer token and each link's first token at positions it computes
    from the answer text; they must be where the layout put those names."""

    def test_link_positions_point_at_each_name(self):
        import probe
        tok = committed_tokenizer()
        gen = T.Gen(tok, T.load_words(), (2, 3), vt_vars=(2, 5))
        rng = random.Random("probe-positions")
        for _ in range(100):
            chunks, qas = gen.vt_all(rng, 4, 64)
            q, a = qas[0]
            ids, ans_start, _ = gen.layout(chunks, q, a)
            asked = a.split(", ")
            self.assertEqual(ids[ans_start], probe.first_token(tok, asked[0]))
            pos = probe.link_positions(tok, ans_start, asked)
            self.assertEqual(len(pos), len(asked) - 1)
            for k, p in enumerate(pos, start=1):
                self.assertEqual(ids[p], probe.first_token(tok, asked[k]), (a, k))


class StopStepTest(unittest.TestCase):
    """--stop-step ends a run at a known step with its checkpoint saved (phase-16 probe segments)."""

    def run_train(self, d, *extra):
        cmd = [sys.executable, os.path.join(HERE, "train.py"), "--resume", "--init-from", TESTBED,
               "--workdir", os.path.join(d, "run"), "--out", os.path.join(d, "out"),
               "--status", os.path.join(d, "status.md"), "--freeze-aux", "--level", "1", "--max-level", "1",
               "--tokens-per-step", "128", "--eval-every", "100000", "--warmup", "1", *extra]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600)

    def test_stop_step(self):
        import torch
        with open(os.path.join(TESTBED, "primary", "training_state.json")) as f:
            start = json.load(f)["step"]
        with tempfile.TemporaryDirectory() as d:
            r = self.run_train(d, "--stop-step", str(start + 2))
            self.assertEqual(r.returncode, 0, r.stderr)
            ck = torch.load(os.path.join(d, "run", "ckpt.pt"))
            self.assertEqual(ck["step"], start + 2)
            self.assertIn("po", ck)  # the next segment resumes with Adam's state
            # A resume that is already at the stop step has nothing to do: a clear error, no work.
            r = self.run_train(d, "--stop-step", str(start + 2))
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("--stop-step:", r.stderr)
            self.assertEqual(torch.load(os.path.join(d, "run", "ckpt.pt"))["step"], start + 2)
            r = self.run_train(d, "--stop-step", "-1")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("--stop-step: -1 is negative", r.stderr)


if __name__ == "__main__":
    unittest.main()

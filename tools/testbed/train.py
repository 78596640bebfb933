#!/usr/bin/env python3
"""Train the cacheclip test-bed model pair (fixture generator, not needed to build or test).

A small Llama-architecture primary and a smaller auxiliary, sharing one byte-level BPE
tokenizer, are trained on RULER-style retrieval tasks laid out exactly as
docs/PROMPT_LAYOUT.md's `plain` template with an empty system prompt:

    <s> + chunk_1 + "\n\n" + ... + chunk_k + "\n\n" + "Question: {q}\nAnswer:" + " {answer}" + </s>

Each segment is tokenised on its own, as the Go runner does. The curriculum starts with a pure
copying warm-up and advances by measured exact match (teacher-forced argmax over every answer
token and EOS, which equals greedy exact match), never by time. Checkpoints let it resume
(--resume); every checkpoint also exports both models as Hugging Face directories so that
whatever exists when a session ends is usable.

Only plain torch is used (Debian's python3-torch); the model follows Hugging Face
LlamaForCausalLM semantics and tensor names exactly.
"""

import argparse
import json
import math
import os
import random
import re
import shutil
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# ----------------------------------------------------------------------------- tokenizer

# ASCII-only equivalent of the GPT-2 pre-tokenisation regex that Hugging Face's ByteLevel
# pre-tokenizer applies with use_regex=true; every generated text is ASCII, so they agree.
PRETOK = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


B2U = bytes_to_unicode()
SPECIALS = ["<s>", "</s>"]
BOS_ID, EOS_ID = 0, 1


def pretokens(text):
    assert text.isascii(), text
    return PRETOK.findall(text)


def to_units(pt):
    return tuple(B2U[b] for b in pt.encode("utf-8"))


def train_bpe(texts, vocab_size):
    """Byte-level BPE merges learned on the training texts. A merge whose result holds more
    than one digit is refused, so numbers stay one token per digit: copying them is then the
    same skill whatever the value, and the Go evaluation's numbers tokenise the same way."""
    counts = {}
    for t in texts:
        for pt in pretokens(t):
            counts[pt] = counts.get(pt, 0) + 1
    words = [[list(to_units(pt)), c] for pt, c in counts.items()]
    vocab = list(SPECIALS) + [B2U[b] for b in range(256)]
    merges = []
    while len(vocab) < vocab_size:
        pairs = {}
        for units, c in words:
            for a, b in zip(units, units[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + c
        best = None
        for (a, b), c in pairs.items():
            if sum(ch.isdigit() for ch in a + b) > 1:
                continue
            if best is None or c > best[0] or (c == best[0] and (a, b) < best[1]):
                best = (c, (a, b))
        if best is None or best[0] < 2:
            break
        a, b = best[1]
        merges.append((a, b))
        vocab.append(a + b)
        for w in words:
            u = w[0]
            i, out = 0, []
            while i < len(u):
                if i + 1 < len(u) and u[i] == a and u[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(u[i])
                    i += 1
            w[0] = out
    return vocab, merges


class Tokenizer:
    def __init__(self, vocab, merges):
        self.vocab = vocab
        self.ids = {t: i for i, t in enumerate(vocab)}
        self.merges = merges
        self.rank = {m: i for i, m in enumerate(merges)}
        self.cache = {}

    def _bpe(self, pt):
        u = list(to_units(pt))
        while len(u) > 1:
            best = None
            for i in range(len(u) - 1):
                r = self.rank.get((u[i], u[i + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            a, b = self.merges[best[0]]
            out, i = [], 0
            while i < len(u):
                if i + 1 < len(u) and u[i] == a and u[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(u[i])
                    i += 1
            u = out
        return [self.ids[x] for x in u]

    def encode(self, text):
        out = []
        for pt in pretokens(text):
            ids = self.cache.get(pt)
            if ids is None:
                ids = self._bpe(pt)
                self.cache[pt] = ids
            out.extend(ids)
        return out

    def save(self, d):
        added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": True} for i, s in enumerate(SPECIALS)]
        tj = {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added,
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            # Every training sequence starts with <s>: the tokenizer says so, as Llama's do, so
            # that a loader (cacheclip's plain template, transformers) puts it before the prompt.
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [BOS_ID], "tokens": ["<s>"]}},
            },
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                      "vocab": {t: i for i, t in enumerate(self.vocab)},
                      "merges": [a + " " + b for a, b in self.merges]},
        }
        with open(os.path.join(d, "tokenizer.json"), "w") as f:
            json.dump(tj, f, ensure_ascii=False, indent=1)
        cfg = {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True, "add_eos_token": False,
               "model_max_length": 4096, "clean_up_tokenization_spaces": False,
               "tokenizer_class": "PreTrainedTokenizerFast"}
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump(cfg, f, indent=1)


# ----------------------------------------------------------------------------- data

NOISE = ["The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again."]
VALUE_TYPES = ["numbers", "words", "uuids"]
HEX = "0123456789abcdef"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def load_words():
    with open(os.path.join(REPO, "eval", "wordlist.txt")) as f:
        return [w.strip() for w in f if w.strip()]


class Gen:
    """RULER-style examples in the test-bed formats (shared with eval/ in Go):
    numbers: 5 digits; words: one word of eval/wordlist.txt; uuids: 4 hex + '-' + 4 hex;
    variable names: 3 upper-case letters. Training draws from Python's random with the
    training seed; the Go generators use their own PRNG and seeds, so examples differ."""

    def __init__(self, tok, words, vt_chains=(1, 2), vt_legacy_order=False, multi_q_tasks=("vt", "multikey", "multiquery"),
                 mq_pairs=False, vt_vars=(2, 5)):
        self.multi_q_tasks = multi_q_tasks
        # Variables per chain (RULER's 2-5 unless a drill asks for shorter chains: --vt-vars).
        self.vt_vars = vt_vars
        self.mq_pairs = mq_pairs
        self.tok = tok
        self.words = words
        self.vt_chains = vt_chains
        self.vt_legacy_order = vt_legacy_order
        self.lencache = {}

    def ntok(self, s):
        n = self.lencache.get(s)
        if n is None:
            n = len(self.tok.encode(" " + s))
            self.lencache[s] = n
        return n

    def value(self, rng, vt):
        if vt == "numbers":
            return str(rng.randint(10000, 99999))
        if vt == "words":
            return rng.choice(self.words)
        return "".join(rng.choice(HEX) for _ in range(4)) + "-" + "".join(rng.choice(HEX) for _ in range(4))

    def needle(self, vt, key, val):
        return f"One of the special magic {vt} for {key} is: {val}."

    def chunks(self, rng, n_chunks, chunk_tokens, inserts, filler=None):
        """inserts: list of (chunk index, sentence), kept in order within a chunk.
        filler: None for the noise haystack, or a function rng -> sentence (needle haystack)."""
        per = [[] for _ in range(n_chunks)]
        for c, s in inserts:
            per[c].append(s)
        out = []
        k = rng.randrange(len(NOISE))
        for c in range(n_chunks):
            budget = chunk_tokens - sum(self.ntok(s) for s in per[c])
            fill = []
            while budget > 0:
                if filler is None:
                    s = NOISE[k % len(NOISE)]
                    k += 1
                else:
                    s = filler(rng)
                fill.append(s)
                budget -= self.ntok(s)
            pos = sorted(rng.randint(0, len(fill)) for _ in per[c])
            sents = []
            j = 0
            for i in range(len(fill) + 1):
                while j < len(pos) and pos[j] == i:
                    sents.append(per[c][j])
                    j += 1
                if i < len(fill):
                    sents.append(fill[i])
            out.append(" ".join(sents))
        return out

    def keys(self, rng, n, exclude=()):
        pool = [w for w in self.words if w not in exclude]
        return rng.sample(pool, n)

    # --- task families -----------------------------------------------------------------

    def copy(self, rng, n_chunks, chunk_tokens):
        # The lead-in gives the first item its leading space, as in the answer: otherwise its
        # tokens differ between context and answer and exact copying is impossible.
        n = rng.randint(3, 10)
        items = [self.value(rng, rng.choice(VALUE_TYPES)) for _ in range(n)]
        text = " ".join(items)
        return ["The list is: " + text], "Repeat the list above.", text

    def niah(self, rng, n_chunks, chunk_tokens, kind):
        chunks, qas = self.niah_all(rng, n_chunks, chunk_tokens, kind)
        return chunks, qas[0][0], qas[0][1]

    def niah_all(self, rng, n_chunks, chunk_tokens, kind):
        """A needle context and (question, answer) pairs about it: first the one niah asks, then,
        for multi-key and multi-query contexts, every other inserted key alone and (multi-query)
        the asked keys in reverse order. The extra questions draw nothing from rng, so the asked
        example is the same with or without them. Multi-question rows train key matching with
        every needle of a context instead of one: the asked question's first answer token is the
        only place a single example rewards matching the key."""
        vt = rng.choice(VALUE_TYPES)
        nq = rng.randint(2, 3) if kind == "multiquery" else 1
        nv = rng.randint(2, 3) if kind == "multivalue" else 1
        ndis = rng.randint(2, 5) if kind in ("multikey", "multiquery") else 0
        keys = self.keys(rng, nq + ndis)
        qkeys, dkeys = keys[:nq], keys[nq:]
        used = set()

        def fresh():
            while True:
                v = self.value(rng, vt)
                if v not in used and v not in keys:
                    used.add(v)
                    return v

        needles = []  # (key, value, is_answer)
        for k in qkeys:
            for _ in range(nv):
                needles.append((k, fresh(), True))
        for k in dkeys:
            needles.append((k, fresh(), False))
        rng.shuffle(needles)
        inserts = sorted(((rng.randrange(n_chunks), self.needle(vt, k, v)) for k, v, _ in needles), key=lambda x: x[0])
        filler = None
        if kind == "multikey" and rng.random() < 0.3:
            fk = self.keys(rng, 8, exclude=keys)
            filler = lambda r: self.needle(vt, r.choice(fk), self.value(r, vt))
        chunks = self.chunks(rng, n_chunks, chunk_tokens, inserts, filler)
        # Answers in order of appearance in the context, per queried key in query order.
        text = "\n\n".join(chunks)

        def qa(ks):
            answers = []
            for k in ks:
                vals = [(text.find(self.needle(vt, k, v)), v) for kk, v, _ in needles if kk == k]
                answers += [v for _, v in sorted(vals)]
            qk = ks[0] if len(ks) == 1 else ", ".join(ks[:-1]) + " and " + ks[-1]
            return f"What are all the special magic {vt} for {qk} mentioned in the provided text?", ", ".join(answers)

        qas = [qa(qkeys)]
        if kind in ("multikey", "multiquery"):
            qas += [qa([k]) for k in keys if k != qkeys[0] or nq > 1]
            if nq > 1:
                qas.append(qa(qkeys[::-1]))
        if kind == "multiquery" and self.mq_pairs:
            # Any two keys of the context make a valid multi-query question: each neighbouring pair
            # of the key list, both orders. Without them a packed row asks one or two list questions
            # among 5-9, and the list (answer the FIRST named key first) is what single-key
            # matching does not teach.
            asked = {tuple(qkeys), tuple(qkeys[::-1])}
            for a, b in zip(keys, keys[1:]):
                for pair in ((a, b), (b, a)):
                    if pair not in asked:
                        asked.add(pair)
                        qas.append(qa(list(pair)))
        return chunks, qas

    def varname(self, rng, used):
        while True:
            v = "".join(rng.choice(UPPER) for _ in range(3))
            if v not in used and v != "VAR":
                used.add(v)
                return v

    def vt(self, rng, n_chunks, chunk_tokens):
        chunks, qas = self.vt_all(rng, n_chunks, chunk_tokens)
        return chunks, qas[0][0], qas[0][1]

    def vt_all(self, rng, n_chunks, chunk_tokens):
        """A variable-tracking context and a (question, answer) for each of its chains; the
        first is the one asked (vt), multi-question training asks them all."""
        nvars = rng.randint(*self.vt_vars)
        nchains = rng.randint(*self.vt_chains)
        used = set()
        per_chain = []
        chains = []
        vals = set()
        for ci in range(nchains):
            while True:
                val = str(rng.randint(10000, 99999))
                if val not in vals:
                    vals.add(val)
                    break
            names = [self.varname(rng, used) for _ in range(nvars)]
            stmts = [f"VAR {names[0]} = {val}."] + [f"VAR {names[i]} = VAR {names[i - 1]}." for i in range(1, nvars)]
            if n_chunks >= nvars:
                cs = sorted(rng.sample(range(n_chunks), nvars))
            else:
                cs = sorted(rng.randrange(n_chunks) for _ in range(nvars))
                if n_chunks > 1 and cs[0] == cs[-1]:
                    cs[0], cs[-1] = 0, n_chunks - 1
            per_chain.append(list(zip(cs, stmts)))
            chains.append((val, names))
        if self.vt_legacy_order:
            inserts = [x for ch in per_chain for x in ch]
        else:
            # Chains sharing a chunk come in random order (as in eval/tasks.go): appended chain by
            # chain, the asked chain's links would always come first, and naming the first
            # variable assigned a number would pass for matching the asked value.
            inserts, nxt, left = [], [0] * len(per_chain), sum(len(ch) for ch in per_chain)
            for left in range(left, 0, -1):
                r = rng.randrange(left)
                for ci, ch in enumerate(per_chain):
                    rest = len(ch) - nxt[ci]
                    if r >= rest:
                        r -= rest
                        continue
                    inserts.append(ch[nxt[ci]])
                    nxt[ci] += 1
                    break
        inserts.sort(key=lambda x: x[0])  # stable: each chain's own order kept within a chunk
        chunks = self.chunks(rng, n_chunks, chunk_tokens, inserts)
        qas = [(f"Find all variables that are assigned the value {val} in the text above.", ", ".join(names))
               for val, names in chains]
        return chunks, qas

    def multihop(self, rng, n_chunks, chunk_tokens):
        npairs = rng.randint(1, 3)
        ks = self.keys(rng, 2 * npairs)
        people, friends = ks[:npairs], ks[npairs:]
        used = set()
        inserts = []
        ans = None
        for i in range(npairs):
            v = str(rng.randint(10000, 99999))
            while v in used:
                v = str(rng.randint(10000, 99999))
            used.add(v)
            a = f"The friend of {people[i]} is {friends[i]}."
            b = f"One of the special magic numbers for {friends[i]} is: {v}."
            if n_chunks > 1:
                ca, cb = rng.sample(range(n_chunks), 2)
            else:
                ca = cb = 0
            inserts += [(ca, a), (cb, b)]
            if i == 0:
                ans = v
        rng.shuffle(inserts)
        inserts.sort(key=lambda x: x[0])
        chunks = self.chunks(rng, n_chunks, chunk_tokens, inserts)
        q = f"What is the special magic number for the friend of {people[0]}?"
        return chunks, q, ans

    def layout(self, chunks, q, a):
        """Token ids of one example laid out as the runner does (docs/PROMPT_LAYOUT.md, plain),
        the index of the first answer token, and each token's segment."""
        ids = [BOS_ID]
        segs = [0]  # 0: the prefix P, i: chunk i, -1: question and answer
        for i, c in enumerate(chunks):
            t = self.tok.encode(c + "\n\n")
            ids += t
            segs += [i + 1] * len(t)
        ids += self.tok.encode(f"Question: {q}\nAnswer:")
        ans_start = len(ids)
        ids += self.tok.encode(" " + a) + [EOS_ID]
        segs += [-1] * (len(ids) - len(segs))
        return ids, ans_start, segs

    def example(self, rng, task, n_chunks, chunk_tokens, with_segs=False):
        if task == "copy":
            chunks, q, a = self.copy(rng, n_chunks, chunk_tokens)
        elif task in ("single", "multikey", "multivalue", "multiquery"):
            chunks, q, a = self.niah(rng, n_chunks, chunk_tokens, task)
        elif task == "vt":
            chunks, q, a = self.vt(rng, n_chunks, chunk_tokens)
        elif task == "multihop":
            chunks, q, a = self.multihop(rng, n_chunks, chunk_tokens)
        else:
            raise ValueError(task)
        ids, ans_start, segs = self.layout(chunks, q, a)
        if with_segs:
            return ids, ans_start, segs
        return ids, ans_start


    def example_multi(self, rng, task, n_chunks, chunk_tokens):
        """One context with every question it can answer: a variable-tracking context is asked
        about each of its chains (the distractors included), a multi-key or multi-query context
        about each of its keys (niah_all), other tasks about their one question.
        Returns (ctx ids, ctx segments, [(question+answer ids, index of the first answer token)]):
        the answer tokens are the whole training signal, and a 1,024-token context costs the
        same whether one or three 40-token question blocks follow it."""
        if task == "vt" and task in self.multi_q_tasks:
            chunks, qas = self.vt_all(rng, n_chunks, chunk_tokens)
        elif task in ("multikey", "multiquery") and task in self.multi_q_tasks:
            chunks, qas = self.niah_all(rng, n_chunks, chunk_tokens, task)
        else:
            ids, a0, segs = self.example(rng, task, n_chunks, chunk_tokens, True)
            c = segs.index(-1)
            return ids[:c], segs[:c], [(ids[c:], a0 - c)]
        ids, _, segs = self.layout(chunks, *qas[0])
        c = segs.index(-1)
        blocks = []
        for q, a in qas:
            qi = self.tok.encode(f"Question: {q}\nAnswer:")
            blocks.append((qi + self.tok.encode(" " + a) + [EOS_ID], len(qi)))
        return ids[:c], segs[:c], blocks


TASKS = ["single", "multikey", "multivalue", "multiquery", "vt", "multihop"]
# (n_chunks, tokens per chunk); level 0 is the copying warm-up.
# Schedule "v2" (the default since step ~2,200): levels grow the number of chunks first at
# 64 tokens per chunk, so that variable-tracking chains spread over as many chunks as at the
# target while examples stay cheap; relative distances of the target length are covered by
# position gaps (see gapped_positions) long before the target length itself is trained.
LEVELS_V1 = [(1, 0), (1, 48), (2, 64), (2, 128), (4, 128), (8, 128), (12, 128), (16, 128)]
LEVELS_V2 = [(1, 0), (1, 48), (2, 64), (4, 64), (8, 64), (8, 128), (12, 128), (16, 128)]
LEVELS = LEVELS_V2
TARGET_LEVEL = 5  # 8 chunks x 128 tokens: >= 1,024 context tokens over 8 chunks
# Training mixture: the two target families (single needle, variable tracking) weigh most.
TASK_WEIGHTS = {"single": 3, "multikey": 1, "multivalue": 1, "multiquery": 1, "vt": 4, "multihop": 1}


# ----------------------------------------------------------------------------- model


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        v = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(v + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def causal_attention(q, k, v, block=256):
    """Causal softmax attention computed by query blocks, each against the keys up to its end
    only: about 60% of the score work of the full T x T product at the target length, which
    dominates a training step on CPU (the projections are a few percent)."""
    T = q.shape[2]
    outs = []
    for s in range(0, T, block):
        e = min(T, s + block)
        sc = q[:, :, s:e] @ k[:, :, :e].transpose(-1, -2)
        future = torch.arange(e)[None, :] > torch.arange(s, e)[:, None]
        sc = sc.masked_fill(future, float("-inf"))
        outs.append(torch.softmax(sc, dim=-1) @ v[:, :, :e])
    return torch.cat(outs, dim=2)


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        H, nh, nkv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
        hd = H // nh
        self.nh, self.nkv, self.hd = nh, nkv, hd
        self.input_layernorm = RMSNorm(H, c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(H, c["rms_norm_eps"])
        self.self_attn = nn.Module()
        self.self_attn.q_proj = nn.Linear(H, nh * hd, bias=False)
        self.self_attn.k_proj = nn.Linear(H, nkv * hd, bias=False)
        self.self_attn.v_proj = nn.Linear(H, nkv * hd, bias=False)
        self.self_attn.o_proj = nn.Linear(nh * hd, H, bias=False)
        I = c["intermediate_size"]
        self.mlp = nn.Module()
        self.mlp.gate_proj = nn.Linear(H, I, bias=False)
        self.mlp.up_proj = nn.Linear(H, I, bias=False)
        self.mlp.down_proj = nn.Linear(I, H, bias=False)

    def forward(self, x, cos, sin, mask, split=None):
        B, T, _ = x.shape
        a = self.self_attn
        h = self.input_layernorm(x)
        q = a.q_proj(h).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = a.k_proj(h).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = a.v_proj(h).view(B, T, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.nh // self.nkv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        # Scaling q, not the T x T scores, saves a pass over the largest tensor.
        q = q * (1.0 / math.sqrt(self.hd))
        if split is not None:
            # Multi-question rows: causal attention over the context, the question blocks by mask.
            C = split
            o = torch.cat((causal_attention(q[:, :, :C], k[:, :, :C], v[:, :, :C]),
                           torch.softmax(q[:, :, C:] @ k.transpose(-1, -2) + mask, dim=-1) @ v), dim=2)
        elif mask is None:
            o = causal_attention(q, k, v)
        else:
            o = torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1) @ v
        o = o.transpose(1, 2).reshape(B, T, self.nh * self.hd)
        x = x + a.o_proj(o)
        h = self.post_attention_layernorm(x)
        return x + self.mlp.down_proj(F.silu(self.mlp.gate_proj(h)) * self.mlp.up_proj(h))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.model.layers = nn.ModuleList([Layer(c) for _ in range(c["num_hidden_layers"])])
        self.model.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        for n, p in self.named_parameters():
            if n.endswith("proj.weight") or n.endswith("embed_tokens.weight") or n == "lm_head.weight":
                std = 0.02
                if n.endswith("o_proj.weight") or n.endswith("down_proj.weight"):
                    std = 0.02 / math.sqrt(2 * c["num_hidden_layers"])
                nn.init.normal_(p, 0.0, std)

    def forward(self, ids, mask=None, pos=None, split=None):
        """pos: optional [B, T] position ids (gapped training examples); default 0..T-1.
        split: the padded context length of make_batch_multi rows (mask then covers the rest)."""
        B, T = ids.shape
        hd = self.c["hidden_size"] // self.c["num_attention_heads"]
        inv = 1.0 / (self.c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        if pos is None:
            fr = torch.outer(torch.arange(T, dtype=torch.float32), inv)
            emb = torch.cat((fr, fr), dim=-1)
            cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        else:
            fr = pos.to(torch.float32)[..., None] * inv
            emb = torch.cat((fr, fr), dim=-1)
            cos, sin = emb.cos()[:, None], emb.sin()[:, None]
        # mask None: plain causal attention (the layers compute it by blocks).
        x = self.model.embed_tokens(ids)
        for l in self.model.layers:
            x = l(x, cos, sin, mask, split)
        return self.lm_head(self.model.norm(x))


def read_safetensors(path):
    """Reads a safetensors file written by write_safetensors back into float32 tensors."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    kinds = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        t = torch.frombuffer(bytearray(body[a:b]), dtype=kinds[h["dtype"]]).reshape(h["shape"])
        out[name] = t.to(torch.float32)
    return out


def read_tokenizer_json(path):
    """(vocab in id order, merges) from an exported tokenizer.json, added tokens included."""
    with open(path) as f:
        tj = json.load(f)
    vocab_map = dict(tj["model"]["vocab"])
    for a in tj.get("added_tokens", []):
        vocab_map[a["content"]] = a["id"]
    vocab = [t for t, _ in sorted(vocab_map.items(), key=lambda kv: kv[1])]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in tj["model"]["merges"]]
    return vocab, merges


def load_export(root):
    """A checkpoint-shaped dict from the exported primary/aux directories (no optimizer state)."""
    vocab, merges = read_tokenizer_json(os.path.join(root, "primary", "tokenizer.json"))
    ck = {"vocab": vocab, "merges": merges}
    for key, sub in (("pcfg", "primary"), ("acfg", "aux")):
        with open(os.path.join(root, sub, "config.json")) as f:
            ck[key] = json.load(f)
    prim_w = read_safetensors(os.path.join(root, "primary", "model.safetensors"))
    aux_w = read_safetensors(os.path.join(root, "aux", "model.safetensors"))
    with open(os.path.join(root, "primary", "training_state.json")) as f:
        st = json.load(f)
    ck.update({"prim": prim_w, "aux": aux_w, "step": st["step"], "level": st["level"],
               "elapsed": st["hours"] * 3600, "history": [], "tokens_seen": st.get("tokens_seen", 0)})
    return ck


def grow(state, c, layers, seed):
    """A deeper primary computing the same function: the old layers keep their order, fresh
    ones go evenly between them with zero output projections (o_proj, down_proj), so each new
    layer adds nothing to the residual stream until training gives it a job."""
    old = c["num_hidden_layers"]
    c = dict(c, num_hidden_layers=layers)
    torch.manual_seed(seed + layers)
    fresh = Llama(c).state_dict()
    # Old layer i goes to slot place[i]; the slots in between are new.
    place = [round(i * (layers - 1) / max(1, old - 1)) for i in range(old)]
    out = {k: v for k, v in state.items() if not k.startswith("model.layers.")}
    for k, v in fresh.items():
        if not k.startswith("model.layers."):
            continue
        j = int(k.split(".")[2])
        rest = k.split(".", 3)[3]
        if j in place:
            out[k] = state[f"model.layers.{place.index(j)}.{rest}"]
        elif rest.endswith("o_proj.weight") or rest.endswith("down_proj.weight"):
            out[k] = torch.zeros_like(v)
        else:
            out[k] = v
    return out, c


def config(vocab, layers, hidden, heads, kv, inter):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "head_dim": hidden // heads,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 4096,
        "vocab_size": vocab,
        "tie_word_embeddings": False,
        "attention_bias": False,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "torch_dtype": "float32",
    }


# ----------------------------------------------------------------------------- export


def write_safetensors(path, tensors, dtype):
    """Minimal safetensors writer: 8-byte little-endian header length, JSON header, raw bytes."""
    tdt = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[dtype]
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(tdt).contiguous()
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())


@torch.no_grad()
def reference(model, gen):
    """Logits of the exported weights on one fixed example, for the Go engine's cross-check
    (eval/testbed_test.go): the weights are rounded to the export dtype first."""
    rng = random.Random("reference-example")
    ids, a0 = gen.example(rng, "single", 2, 64)
    m = Llama(model.c)
    m.load_state_dict({k: v.to(torch.float16).to(torch.float32) if model.dtype_round == "F16" else
                       (v.to(torch.bfloat16).to(torch.float32) if model.dtype_round == "BF16" else v)
                       for k, v in model.state_dict().items()})
    m.eval()
    logits = m(torch.tensor([ids]))[0]
    rows = list(range(len(ids) - 4, len(ids)))
    return {"ids": ids, "answer_start": a0, "rows": rows,
            "logits": [[float(x) for x in logits[r]] for r in rows],
            "argmax": [int(logits[r].argmax()) for r in range(len(ids))]}


def export(model, tok, outdir, dtype, extra, gen=None):
    tmp = outdir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    cfg = dict(model.c)
    cfg["torch_dtype"] = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[dtype]
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    with open(os.path.join(tmp, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "do_sample": False}, f, indent=1)
    with open(os.path.join(tmp, "training_state.json"), "w") as f:
        json.dump(extra, f, indent=1)
    write_safetensors(os.path.join(tmp, "model.safetensors"), dict(model.state_dict()), dtype)
    tok.save(tmp)
    if gen is not None:
        model.dtype_round = dtype
        with open(os.path.join(tmp, "reference.json"), "w") as f:
            json.dump(reference(model, gen), f)
    old = outdir + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(outdir):
        os.rename(outdir, old)
    os.rename(tmp, outdir)
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- training


def gapped_positions(rng, segs, span):
    """Position ids that leave random gaps before chunks 2.. and before the question, so
    that a short example spans about `span` positions: the model meets the relative
    distances of long contexts (RoPE sees only relative positions) at a fraction of their
    cost. Within a chunk and within question + answer positions stay consecutive."""
    n = len(segs)
    extra = max(0, span - n)
    starts = [i for i in range(1, n) if segs[i] != segs[i - 1] and segs[i] != 1]
    if not starts or extra == 0:
        return list(range(n))
    cuts = sorted(rng.randint(0, extra) for _ in starts)
    gaps = [b - a for a, b in zip([0] + cuts[:-1], cuts)]
    pos, add, j = [], 0, 0
    for i in range(n):
        if j < len(starts) and i == starts[j]:
            add += gaps[j]
            j += 1
        pos.append(i + add)
    return pos


def make_batch(examples, lm_weight, positions=None):
    T = max(len(ex[0]) for ex in examples)
    B = len(examples)
    p = None
    if positions is not None:
        p = torch.zeros(B, T - 1, dtype=torch.long)
        for i, ps in enumerate(positions):
            n = len(ps) - 1
            p[i, :n] = torch.tensor(ps[:n])
            if n < T - 1:  # padding continues after the last position
                p[i, n:] = torch.arange(ps[n - 1] + 1, ps[n - 1] + 1 + T - 1 - n)
    x = torch.zeros(B, T - 1, dtype=torch.long)
    y = torch.zeros(B, T - 1, dtype=torch.long)
    w = torch.zeros(B, T - 1)
    am = torch.zeros(B, T - 1, dtype=torch.bool)
    for i, ex in enumerate(examples):
        ids, a0 = ex[0], ex[1]
        n = len(ids)
        x[i, : n - 1] = torch.tensor(ids[:-1])
        y[i, : n - 1] = torch.tensor(ids[1:])
        w[i, : n - 1] = lm_weight
        # position t predicts ids[t+1]; answer tokens are ids[a0:]
        w[i, a0 - 1 : n - 1] = 1.0
        am[i, a0 - 1 : n - 1] = True
    if positions is not None:
        return x, y, w, am, p
    return x, y, w, am


def make_batch_multi(examples, lm_weight, ctx_positions):
    """Rows laid out as [context, padding to the longest context, question block 1, 2, ...,
    padding]: each question block sees its row's context and itself only, at the positions it
    would have alone after the context, so every block trains exactly the single-question
    layout the runner uses. ctx_positions: per row, the context's positions followed by the
    first position of the question. Returns x, y, w, pos, C (padded context length) and the
    additive mask [B, 1, T - C, T] of the question rows."""
    C = max(len(ex[0]) for ex in examples)
    Q = max(sum(len(b) for b, _ in ex[2]) for ex in examples)
    B, T = len(examples), C + Q
    x = torch.zeros(B, T, dtype=torch.long)
    y = torch.zeros(B, T, dtype=torch.long)
    w = torch.zeros(B, T)
    p = torch.zeros(B, T, dtype=torch.long)
    ok = torch.zeros(B, Q, T, dtype=torch.bool)
    for i, (ctx, _, blocks) in enumerate(examples):
        L = len(ctx)
        ps = ctx_positions[i]
        x[i, :L] = torch.tensor(ctx)
        y[i, : L - 1] = torch.tensor(ctx[1:])
        w[i, : L - 1] = lm_weight
        p[i, :L] = torch.tensor(ps[:L])
        p[i, L:C] = torch.arange(ps[L - 1] + 1, ps[L - 1] + 1 + C - L)
        o = C
        for b, a0 in blocks:
            n = len(b)
            x[i, o : o + n] = torch.tensor(b)
            y[i, o : o + n - 1] = torch.tensor(b[1:])
            w[i, o : o + a0 - 1] = lm_weight  # the question's own tokens, as make_batch weighs them
            w[i, o + a0 - 1 : o + n - 1] = 1.0
            p[i, o : o + n] = torch.arange(ps[L], ps[L] + n)
            ok[i, o - C : o - C + n, :L] = True
            ok[i, o - C : o - C + n, o : o + n] = torch.ones(n, n, dtype=torch.bool).tril()
            o += n
        if o < T:
            p[i, o:] = torch.arange(ps[L], ps[L] + T - o)
        ok[i, o - C :, 0] = True  # padding rows: any one key keeps their softmax finite
    m = torch.zeros(B, Q, T)
    m.masked_fill_(~ok, float("-inf"))
    return x, y, w, p, C, m[:, None]


@torch.no_grad()
def check_multi_q(model, gen, seed):
    """Packed rows must train exactly what the runner sees: every question block's logits equal
    those of its own single-question example (same positions, gapped or not). Run once at start."""
    rng = random.Random(seed)
    exs = [gen.example_multi(rng, t, 4, 64) for t in ("vt", "multikey", "single", "multiquery", "vt")]
    pos = []
    for i, ex in enumerate(exs):
        sg = ex[1] + [-1] * len(ex[2][0][0])
        pos.append(gapped_positions(rng, sg, len(sg) + 300) if i % 2 else list(range(len(sg))))
    x, y, w, p, C, mask = make_batch_multi(exs, 0.0, [ps[: len(ex[0]) + 1] for ps, ex in zip(pos, exs)])
    was = model.training
    model.eval()
    lg = model(x, mask, p, C)
    worst, blocks = 0.0, 0
    for i, (ctx, segs, bl) in enumerate(exs):
        o, L = C, len(ctx)
        for b, a0 in bl:
            ps = pos[i][:L] + list(range(pos[i][L], pos[i][L] + len(b)))
            xs, ys, _, _, ps1 = make_batch([(ctx + b, L + a0, segs + [-1] * len(b))], 0.0, [ps])
            one = model(xs, None, ps1)[0, L + a0 - 1 : L + len(b) - 1]
            if not torch.equal(ys[0, L + a0 - 1 : L + len(b) - 1], y[i, o + a0 - 1 : o + len(b) - 1]):
                raise AssertionError(f"multi-question row {i}: answer targets differ from the single layout")
            worst = max(worst, float((one - lg[i, o + a0 - 1 : o + len(b) - 1]).abs().max()))
            blocks += 1
            o += len(b)
    model.train(was)
    if worst > 1e-3:
        raise AssertionError(f"multi-question rows differ from the single layout by {worst} in the logits")
    return blocks, worst


def loss_of(logits, y, w):
    l = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none").view_as(w)
    return (l * w).sum() / w.sum()


def reuse_mask(examples, T):
    """Attention of the `reuse` method: each chunk sees P and itself only (its KV was computed
    alone), the question and answer see everything; positions stay global, as re-rotation
    makes them. Shape [B, 1, T, T] for the T = len - 1 inputs of make_batch."""
    B = len(examples)
    seg = torch.full((B, T), -1, dtype=torch.long)
    for i, ex in enumerate(examples):
        s = ex[2][: T]
        seg[i, : len(s)] = torch.tensor(s)
    q, k = seg[:, :, None], seg[:, None, :]
    ok = (k == 0) | (q == -1) | (q == k)
    ok &= torch.ones(T, T, dtype=torch.bool).tril()[None]
    m = torch.zeros(B, T, T)
    m.masked_fill_(~ok, float("-inf"))
    return m[:, None]


@torch.no_grad()
def exact_match(model, examples, bs, token_acc=None, reuse=False, first_acc=None):
    """Share of examples whose every answer token (and EOS) is the argmax; token_acc, when
    given, receives the per-token share too (progress shows there long before exact match),
    first_acc the share of first answer tokens right (in the needle families the one token
    that needs the key matched; the rest is copying)."""
    model.eval()
    ok, tok_ok, tok_n, first_ok = 0, 0, 0, 0
    for i in range(0, len(examples), bs):
        part = examples[i : i + bs]
        x, y, w, am = make_batch(part, 0.0)
        pred = model(x, reuse_mask(part, x.shape[1]) if reuse else None).argmax(-1)
        good = ((pred == y) | ~am).all(dim=1)
        ok += int(good.sum())
        tok_ok += int(((pred == y) & am).sum())
        tok_n += int(am.sum())
        first = am.int().argmax(dim=1, keepdim=True)
        first_ok += int((pred.gather(1, first) == y.gather(1, first)).sum())
    model.train()
    if token_acc is not None:
        token_acc.append(tok_ok / max(tok_n, 1))
    if first_acc is not None:
        first_acc.append(first_ok / len(examples))
    return ok / len(examples)


def eval_set(gen, seed, level, task, n, with_segs=False):
    rng = random.Random(f"eval-{seed}-{level}-{task}")
    nc, ct = LEVELS[level]
    return [gen.example(rng, task, nc, ct, with_segs) for _ in range(n)]


def reexec_with_malloc_env():
    """First-touch page faults are very slow on the shared VMs here (~100 MB/s), and glibc hands
    big blocks back to the kernel after every op. Keeping freed memory in the heap makes
    attention-sized temporaries about 50x cheaper, so re-exec once with these settings."""
    want = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000", "MALLOC_TOP_PAD_": "536870912"}
    if all(os.environ.get(k) == v for k, v in want.items()):
        return
    env = dict(os.environ)
    env.update(want)
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def entered_at(history, level, forced, saved):
    """The index in history from which --patience counts evaluations at the current level: a level
    forced with --level starts afresh; a resume keeps the count its checkpoint saved. Checkpoints
    older than that field count back to where the history last changed level, which also counts a
    previous phase's evaluations at the same level (phase 15's drill left level 1 at the first
    evaluation after a resume that way)."""
    if forced:
        return len(history)
    if saved is not None:
        return saved
    i = len(history)
    while i > 0 and history[i - 1]["level"] == level:
        i -= 1
    return i


def parse_range(flag, spec):
    """min,max with 1 <= min <= max (chains per context, variables per chain); errors name the flag."""
    try:
        lo, hi = (int(v) for v in spec.split(","))
    except ValueError:
        raise SystemExit(f"{flag}: {spec!r} is not min,max (two whole numbers)")
    if not 1 <= lo <= hi:
        raise SystemExit(f"{flag}: {spec!r} wants 1 <= min <= max")
    return lo, hi


def parse_vt_vars(spec, levels_spec):
    """--vt-vars and --vt-vars-levels: ((min, max) or None, set of levels). Errors name the flag."""
    if not spec:
        return None, set()
    lo, hi = parse_range("--vt-vars", spec)
    try:
        levels = {int(v) for v in levels_spec.split(",") if v}
    except ValueError:
        raise SystemExit(f"--vt-vars-levels: {levels_spec!r} is not a comma-separated list of levels")
    for lv in levels:
        if not 1 <= lv < len(LEVELS):
            raise SystemExit(f"--vt-vars-levels: level {lv} is not in 1..{len(LEVELS) - 1}")
    if not levels:
        raise SystemExit("--vt-vars-levels: no level given")
    return (lo, hi), levels


def write_samples(gen, path):
    """A few examples in the training formats, checked by the Go generators' tests
    (eval/testbed_test.go) so that evaluation sets stay in the format the models learnt."""
    rng = random.Random("format-samples")
    out = []
    for task in TASKS:
        for _ in range(3):
            if task in TASKS[:4]:
                chunks, q, a = gen.niah(rng, 3, 64, task)
            elif task == "vt":
                chunks, q, a = gen.vt(rng, 3, 64)
            else:
                chunks, q, a = gen.multihop(rng, 3, 64)
            ids, a0, _ = gen.layout(chunks, q, a)
            # The ids the model was trained on: the Go side must lay the same text out to these.
            out.append({"task": task, "chunks": chunks, "question": q, "answer": a,
                        "prompt_ids": ids[:a0], "answer_ids": ids[a0:]})
    with open(path + ".tmp", "w") as f:
        json.dump(out, f, indent=1)
    os.replace(path + ".tmp", path)


def main():
    reexec_with_malloc_env()
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="/work/testbed-run")
    ap.add_argument("--out", default=os.path.join(REPO, "testdata", "testbed"))
    ap.add_argument("--status", default=os.path.join(HERE, "status.md"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--vocab", type=int, default=768)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--inter", type=int, default=640)
    ap.add_argument("--aux-layers", type=int, default=2)
    ap.add_argument("--aux-hidden", type=int, default=128)
    ap.add_argument("--aux-heads", type=int, default=4)
    ap.add_argument("--aux-kv-heads", type=int, default=2)
    ap.add_argument("--aux-inter", type=int, default=320)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200,
                    help="steps of linear learning-rate warm-up after a fresh optimizer (at ~10 s a step on the "
                         "shared machine, 200 steps are half an hour)")
    ap.add_argument("--tokens-per-step", type=int, default=4096)
    ap.add_argument("--lm-weight", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--eval-n", type=int, default=24)
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument("--advance", type=float, default=0.9)
    ap.add_argument("--patience", type=int, default=20)
    ap.add_argument("--copy-advance", type=float, default=0.75)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="F32", choices=["F32", "F16", "BF16"])
    ap.add_argument("--max-hours", type=float, default=1000.0)
    ap.add_argument("--gap-prob", type=float, default=0.5,
                    help="share of training batches whose examples get position gaps (v2 schedule)")
    ap.add_argument("--gap-span", type=int, default=1400,
                    help="positions a gapped example spans at most (the target context is ~1,100 tokens)")
    ap.add_argument("--task-weights", default="",
                    help="training mixture as task=weight,... over " + ",".join(TASKS) + " (default: TASK_WEIGHTS)")
    ap.add_argument("--anneal-start", type=int, default=0,
                    help="step from which the learning rate decays linearly (0: constant after warm-up)")
    ap.add_argument("--anneal-steps", type=int, default=2400, help="steps the decay takes")
    ap.add_argument("--anneal-min", type=float, default=0.1, help="final learning rate as a share of --lr")
    ap.add_argument("--max-level", type=int, default=len(LEVELS) - 1,
                    help="highest curriculum level (5 = the 8 x 128 target: train there, not beyond)")
    ap.add_argument("--vt-advance", type=float, default=0.6,
                    help="variable-tracking exact match that must also pass to advance (with --advance on single)")
    ap.add_argument("--init-ckpt", default="",
                    help="with --resume and no checkpoint in --workdir: continue from another run's ckpt.pt "
                         "(weights, tokenizer, step, level; the optimizer and the data stream restart)")
    ap.add_argument("--grow-layers", type=int, default=0,
                    help="deepen the primary to this many layers: new layers go between the old ones with "
                         "zero output projections, so the grown model starts as the same function")
    ap.add_argument("--freeze-aux", action="store_true", help="train the primary only")
    ap.add_argument("--vt-legacy-order", action="store_true",
                    help="phases 1-10: a vt context lists the asked chain's links first within a chunk (a leak)")
    ap.add_argument("--multi-q", action="store_true",
                    help="ask a context about every question it answers in one row (make_batch_multi): every "
                         "chain of a variable-tracking context, every key of a multi-key or multi-query one "
                         "(which families: --multi-q-tasks)")
    ap.add_argument("--multi-q-tasks", default="vt,multikey,multiquery",
                    help="with --multi-q, the families whose contexts are asked every question they answer "
                         "(the rest keep one question per context)")
    ap.add_argument("--multi-q-pairs", action="store_true",
                    help="with --multi-q and multiquery packed: also ask every neighbouring pair of a multi-query "
                         "context's keys, both orders (more list questions per row; the asked example is unchanged)")
    ap.add_argument("--vt-chains", default="1,2",
                    help="min,max chains per variable-tracking example; with 2 or more, the first variable "
                         "must be found by its value, not by being the only one assigned a number")
    ap.add_argument("--vt-vars", default="",
                    help="min,max variables per chain in the training rows drawn at --vt-vars-levels (empty: RULER's "
                         "2,5). Short chains (1,2) make a dense value -> name lookup: every statement is a chain's "
                         "head or one link from it, so nearly every vt question's first answer token needs the "
                         "asked value matched. Evaluation sets keep 2,5")
    ap.add_argument("--vt-vars-levels", default="1",
                    help="with --vt-vars, the curriculum levels whose training rows (drill or replay) use it; "
                         "the others keep 2,5 (e.g. the target level, where the Go vt tasks are scored)")
    ap.add_argument("--vt-vars-chains", default="",
                    help="with --vt-vars, min,max chains per vt context in those rows (empty: --vt-chains); 2 or "
                         "more asks every row's value match, and with --multi-q the chain whose head comes first "
                         "in the text is the asked one in 1 of min..max questions")
    ap.add_argument("--level", type=int, default=-1, help="start at this curriculum level")
    ap.add_argument("--advance-on", default="",
                    help="comma-separated tasks that must each reach --advance (besides single) to pass a level, "
                         "so that a drill at short contexts lasts until those families are learnt there "
                         "(--patience still lets single alone decide after that many evaluations)")
    ap.add_argument("--target-tasks", default="single,vt",
                    help="comma-separated tasks also evaluated at the target level (8 x 128) at every evaluation")
    ap.add_argument("--replay-levels", default="",
                    help="comma-separated levels the replay steps (a quarter of all steps) draw from; empty = "
                         "every level below the current one. A drill at a short level can replay the target "
                         "level instead, so that what it does not drill is kept where it is scored")
    ap.add_argument("--replay-prob", type=float, default=0.25,
                    help="share of steps that replay (--replay-levels, or the levels below the current one)")
    ap.add_argument("--replay-weights", default="",
                    help="task weights of the replay steps (task=w,...; empty = --task-weights), e.g. the "
                         "families the drill does not train")
    ap.add_argument("--stop-step", type=int, default=0,
                    help="stop (and save) once this step is done (0: no limit besides --max-hours): a probe run "
                         "in segments, each probed from its own checkpoint at a known step")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init-from", default="",
                    help="with --resume and no checkpoint in --workdir: continue from the exported test-bed "
                         "(e.g. testdata/testbed) — weights, tokenizer, step and level; optimizer state restarts")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    weights = dict(TASK_WEIGHTS)
    advance_on = [t for t in args.advance_on.split(",") if t]
    target_tasks = [t for t in args.target_tasks.split(",") if t]
    for t in advance_on + target_tasks:
        if t not in TASKS:
            raise SystemExit(f"--advance-on/--target-tasks: unknown task {t!r}")
    for t in filter(None, args.multi_q_tasks.split(",")):
        if t not in ("vt", "multikey", "multiquery"):
            raise SystemExit(f"--multi-q-tasks: {t!r} is not vt, multikey or multiquery")
    if args.stop_step < 0:
        raise SystemExit(f"--stop-step: {args.stop_step} is negative (0: no limit)")
    if not 0 <= args.replay_prob <= 1:
        raise SystemExit(f"--replay-prob: {args.replay_prob} is not a share between 0 and 1")
    if args.warmup < 1:
        raise SystemExit(f"--warmup: {args.warmup} steps; it must be at least 1 (1 = no warm-up)")
    def parse_weights(flag, spec, base):
        out = dict(base)
        for kv in filter(None, spec.split(",")):
            k, _, v = kv.partition("=")
            if k not in out:
                raise SystemExit(f"{flag}: unknown task {k!r}")
            try:
                out[k] = float(v)
            except ValueError:
                raise SystemExit(f"{flag}: {kv!r} is not task=weight")
        if sum(out.values()) <= 0:
            raise SystemExit(f"{flag}: every weight is zero")
        return out

    weights = parse_weights("--task-weights", args.task_weights, weights)
    # Replay steps: without --replay-weights they draw tasks as the drill does.
    replay_weights = parse_weights("--replay-weights", args.replay_weights,
                                   weights if not args.replay_weights else {t: 0.0 for t in weights})
    try:
        replay_levels = [int(v) for v in args.replay_levels.split(",") if v]
    except ValueError:
        raise SystemExit(f"--replay-levels: {args.replay_levels!r} is not a comma-separated list of levels")
    for lv in replay_levels:
        if not 1 <= lv < len(LEVELS):
            raise SystemExit(f"--replay-levels: level {lv} is not in 1..{len(LEVELS) - 1}")
    vt_vars, vt_vars_levels = parse_vt_vars(args.vt_vars, args.vt_vars_levels)
    vt_chains = parse_range("--vt-chains", args.vt_chains)
    vt_vars_chains = parse_range("--vt-vars-chains", args.vt_vars_chains) if args.vt_vars_chains else vt_chains
    if args.vt_vars_chains and vt_vars is None:
        raise SystemExit("--vt-vars-chains: only with --vt-vars")
    os.makedirs(args.workdir, exist_ok=True)
    words = load_words()
    ckpt_path = os.path.join(args.workdir, "ckpt.pt")

    def log(msg):
        print(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), msg, flush=True)

    if args.resume and os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path)
        log(f"resumed from {ckpt_path} at step {ck['step']} level {ck['level']}")
    elif args.resume and args.init_ckpt:
        ck = torch.load(args.init_ckpt)
        for k in ("po", "ao", "rng", "torch_rng"):
            ck.pop(k, None)
        log(f"continuing from {args.init_ckpt} at step {ck['step']} level {ck['level']} (fresh optimizer)")
    elif args.resume and args.init_from:
        ck = load_export(args.init_from)
        log(f"continuing from the export in {args.init_from} at step {ck['step']} level {ck['level']} (fresh optimizer)")
    else:
        ck = None
        torch.manual_seed(args.seed)
        rng0 = random.Random(f"bpe-{args.seed}")
        # The BPE trainer only needs the alphabet of the tasks: a byte-level stand-in tokenizer
        # generates the sample texts.
        tmp_tok = Tokenizer([*SPECIALS] + [B2U[b] for b in range(256)], [])
        g0 = Gen(tmp_tok, words)
        texts = []
        for i in range(600):
            task = ["copy", *TASKS][i % 7]
            nc, ct = LEVELS_V1[1 + i % 3]  # the recipe the committed vocabulary came from
            chunks, q, a = getattr(g0, "copy")(rng0, nc, ct) if task == "copy" else (
                g0.niah(rng0, nc, ct, task) if task in TASKS[:4] else
                (g0.vt(rng0, nc, ct) if task == "vt" else g0.multihop(rng0, nc, ct)))
            texts += [c + "\n\n" for c in chunks] + [f"Question: {q}\nAnswer:", " " + a]
        texts += [" " + w for w in words] * 5 + [w for w in words] * 5
        log(f"training BPE on {len(texts)} texts")
        vocab, merges = train_bpe(texts, args.vocab)
        tok = Tokenizer(vocab, merges)
        V = len(vocab)
        pc = config(V, args.layers, args.hidden, args.heads, args.kv_heads, args.inter)
        ac = config(V, args.aux_layers, args.aux_hidden, args.aux_heads, args.aux_kv_heads, args.aux_inter)
        log(f"vocab {V} merges {len(merges)}")

    if ck is not None:
        tok = Tokenizer(ck["vocab"], [tuple(m) for m in ck["merges"]])
        pc, ac = ck["pcfg"], ck["acfg"]
    gen = Gen(tok, words, vt_chains, args.vt_legacy_order,
              tuple(t for t in args.multi_q_tasks.split(",") if t), args.multi_q_pairs)
    # Training rows at --vt-vars-levels draw vt chains of --vt-vars variables; evaluation sets and
    # train_samples.json always come from gen (RULER's 2-5), so the figures stay comparable.
    gen_short = None
    if vt_vars is not None:
        gen_short = Gen(tok, words, vt_vars_chains, gen.vt_legacy_order, gen.multi_q_tasks, gen.mq_pairs, vt_vars)
    fresh_opt = ck is None or "po" not in ck
    if ck is not None and args.grow_layers > pc["num_hidden_layers"]:
        ck["prim"], pc = grow(ck["prim"], pc, args.grow_layers, args.seed)
        # Adam's moments belong to the old parameter list.
        ck.pop("po", None)
        ck.pop("ao", None)
        fresh_opt = True
        log(f"primary grown to {pc['num_hidden_layers']} layers")
    prim, aux = Llama(pc), Llama(ac)
    po = torch.optim.AdamW(prim.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    ao = torch.optim.AdamW(aux.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    step, level, elapsed, history, tokens_seen = 0, 0, 0.0, [], 0
    rng = random.Random(f"train-{args.seed}")
    if ck is not None:
        prim.load_state_dict(ck["prim"])
        aux.load_state_dict(ck["aux"])
        if "po" in ck:
            po.load_state_dict(ck["po"])
            ao.load_state_dict(ck["ao"])
        step, level, elapsed, history = ck["step"], ck["level"], ck["elapsed"], ck["history"]
        tokens_seen = ck.get("tokens_seen", 0)
        if "rng" in ck:
            rng.setstate(ck["rng"])
            torch.set_rng_state(ck["torch_rng"])
    # Patience counts the evaluations since the current level was entered: a level forced
    # with --level starts afresh, whatever earlier runs recorded at it.
    if args.level >= 0:
        level = args.level
    level_entered = entered_at(history, level, args.level >= 0, ck.get("level_entered") if ck is not None else None)
    start_step = step
    if args.stop_step and args.stop_step <= step:
        raise SystemExit(f"--stop-step: {args.stop_step} is not after step {step}, where this run starts")
    log(f"primary {sum(p.numel() for p in prim.parameters())} params, aux {sum(p.numel() for p in aux.parameters())}")
    if gen_short is not None:
        log(f"vt contexts of {vt_vars_chains[0]}-{vt_vars_chains[1]} chains of {vt_vars[0]}-{vt_vars[1]} variables "
            f"in training rows at levels {sorted(vt_vars_levels)}")
    if args.multi_q:
        nb, worst = check_multi_q(prim, gen, args.seed)
        log(f"multi-question rows checked: {nb} question blocks, max |logit difference| {worst:.2e} against single examples")

    best = {"primary": {}, "aux": {}}
    if ck is not None:
        best = ck.get("best", best)

    def save(reason):
        state = {"prim": prim.state_dict(), "aux": aux.state_dict(), "po": po.state_dict(), "ao": ao.state_dict(),
                 "step": step, "level": level, "elapsed": elapsed, "history": history, "rng": rng.getstate(),
                 "torch_rng": torch.get_rng_state(), "vocab": tok.vocab, "merges": tok.merges, "pcfg": pc, "acfg": ac,
                 "tokens_seen": tokens_seen, "best": best, "args": vars(args), "level_entered": level_entered}
        torch.save(state, ckpt_path + ".tmp")
        os.replace(ckpt_path + ".tmp", ckpt_path)
        last = history[-1] if history else {}
        extra = {"step": step, "level": level, "levels": LEVELS, "hours": elapsed / 3600, "tokens_seen": tokens_seen,
                 "seed": args.seed, "last_eval": last}
        os.makedirs(args.out, exist_ok=True)
        export(prim, tok, os.path.join(args.out, "primary"), args.dtype, extra, gen)
        export(aux, tok, os.path.join(args.out, "aux"), args.dtype, extra, gen)
        write_samples(gen, os.path.join(args.out, "train_samples.json"))
        log(f"checkpoint ({reason}) step {step} level {level}; exported to {args.out}")

    # The target-level columns: single and vt as before, then whatever else --target-tasks adds.
    status_targets = ["single", "vt"] + [t for t in target_tasks if t not in ("single", "vt")]

    def write_status():
        lines = ["# Test-bed training status (written by tools/testbed/train.py)", "",
                 f"- updated: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
                 f"- step {step}, curriculum level {level} {LEVELS[level]} (n_chunks, tokens per chunk; level 0 = copy warm-up)",
                 f"- training time {elapsed / 3600:.2f} h, tokens seen {tokens_seen:,}", "",
                 "Teacher-forced exact match (= greedy exact match) on held-out examples, in % (answer-token",
                 "accuracy in brackets), latest evaluations; the target-level columns are 8 chunks x 128 tokens;",
                 "first token: the first answer token right at the current level (key matching):", "",
                 "| step | model | level | " + " | ".join(["copy", *TASKS]) + " | "
                 + " | ".join(f"target level {t}" for t in status_targets) + " | reuse: target single | reuse: target vt"
                 + " | first token: multikey | first token: multiquery | first token: vt |",
                 "|---|---|---|" + "---|" * (len(TASKS) + 6 + len(status_targets))]
        for h in history[-12:]:
            for m in ("primary", "aux"):
                r = h[m]
                lines.append(f"| {h['step']} | {m} | {h['level']} | " + " | ".join(
                    f"{r.get(t, float('nan')) * 100:.0f} ({r.get('tok_' + t, float('nan')) * 100:.0f})"
                    for t in ["copy", *TASKS]) +
                    " | " + " | ".join(f"{r.get('target_' + t, float('nan')) * 100:.0f}" for t in status_targets) +
                    f" | {r.get('reuse_target_single', float('nan')) * 100:.0f} | {r.get('reuse_target_vt', float('nan')) * 100:.0f}" +
                    f" | {r.get('first_multikey', float('nan')) * 100:.0f} | {r.get('first_multiquery', float('nan')) * 100:.0f}"
                    f" | {r.get('first_vt', float('nan')) * 100:.0f} |")
        with open(args.status + ".tmp", "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(args.status + ".tmp", args.status)

    def evaluate():
        r = {"primary": {}, "aux": {}}
        tasks = ["copy"] if level == 0 else TASKS
        for t in tasks:
            ex = eval_set(gen, args.seed, level, t, args.eval_n)
            ta = []
            fa = []
            r["primary"][t] = exact_match(prim, ex, 8, ta, first_acc=fa)
            r["primary"]["tok_" + t] = ta[0]
            r["primary"]["first_" + t] = fa[0]
            if not args.freeze_aux:
                # A frozen auxiliary's figures are those of its last evaluation: half the cost saved.
                r["aux"][t] = exact_match(aux, ex, 8, ta)
                r["aux"]["tok_" + t] = ta[1]
        if level >= 1:
            for t in status_targets:
                ex = eval_set(gen, args.seed, TARGET_LEVEL, t, 16 if level < TARGET_LEVEL else args.eval_n, True)
                fa = []
                r["primary"]["target_" + t] = exact_match(prim, ex, 4, first_acc=fa)
                r["primary"]["target_first_" + t] = fa[0]
                if t in ("single", "vt"):
                    # The test bed must tell methods apart: reuse (no cross-chunk attention)
                    # has to lose on vt where full attention wins.
                    r["primary"]["reuse_target_" + t] = exact_match(prim, ex, 4, reuse=True)
        r["step"], r["level"] = step, level
        return r

    last_ckpt = time.time()
    t_start = time.time()
    pl_sum = al_sum = 0.0
    n_sum = 0
    carry = {}  # level -> a row drawn but deferred: it would have made the padded batch too large
    while elapsed < args.max_hours * 3600 and not (args.stop_step and step >= args.stop_step):
        t0 = time.time()
        # 75% current level (--replay-prob), the rest earlier levels (copy included; or --replay-levels)
        # against forgetting.
        replay = level > 0 and rng.random() >= 1 - args.replay_prob
        if not replay:
            lv = level
        elif replay_levels:
            lv = rng.choice(replay_levels)
        else:
            lv = rng.randrange(0, level)
        nc, ct = LEVELS[lv]
        names = list(weights)
        ws = [(replay_weights if replay else weights)[n] for n in names]

        def pick():
            return "copy" if lv == 0 else rng.choices(names, ws)[0]

        multi = args.multi_q and lv >= 1
        g = gen_short if gen_short is not None and lv in vt_vars_levels else gen
        make = (lambda: g.example_multi(rng, pick(), nc, ct)) if multi else (lambda: g.example(rng, pick(), nc, ct, True))
        size = (lambda ex: len(ex[0]) + sum(len(b) for b, _ in ex[2])) if multi else (lambda ex: len(ex[0]))
        # Rows until --tokens-per-step, but never a padded batch over twice that: rows differ up to
        # 15x in length (a level-1 single needle against a packed multi-query row), and sizing the
        # batch by its first row once built 68 rows padded to ~1,000 tokens (21 GB, killed for
        # memory). A row that would overflow waits for the next step at its level, so the task
        # mix is unchanged.
        exs = [carry.pop(lv, None) or make()]
        total = width = size(exs[0])
        while total < args.tokens_per_step:
            ex = make()
            n = size(ex)
            if (len(exs) + 1) * max(width, n) > 2 * args.tokens_per_step:
                carry[lv] = ex
                break
            exs.append(ex)
            total, width = total + n, max(width, n)
        gapped = lv >= 1 and rng.random() < args.gap_prob
        # Single-question layout of each example: the segments gapped_positions works on.
        segs = [ex[1] + [-1] * len(ex[2][0][0]) for ex in exs] if multi else [ex[2] for ex in exs]
        pos = [list(range(len(sg))) for sg in segs]
        if gapped:
            pos = [gapped_positions(rng, sg, rng.randint(len(sg), max(len(sg), args.gap_span))) for sg in segs]
        split, mask = None, None
        if multi:
            x, y, w, pids, split, mask = make_batch_multi(exs, args.lm_weight, [ps[: len(ex[0]) + 1] for ps, ex in zip(pos, exs)])
        else:
            x, y, w, _, pids = make_batch(exs, args.lm_weight, pos)
        tokens_seen += int(x.numel())
        # A fresh optimizer warms up again: Adam's first steps move every weight by ~lr.
        lr = args.lr * min(1.0, (step - (start_step if fresh_opt else 0) + 1) / args.warmup)
        if args.anneal_start and step >= args.anneal_start:
            # Exact match needs every token right: a decaying rate sharpens what a constant one
            # keeps jittering around.
            lr *= 1 - (1 - args.anneal_min) * min(1.0, (step - args.anneal_start) / args.anneal_steps)
        for o in (po, ao):
            for g in o.param_groups:
                g["lr"] = lr
        for m, o in ((prim, po),) if args.freeze_aux else ((prim, po), (aux, ao)):
            loss = loss_of(m(x, mask, pids, split), y, w)
            o.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            o.step()
            if m is prim:
                pl_sum += float(loss)
            else:
                al_sum += float(loss)
        n_sum += 1
        step += 1
        elapsed += time.time() - t0
        if step % 20 == 0:
            log(f"step {step} level {level} loss primary {pl_sum / n_sum:.4f} aux {al_sum / n_sum:.4f} "
                f"batch {len(exs)}x{x.shape[1]} {elapsed / step:.2f}s/step")
            pl_sum = al_sum = 0.0
            n_sum = 0
        if step % args.eval_every == 0:
            te = time.time()
            r = evaluate()
            history.append(r)
            p = r["primary"]
            log("eval " + json.dumps(r))
            evals_here = len(history) - level_entered
            if level == 0:
                # Copy answers run to ~100 tokens: at 99% per token the copying mechanism is
                # there, and the needle tasks (short answers) are where the bar matters.
                passed = p["copy"] >= args.copy_advance
            else:
                mean = sum(p[t] for t in TASKS) / len(TASKS)
                # A hard family (multiquery, vt) must not hold every other task at short
                # contexts for ever: after --patience evaluations the needle alone decides.
                passed = p["single"] >= args.advance and (
                    p["vt"] >= args.vt_advance or mean >= args.advance - 0.1 or evals_here >= args.patience)
                if advance_on:
                    passed = p["single"] >= args.advance and (
                        all(p[t] >= args.advance for t in advance_on) or evals_here >= args.patience)
            if passed and level + 1 < len(LEVELS) and level + 1 <= args.max_level:
                level += 1
                level_entered = len(history)
                log(f"advance to level {level} {LEVELS[level]}")
            write_status()
            elapsed += time.time() - te
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            save("periodic")
            last_ckpt = time.time()
    save("final")


if __name__ == "__main__":
    main()

"""llama.cpp's prefill and decode speed on the same GGUF and the same tokens as
BenchmarkSmolLM2 (model/gguf): the first n ids of the longest golden prompt,
one prefill call, then 32 greedy decode steps; one run each, n_threads=THREADS.

    THREADS=2 python llamacpp_bench.py GGUF ../../testdata/smollm2/golden.json
"""
import json
import os
import sys
import time

import llama_cpp
from llama_cpp import Llama


def main(path, golden):
    threads = int(os.environ.get("THREADS", "2"))
    ids = max((p["ids"] for p in json.load(open(golden))["prompts"]), key=len)
    # n_batch = n_ctx: llama-cpp-python 0.3.36 keeps n_batch rows of scores and
    # indexes them by position, so a smaller batch fails past position n_batch.
    llm = Llama(model_path=path, n_ctx=4096, n_batch=4096, n_threads=threads,
                n_threads_batch=threads, verbose=False)
    print(f"llama-cpp-python {llama_cpp.__version__}, threads {threads}")
    for n in (128, 512, 2048):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids[:n])
        t1 = time.perf_counter()
        tok = int(llm.scores[llm.n_tokens - 1].argmax())
        t2 = time.perf_counter()
        for _ in range(32):
            llm.eval([tok])
            tok = int(llm.scores[llm.n_tokens - 1].argmax())
        t3 = time.perf_counter()
        print(f"n={n}: prefill {n / (t1 - t0):.1f} tok/s, decode after {n}: {32 / (t3 - t2):.1f} tok/s")


if __name__ == "__main__":
    main(*sys.argv[1:3])

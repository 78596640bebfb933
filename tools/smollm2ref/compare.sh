#!/bin/sh
# compare.sh: this engine beside llama.cpp on the same SmolLM2 GGUF, the same
# tokens and the same threads, alternated ROUNDS times in one run (llama.cpp,
# ours, llama.cpp, ours, ...): prefill tok/s of 128/512/2048 tokens and decode
# tok/s after each (32 greedy steps), ours with --weights native-q8 (8-bit
# activations in decode, as llama.cpp), native and f32.
#
#   sh tools/smollm2ref/compare.sh [THREADS] [ROUNDS]
#
# Needs the fetched model (scripts/fetch-smollm2.sh) and llama-cpp-python in
# $LLAMAENV (default ~/.cache/cacheclip/llamaenv; build it as README.md says).
# Run in a quiet window: the load average at start and end is printed so the
# record can say what else was running.
set -eu
THREADS=${1:-2}
ROUNDS=${2:-2}
LLAMAENV=${LLAMAENV:-$HOME/.cache/cacheclip/llamaenv}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
GGUF=$(bash "$ROOT/scripts/fetch-smollm2.sh")
BIN=$(mktemp -d)/gguf.test
trap 'rm -rf "$(dirname "$BIN")"' EXIT
(cd "$ROOT" && go test -c -o "$BIN" ./model/gguf)
echo "date $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
r=1
while [ "$r" -le "$ROUNDS" ]; do
	echo "== round $r: llama.cpp"
	(cd "$ROOT/model/gguf" && THREADS=$THREADS "$LLAMAENV/bin/python" ../../tools/smollm2ref/llamacpp_bench.py "$GGUF" ../../testdata/smollm2/golden.json)
	echo "== round $r: cacheclip"
	(cd "$ROOT/model/gguf" && GOMAXPROCS=$THREADS "$BIN" -test.run '^$' -test.bench SmolLM2 -test.benchtime 1x) | grep -E 'tok/s'
	r=$((r + 1))
done
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"

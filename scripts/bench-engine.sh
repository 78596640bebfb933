#!/bin/sh
# bench-engine.sh — the engine's prefill and decode figures of docs/BENCHMARKS.md
# (issue 21, part M) in one command, for a quiet window:
#
#   sh scripts/bench-engine.sh [prefill-iterations]    (default 2)
#
# 1. PrefillVsMatMul: engine prefill of 512 and 2048 tokens (Qwen2.5-0.5B shape,
#    random weights, f32 and bf16) alternated with the bare up-projection product;
#    the ratio and the per-stage profile table of the same prefills.
# 2. AttentionVsMatMul: causal prefill attention alone at 512/2k/4k tokens
#    (GFLOP/s) alternated with the up-projection product (kernels).
#    DecodeAttention: one decode row over 512/2k/4k cached slots, keys repacked
#    per call against keys kept blocked (kernels).
# 3. DecodeContext: decode tokens/s after 512 and 2048 tokens of context on the
#    SmolLM2-135M and Qwen2.5-0.5B shapes (bf16 weights).
# 4. DecodeBatch: one decode step of a batch of 8 after 2048 slots each (Qwen2.5-0.5B
#    shape, bf16), with its stage split; AttentionBatchDecode: that step's attention
#    as 8 calls against one batched call (kernels).
# The machine's load is printed before and after: figures from a loaded machine
# say little (docs/BENCHMARKS.md).
set -eu
n=${1:-2}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/model.test" ./model/
go test -c -o "$tmp/kernels.test" ./kernels/
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs"
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
(cd model && "$tmp/model.test" -test.run '^$' -test.bench 'PrefillVsMatMul' -test.benchtime "${n}x" -test.v)
(cd kernels && "$tmp/kernels.test" -test.run '^$' -test.bench 'AttentionVsMatMul' -test.benchtime "${n}x")
(cd kernels && "$tmp/kernels.test" -test.run '^$' -test.bench 'DecodeAttention' -test.benchtime 300x)
(cd model && "$tmp/model.test" -test.run '^$' -test.bench 'DecodeContext' -test.benchtime 4x)
(cd model && "$tmp/model.test" -test.run '^$' -test.bench 'DecodeBatch' -test.benchtime 3x -test.v)
(cd kernels && "$tmp/kernels.test" -test.run '^$' -test.bench 'AttentionBatchDecode' -test.benchtime 10x)
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"

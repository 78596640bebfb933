#!/bin/sh
# run.sh measures every kernel figure of docs/BENCHMARKS.md in one run, so that
# they can be stated as ratios of each other on the same (shared, noisy) machine:
# the FMA peak and OpenBLAS sgemm (this directory's cgo program), then the
# kernels' own benchmarks. Needs Debian's libopenblas-dev for the first part.
#
#	sh tools/blasbench/run.sh [threads]
set -eu
threads=${1:-2}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) CPUs; $(grep -o -w -E 'avx512f|avx512_bf16|avx512_fp16|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
go version
(cd "$here" && go build -o "${TMPDIR:-/tmp}/blasbench" . && "${TMPDIR:-/tmp}/blasbench" -threads "$threads")
cd "$root"
# OpenBLAS on every linear shape of BenchmarkMatMulShapes (kernels/bench_test.go).
(cd "$here" && "${TMPDIR:-/tmp}/blasbench" -threads "$threads" -reps 5 -shapes \
	2048x896x896,2048x896x128,2048x896x4864,2048x4864x896,2048x576x576,2048x576x192,2048x576x1536,2048x1536x576,512x2048x2048,512x2048x512,512x2048x8192,512x8192x2048,256x896x151936,256x576x49152,2048x1536x256,512x4096x1024,256x14336x4096,512x3072x3072,512x3072x1024,512x11008x2048,2048x2048x256,512x8192x3072,512x3584x512,512x18944x3584,512x5120x5120,777x2560x2560)
GOMAXPROCS=$threads go test -v ./kernels -run '^$' -bench 'FMAPeak|MatMul($|Down|Shapes|Narrow|Layouts)|MatVec|Attention|DecodeBandwidth|BatchedDecode' -benchtime 10x
# Part Z's before/after on every shape (next-block prefetch, column split on
# the team), alternated in one process: six products an iteration, so fewer.
GOMAXPROCS=$threads go test -v ./kernels -run '^$' -bench 'MatMulAhead' -benchtime 4x
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

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
GOMAXPROCS=$threads go test ./kernels -run '^$' -bench 'FMAPeak|MatMul|MatVec|Attention|DecodeBandwidth' -benchtime 10x
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

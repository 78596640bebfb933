#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU, its driver and the CUDA libraries
# (libcuda, libcublas, libnvrtc), runs every GPU test and the GPU benchmarks of
# package gpu and writes all results to one file: $OUT/gpu-results.txt when OUT
# is set, ./gpu-results.txt otherwise. Budget: under 8 minutes.
#
# Needs either a Go toolchain (with the module cache, or network for it) or a
# test binary built beforehand on any Linux/amd64 machine:
#   CGO_ENABLED=0 go test -c -tags cuda -o bin/gpu.test ./gpu
# (no CUDA toolkit needed to build it). Run from anywhere inside the repository.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
if [ -n "${OUT:-}" ]; then
	mkdir -p "$OUT"
	results="$OUT/gpu-results.txt"
else
	results="$root/gpu-results.txt"
fi
: >"$results"
say() { echo "$@" | tee -a "$results"; }
start=$(date +%s)
status=0

say "== cacheclip GPU check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
say "== commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
if command -v nvidia-smi >/dev/null; then
	nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tee -a "$results"
else
	say "nvidia-smi not found (the tests still try the driver directly)"
fi
say "== CUDA libraries visible to the loader:"
(ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libcublas\.so|libnvrtc\.so' || echo "  none in ld.so.cache; set CACHECLIP_CUDA_LIB_PATH or LD_LIBRARY_PATH") | tee -a "$results"

bin="$root/bin/gpu.test"
if command -v go >/dev/null; then
	say "== building the GPU test binary with $(go version)"
	mkdir -p "$root/bin"
	if ! CGO_ENABLED=0 go test -c -tags cuda -o "$bin" ./gpu 2>&1 | tee -a "$results"; then
		say "FAIL: build"
		exit 1
	fi
elif [ -x "$bin" ]; then
	say "== go not found; using the prebuilt $bin"
else
	say "FAIL: no Go toolchain on PATH and no prebuilt bin/gpu.test."
	say "Build one where Go is installed: CGO_ENABLED=0 go test -c -tags cuda -o bin/gpu.test ./gpu"
	exit 1
fi

# Kernels compile once per machine; keep the cache with the results run.
export CACHECLIP_CUDA_CACHE="${CACHECLIP_CUDA_CACHE:-${TMPDIR:-/tmp}/cacheclip-cuda-cache}"

say "== tests (every kernel vs the CPU reference, whole-model logits vs the CPU backend, method invariants, loader)"
(cd "$root/gpu" && timeout 270 "$bin" -test.v -test.count=1 -test.timeout 260s 2>&1) | tee -a "$results"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
	say "FAIL: tests (exit $rc)"
	status=1
fi

say "== benchmarks (cuBLAS bf16 vs peak, H2D shard bandwidth vs pinned copy, 7B-shape TTFT per method)"
left=$((470 - ($(date +%s) - start)))
if [ "$left" -lt 60 ]; then
	say "FAIL: only ${left}s of the 8-minute budget left for benchmarks; skipped"
	exit 1
fi
(cd "$root/gpu" && timeout "$left" "$bin" -test.run '^$' -test.bench . -test.benchtime 1x -test.timeout "$((left - 5))s" 2>&1) | tee -a "$results"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
	say "FAIL: benchmarks (exit $rc)"
	status=1
fi
say "== done in $(($(date +%s) - start)) s; status $status; results in $results"
exit $status

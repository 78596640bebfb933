#!/usr/bin/env bash
# GPU check: every device check of the project in one call of at most 8
# minutes, on a machine with an NVIDIA GPU, its driver and the CUDA libraries
# (libcuda, libcublas, libnvrtc). All output goes to $OUT/gpu-results.txt
# when OUT is set, ./gpu-results.txt otherwise, step by step:
#   1. the backend conformance suite on the device (the suite the CPU passes);
#   2. every other GPU test (kernels vs the CPU ops, forward, loader, methods);
#   3. a test-bed job on the GPU and on the CPU, every method, compared
#      (>= 95% identical greedy answers, first-token KL <= 1e-3), and the
#      --device tests;
#   4. the benchmarks of package gpu: cuBLAS bf16 rate vs peak, shard H2D vs a
#      plain pinned copy, TTFT per method on the Qwen2.5-7B shape (random bf16
#      weights made on the device);
#   5. the job benchmark (questions/s with and without overlap, slowest stage);
#   6. a 4-label job against a generate job of 8 new tokens on the same rows
#      (issue 16's >= 3x target, which needs a backend where decode dominates).
#
# The GPU machine needs no Go: build the test binaries beforehand where Go and
# the modules are (scripts/gpu-build.sh writes bin/gpu.test, bin/runner.test and
# bin/BUILD_INFO) and carry bin/ with the tree. When go is on PATH the binaries
# are rebuilt here instead. A missing GPU is a failure: CACHECLIP_REQUIRE_GPU
# defaults to 1 in this script (the tests skip without it).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
budget=${GPU_CHECK_BUDGET:-470} # seconds; the device call is 8 minutes
if [ -n "${OUT:-}" ]; then
	mkdir -p "$OUT"
	results="$OUT/gpu-results.txt"
else
	results="$root/gpu-results.txt"
fi
: >"$results"
say() { echo "$@" | tee -a "$results"; }
start=$(date +%s)
left() { echo $((budget - ($(date +%s) - start))); }
status=0
export CACHECLIP_REQUIRE_GPU="${CACHECLIP_REQUIRE_GPU:-1}"

say "== cacheclip GPU check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), $(nproc) CPUs"
say "== tree: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (dirty)')"
if command -v nvidia-smi >/dev/null; then
	nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.max.sm --format=csv 2>&1 | tee -a "$results"
else
	say "nvidia-smi not found (the tests still try the driver directly)"
fi

# cuBLAS and NVRTC may live outside ld.so.cache (a toolkit under /usr/local,
# the nvidia-* Python wheels): hand their directories to the loader's search.
libdirs=$(find /usr/local /opt /usr/lib -maxdepth 9 \( -name 'libcublas.so.*' -o -name 'libnvrtc.so.*' -o -name 'libcuda.so.1' \) -printf '%h\n' 2>/dev/null | sort -u | paste -sd: -)
export CACHECLIP_CUDA_LIB_PATH="${CACHECLIP_CUDA_LIB_PATH:+$CACHECLIP_CUDA_LIB_PATH:}$libdirs"
say "== CUDA library directories: ${CACHECLIP_CUDA_LIB_PATH:-none found}"
(ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libcublas\.so|libnvrtc\.so' || true) | tee -a "$results"

if command -v go >/dev/null; then
	say "== building the test binaries with $(go version)"
	if ! scripts/gpu-build.sh 2>&1 | tee -a "$results"; then
		say "FAIL: build"
		exit 1
	fi
fi
for b in gpu.test runner.test; do
	if [ ! -x "$root/bin/$b" ]; then
		say "FAIL: no Go toolchain on PATH and no prebuilt bin/$b: run scripts/gpu-build.sh where Go is, and carry bin/"
		exit 1
	fi
done
say "== binaries: $(tr '\n' ' ' <"$root/bin/BUILD_INFO" 2>/dev/null || echo 'no bin/BUILD_INFO')"

# Kernels compile once per machine (NVRTC); later steps hit the disk cache.
export CACHECLIP_CUDA_CACHE="${CACHECLIP_CUDA_CACHE:-${TMPDIR:-/tmp}/cacheclip-cuda-cache}"

# step NAME DIR LIMIT BINARY ARGS...: runs a test binary in DIR (the package's
# directory, which its tests' relative paths expect) for at most LIMIT seconds
# (less if the budget has less), records its output and its verdict.
step() {
	local name=$1 dir=$2 limit=$3
	shift 3
	local l
	l=$(left)
	if [ "$l" -lt 20 ]; then
		say "FAIL: $name: not run, ${l}s of the budget left"
		status=1
		return 1
	fi
	limit=$((limit < l ? limit : l))
	say "== $name (limit ${limit}s)"
	local t0=$(date +%s)
	(cd "$root/$dir" && timeout -k 5 "$limit" "$@" -test.timeout "$((limit + 30))s" 2>&1) | tee -a "$results"
	local rc=${PIPESTATUS[0]}
	if [ "$rc" -ne 0 ]; then
		[ "$rc" -eq 124 ] && say "FAIL: $name: cut at ${limit}s" || say "FAIL: $name (exit $rc)"
		status=1
	else
		say "ok: $name in $(($(date +%s) - t0))s"
	fi
	return "$rc"
}

if ! step "backend conformance suite on the device" gpu 120 "$root/bin/gpu.test" -test.run '^TestBackendConformance$' -test.v -test.count=1; then
	if grep -q "no usable GPU" "$results"; then
		say "FAIL: no usable GPU; nothing else can run (see the reason above)"
		exit 1
	fi
fi
step "GPU tests: kernels, forward, loader, methods on the device" gpu 150 "$root/bin/gpu.test" -test.run . -test.skip '^TestBackendConformance$' -test.v -test.count=1
step "test-bed job GPU vs CPU, --device" runner 120 "$root/bin/runner.test" -test.run '^(TestGPUJobMatchesCPU|TestDevice.*)$' -test.v -test.count=1
step "benchmarks: GEMM vs peak, shard H2D vs pinned copy, 7B-shape TTFT per method" gpu $(($(left) - 135)) "$root/bin/gpu.test" -test.run '^$' -test.bench . -test.benchtime 1x
step "benchmark: job throughput with and without overlap" runner 75 "$root/bin/runner.test" -test.run '^$' -test.bench '^BenchmarkJob$' -test.benchtime 1x
step "benchmark: label job vs generate job (8 new tokens)" runner 60 "$root/bin/runner.test" -test.run '^$' -test.bench '^BenchmarkLabelVsGenerateJob$' -test.benchtime 2x -test.v
say "== done in $(($(date +%s) - start))s; status $status; results in $results"
exit $status

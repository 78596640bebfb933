#!/usr/bin/env bash
# Runs the CUDA kernels of kernels/cuda on the CPU under a small emulation of
# the CUDA execution model (blocks in turn, a block's threads as std::threads,
# barriers for __syncthreads and for warp shuffles) and checks them against
# double-precision references. Not a Go test: it needs g++ (C++20) and takes
# minutes on two cores. It checks kernel logic without a GPU; it says nothing
# about speed, the driver API or real warp scheduling.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src="$here/../../../kernels/cuda"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for f in "$src"/*.cu; do
	sed 's/extern __shared__ float smem\[\];/float* smem = g_dynsmem;/' "$f" >"$work/$(basename "$f" .cu).inc"
done
cp "$src/common.cuh" "$here/emu.h" "$here/main.cpp" "$work/"
g++ -std=c++20 -O1 -w -pthread -I"$work" "$work/main.cpp" -o "$work/emu"
"$work/emu"

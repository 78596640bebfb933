#!/usr/bin/env bash
# Builds the test binaries scripts/gpu-check.sh runs, for a GPU machine that
# has no Go toolchain or module cache: static (CGO_ENABLED=0; the CUDA
# libraries are opened at run time), linux/amd64, into bin/. Run it where Go
# and the modules are, then carry bin/ to the GPU machine with the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
export CGO_ENABLED=0 GOOS=linux GOARCH=amd64
go test -c -tags cuda -ldflags="-s -w" -o bin/gpu.test ./gpu
go test -c -ldflags="-s -w" -o bin/runner.test ./runner
{
	echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (dirty)')"
	echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) with $(go version)"
} >bin/BUILD_INFO
ls -l bin/gpu.test bin/runner.test
cat bin/BUILD_INFO

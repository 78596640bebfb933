package gpu

import (
	"fmt"
	"os"
	"unsafe"
)

const (
	cublasOpN         = 0
	cublasOpT         = 1
	cudaR32F          = 0
	cudaR16F          = 2
	cudaR16BF         = 14
	cublasCompute32F  = 68
	cublasGemmDefault = -1
	// CUBLAS_DEFAULT_MATH lets cuBLAS use tensor cores for bf16 inputs.
	cublasDefaultMath = 0
)

type cublasHandle uintptr

// cublas is the subset of cuBLAS the backend uses: one GEMM entry point.
type cublas struct {
	path              string
	cublasCreate      func(h *cublasHandle) int32
	cublasDestroy     func(h cublasHandle) int32
	cublasSetStream   func(h cublasHandle, s cuStream) int32
	cublasSetMathMode func(h cublasHandle, mode int32) int32
	cublasGetVersion  func(h cublasHandle, v *int32) int32
	cublasGemmEx      func(h cublasHandle, transa, transb int32, m, n, k int32,
		alpha unsafe.Pointer, a DevPtr, aType int32, lda int32,
		b DevPtr, bType int32, ldb int32,
		beta unsafe.Pointer, c DevPtr, cType int32, ldc int32,
		computeType int32, algo int32) int32
}

func loadCUBLAS() (*cublas, error) {
	h, path, err := findLibrary(libCUBLAS, searchDirs(os.Getenv), dlopen)
	if err != nil {
		return nil, err
	}
	c := &cublas{path: path}
	s := &symbols{lib: path, handle: h}
	s.bind(&c.cublasCreate, "cublasCreate_v2")
	s.bind(&c.cublasDestroy, "cublasDestroy_v2")
	s.bind(&c.cublasSetStream, "cublasSetStream_v2")
	s.bind(&c.cublasSetMathMode, "cublasSetMathMode")
	s.bind(&c.cublasGetVersion, "cublasGetVersion_v2")
	s.bind(&c.cublasGemmEx, "cublasGemmEx")
	if s.err != nil {
		return nil, s.err
	}
	return c, nil
}

var cublasStatus = map[int32]string{
	1: "NOT_INITIALIZED", 3: "ALLOC_FAILED", 7: "INVALID_VALUE", 8: "ARCH_MISMATCH",
	11: "MAPPING_ERROR", 13: "EXECUTION_FAILED", 14: "INTERNAL_ERROR", 15: "NOT_SUPPORTED", 16: "LICENSE_ERROR",
}

func cublasErr(call string, r int32) error {
	if r == 0 {
		return nil
	}
	return fmt.Errorf("cublas: %s: CUBLAS_STATUS_%s (%d)", call, cublasStatus[r], r)
}

// gemmShape is y[rows][out] = x[rows][in] · W^T for a row-major weight W
// [out][in], expressed as the column-major product cuBLAS computes:
// y^T (out×rows) = op_T(W stored in×out) · x^T (in×rows).
type gemmShape struct {
	transA, transB int32
	m, n, k        int32
	lda, ldb, ldc  int32
}

func linearShape(rows, in, out int) (gemmShape, error) {
	const lim = 1<<31 - 1
	if rows <= 0 || in <= 0 || out <= 0 || rows > lim || in > lim || out > lim {
		return gemmShape{}, fmt.Errorf("gemm: bad shape rows=%d in=%d out=%d", rows, in, out)
	}
	return gemmShape{transA: cublasOpT, transB: cublasOpN, m: int32(out), n: int32(rows), k: int32(in),
		lda: int32(in), ldb: int32(in), ldc: int32(out)}, nil
}

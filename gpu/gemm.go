package gpu

import (
	"runtime"
	"unsafe"
)

// linear computes y[rows][out] (f32) = x[rows][in] (bf16) · W^T with W a
// row-major bf16 [out][in] matrix: cuBLAS bf16 inputs, f32 accumulation and
// output. beta = 1 adds into y (used for nothing yet, kept explicit).
func (d *Device) linear(y DevPtr, x DevPtr, w DevPtr, rows, in, out int) error {
	s, err := linearShape(rows, in, out)
	if err != nil {
		return err
	}
	alpha, beta := float32(1), float32(0)
	r := d.blas.cublasGemmEx(d.handle, s.transA, s.transB, s.m, s.n, s.k,
		unsafe.Pointer(&alpha), w, cudaR16BF, s.lda,
		x, cudaR16BF, s.ldb,
		unsafe.Pointer(&beta), y, cudaR32F, s.ldc,
		cublasCompute32F, cublasGemmDefault)
	runtime.KeepAlive(&alpha)
	runtime.KeepAlive(&beta)
	return cublasErr("cublasGemmEx", r)
}

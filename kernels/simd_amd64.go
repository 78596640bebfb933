//go:build !purego

package kernels

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// simdKernels lists the SIMD sets this CPU runs, slowest first.
func simdKernels() []*Kernels {
	var out []*Kernels
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C {
		out = append(out, avx2Kernels())
	}
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512DQ {
		k := &Kernels{
			name:           "avx512",
			gemm:           sgemm12x32AVX512,
			gemmRows:       sgemm12x32RowsAVX512,
			gemmRowsPf:     sgemm12x32RowsPfAVX512,
			gemmRowsPfB:    sgemm12x32RowsPfBAVX512,
			gemmPfB:        sgemm12x32PfBAVX512,
			gemm4:          sgemm4x32AVX512,
			gemm4Rows:      sgemm4x32RowsAVX512,
			mr:             12,
			nr:             32,
			gemvPanelF32:   gemvPanelF32AVX512,
			gemvPanelBF16:  gemvPanelBF16AVX512,
			gemvPanelF16:   gemvPanelF16AVX512,
			gemmPanel8F32:  gemmPanel8F32AVX512,
			gemmPanel8BF16: gemmPanel8BF16AVX512,
			gemmPanel8F16:  gemmPanel8F16AVX512,
			gemv4F32:       gemv4F32AVX512,
			gemv4F16:       gemv4F16AVX512,
			gemv4BF16:      gemv4BF16AVX512,
			gemv44F32:      gemv4x4F32AVX512,
			gemv44F16:      gemv4x4F16AVX512,
			gemv44BF16:     gemv4x4BF16AVX512,
			gemv44BF16s:    gemv4x4BF16SplitAVX512,
			splitEvenOdd:   splitEvenOddAVX512,
			dot:            dotAVX512,
			axpy:           axpyAVX512,
			add:            addAVX512,
			scaleMul:       scaleMulAVX512,
			siluMul:        siluMulAVX512,
			expSub:         expSubAVX512,
			expSubV:        expSubVAVX512,
			colMax16:       colMax16AVX512,
			expRows16:      expRows16AVX512,
			vmax:           vmaxAVX512,
			scale:          scaleAVX512,
			bf16F32:        bf16F32AVX512,
			f16F32:         f16F32AVX512,
			f32F16:         f32F16Wide(f32F16AVX512, 16),
			f32BF16:        f32BF16AVX512,
			packPanel:      packPanel32AVX512,
			packPanelBF16:  packPanel32BF16AVX512,
			packPanelF16:   packPanel32F16AVX512,
			packRows:       packRows12AVX512,
			ropeHalf:       ropeHalfAVX512,
			ropeInter:      ropeInterAVX512,
		}
		if cpu.X86.HasAVX512BF16 {
			k.gemmBF16 = sgemmBF16AVX512
		}
		out = append(out, k)
	}
	return out
}

// f32F16Wide wraps a converter that handles whole blocks of w elements.
func f32F16Wide(f func(dst []uint16, src []float32), w int) func(dst []uint16, src []float32) {
	return func(dst []uint16, src []float32) {
		dst = dst[:len(src)]
		n := len(src) / w * w
		if n > 0 {
			f(dst[:n], src[:n])
		}
		for i := n; i < len(src); i++ {
			dst[i] = F32ToF16(src[i])
		}
	}
}

//go:noescape
func sgemm12x32AVX512(kc int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, acc int)

//go:noescape
func sgemm12x32RowsAVX512(kc int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, acc int)

//go:noescape
func sgemm12x32RowsPfAVX512(kc int, a *float32, lda int, b *float32, pf *float32, c *float32, ldc int, acc int)

//go:noescape
func sgemm12x32RowsPfBAVX512(kc int, a *float32, lda int, b *float32, pf *float32, pb unsafe.Pointer, c *float32, ldc int, acc int)

//go:noescape
func sgemm12x32PfBAVX512(kc int, a *float32, lda int, b *float32, ldb int, pb unsafe.Pointer, c *float32, ldc int, acc int)

//go:noescape
func packPanel32BF16AVX512(kc16 int, src *uint16, lds int, dst *float32)

//go:noescape
func packPanel32F16AVX512(kc16 int, src *uint16, lds int, dst *float32)

//go:generate go run gen_dpbf16.go

//go:noescape
func sgemmBF16AVX512(kp int, a, b *uint16, c *float32, ldc int, acc int)

//go:noescape
func gemv4F32AVX512(k int, w *float32, ldw int, x *float32, out *float32)

//go:noescape
func gemv4F16AVX512(k int, w *uint16, ldw int, x *float32, out *float32)

//go:noescape
func gemv4BF16AVX512(k int, w *uint16, ldw int, x *float32, out *float32)

//go:noescape
func dotAVX512(a, b []float32) float32

//go:noescape
func axpyAVX512(a float32, x, y []float32)

//go:noescape
func addAVX512(dst, x []float32)

//go:noescape
func scaleMulAVX512(dst, x, w []float32, s float32)

//go:noescape
func scaleAVX512(x []float32, s float32)

//go:noescape
func siluMulAVX512(gate, up []float32)

//go:noescape
func expSubAVX512(x []float32, m float32) float32

//go:noescape
func bf16F32AVX512(dst []float32, src []uint16)

//go:noescape
func f16F32AVX512(dst []float32, src []uint16)

//go:noescape
func f32F16AVX512(dst []uint16, src []float32)

//go:noescape
func vmaxAVX512(dst, x []float32)

//go:noescape
func expSubVAVX512(x, m, acc []float32)

//go:noescape
func fmaPeakAVX512(iters int)

//go:noescape
func gemv4x4F32AVX512(k int, w *float32, ldw int, x *float32, ldx int, out *float32)

//go:noescape
func gemv4x4F16AVX512(k int, w *uint16, ldw int, x *float32, ldx int, out *float32)

//go:noescape
func gemv4x4BF16AVX512(k int, w *uint16, ldw int, x *float32, ldx int, out *float32)

//go:noescape
func f32BF16AVX512(dst []uint16, src []float32)

//go:noescape
func packPanel32AVX512(kc16 int, src *float32, lds int, dst *float32)

//go:noescape
func packRows12AVX512(d16 int, src *float32, lds int, dst *float32)

//go:noescape
func ropeHalfAVX512(x *float32, heads, hd int, cos, sin *float32)

//go:noescape
func ropeInterAVX512(x *float32, heads, hd int, cos, sin *float32)

//go:noescape
func readBWAVX512(p *byte, n int) uint64

//go:noescape
func gemv4x4BF16SplitAVX512(k int, w *uint16, ldw int, x *float32, ldx int, out *float32)

//go:noescape
func splitEvenOddAVX512(dst, src []float32)

//go:noescape
func colMax16AVX512(p *float32, ld, n int, dst *float32)

//go:noescape
func expRows16AVX512(p *float32, ld, n int, m, acc *float32)

//go:noescape
func sgemm4x32AVX512(kc int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, acc int)

//go:noescape
func sgemm4x32RowsAVX512(kc int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, acc int)

//go:build !purego

package kernels

// avx2Kernels is the AVX2+FMA(+F16C) set for CPUs without AVX-512. The assembly
// works on whole vectors; the wrappers below finish the tails with the generic
// code, which rounds identically.
func avx2Kernels() *Kernels {
	k := genericKernels()
	k.name = "avx2"
	k.gemm, k.mr, k.nr = sgemm6x16AVX2, 6, 16
	k.gemv4F32 = gemv4F32AVX2
	k.gemv4F16 = gemv4F16AVX2
	k.gemv4BF16 = gemv4BF16AVX2
	k.dot = func(a, b []float32) float32 {
		b = b[:len(a)]
		n := len(a) &^ 31
		var s float32
		if n > 0 {
			s = dotAVX2(a[:n], b[:n])
		}
		return s + dotGo(a[n:], b[n:])
	}
	k.axpy = func(a float32, x, y []float32) {
		y = y[:len(x)]
		n := len(x) &^ 7
		axpyAVX2(a, x[:n], y[:n])
		axpyGo(a, x[n:], y[n:])
	}
	k.add = func(dst, x []float32) {
		x = x[:len(dst)]
		n := len(dst) &^ 7
		addAVX2(dst[:n], x[:n])
		addGo(dst[n:], x[n:])
	}
	k.scaleMul = func(dst, x, w []float32, s float32) {
		dst, w = dst[:len(x)], w[:len(x)]
		n := len(x) &^ 7
		scaleMulAVX2(dst[:n], x[:n], w[:n], s)
		scaleMulGo(dst[n:], x[n:], w[n:], s)
	}
	k.scale = func(x []float32, s float32) {
		n := len(x) &^ 7
		scaleAVX2(x[:n], s)
		scaleGo(x[n:], s)
	}
	k.vmax = func(dst, x []float32) {
		x = x[:len(dst)]
		n := len(dst) &^ 7
		vmaxAVX2(dst[:n], x[:n])
		vmaxGo(dst[n:], x[n:])
	}
	k.siluMul = func(gate, up []float32) {
		up = up[:len(gate)]
		n := len(gate) &^ 7
		siluMulAVX2(gate[:n], up[:n])
		siluMulGo(gate[n:], up[n:])
	}
	k.expSub = func(x []float32, m float32) float32 {
		n := len(x) &^ 7
		return expSubAVX2(x[:n], m) + expSubGo(x[n:], m)
	}
	k.expSubV = func(x, m, acc []float32) {
		m, acc = m[:len(x)], acc[:len(x)]
		n := len(x) &^ 7
		expSubVAVX2(x[:n], m[:n], acc[:n])
		expSubVGo(x[n:], m[n:], acc[n:])
	}
	k.bf16F32 = func(dst []float32, src []uint16) {
		dst = dst[:len(src)]
		n := len(src) &^ 7
		bf16F32AVX2(dst[:n], src[:n])
		bf16F32Go(dst[n:], src[n:])
	}
	k.f16F32 = func(dst []float32, src []uint16) {
		dst = dst[:len(src)]
		n := len(src) &^ 7
		f16F32AVX2(dst[:n], src[:n])
		f16F32Go(dst[n:], src[n:])
	}
	k.f32F16 = f32F16Wide(f32F16AVX2, 8)
	return k
}

//go:noescape
func sgemm6x16AVX2(kc int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, acc int)

//go:noescape
func gemv4F32AVX2(k int, w *float32, ldw int, x *float32, out *float32)

//go:noescape
func gemv4F16AVX2(k int, w *uint16, ldw int, x *float32, out *float32)

//go:noescape
func gemv4BF16AVX2(k int, w *uint16, ldw int, x *float32, out *float32)

//go:noescape
func dotAVX2(a, b []float32) float32

//go:noescape
func axpyAVX2(a float32, x, y []float32)

//go:noescape
func addAVX2(dst, x []float32)

//go:noescape
func scaleMulAVX2(dst, x, w []float32, s float32)

//go:noescape
func scaleAVX2(x []float32, s float32)

//go:noescape
func vmaxAVX2(dst, x []float32)

//go:noescape
func siluMulAVX2(gate, up []float32)

//go:noescape
func expSubAVX2(x []float32, m float32) float32

//go:noescape
func expSubVAVX2(x, m, acc []float32)

//go:noescape
func bf16F32AVX2(dst []float32, src []uint16)

//go:noescape
func f16F32AVX2(dst []float32, src []uint16)

//go:noescape
func f32F16AVX2(dst []uint16, src []float32)

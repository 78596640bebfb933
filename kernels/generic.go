package kernels

import (
	"math"
	"unsafe"
)

// genericKernels is the portable set; every SIMD set is tested against it and
// against the naive references in the tests.
func genericKernels() *Kernels {
	return &Kernels{
		name:      "generic",
		gemm:      gemmGo,
		mr:        4,
		nr:        16,
		gemv4F32:  gemv4F32Go,
		gemv4F16:  gemv4F16Go,
		gemv4BF16: gemv4BF16Go,
		dot:       dotGo,
		axpy:      axpyGo,
		add:       addGo,
		scaleMul:  scaleMulGo,
		siluMul:   siluMulGo,
		expSub:    expSubGo,
		expSubV:   expSubVGo,
		vmax:      vmaxGo,
		scale:     scaleGo,
		bf16F32:   bf16F32Go,
		f16F32:    f16F32Go,
		f32F16:    f32F16Go,
		f32BF16:   f32BF16Go,
	}
}

// gemmGo is the 4×16 micro-kernel of the generic set.
func gemmGo(kc int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, acc int) {
	const mr, nr = 4, 16
	var t [mr][nr]float32
	if kc > 0 {
		as := unsafe.Slice(a, (kc-1)*lda+mr)
		bs := unsafe.Slice(b, (kc-1)*ldb+nr)
		for p := 0; p < kc; p++ {
			bp := (*[nr]float32)(bs[p*ldb : p*ldb+nr])
			ap := as[p*lda : p*lda+mr]
			for i := 0; i < mr; i++ {
				ai := ap[i]
				ti := &t[i]
				for j := 0; j < nr; j++ {
					ti[j] += ai * bp[j]
				}
			}
		}
	}
	cs := unsafe.Slice(c, (mr-1)*ldc+nr)
	for i := 0; i < mr; i++ {
		row := (*[nr]float32)(cs[i*ldc : i*ldc+nr])
		if acc != 0 {
			for j := range row {
				row[j] += t[i][j]
			}
		} else {
			*row = t[i]
		}
	}
}

func gemv4F32Go(k int, w *float32, ldw int, x *float32, out *float32) {
	ws := unsafe.Slice(w, 3*ldw+k)
	xs := unsafe.Slice(x, k)
	o := unsafe.Slice(out, 4)
	for r := 0; r < 4; r++ {
		o[r] = dotGo(ws[r*ldw:r*ldw+k], xs)
	}
}

func gemv4F16Go(k int, w *uint16, ldw int, x *float32, out *float32) {
	ws := unsafe.Slice(w, 3*ldw+k)
	xs := unsafe.Slice(x, k)
	o := unsafe.Slice(out, 4)
	for r := 0; r < 4; r++ {
		var s0, s1 float32
		row := ws[r*ldw : r*ldw+k]
		for c := 0; c+1 < k; c += 2 {
			s0 += F16ToF32(row[c]) * xs[c]
			s1 += F16ToF32(row[c+1]) * xs[c+1]
		}
		if k&1 != 0 {
			s0 += F16ToF32(row[k-1]) * xs[k-1]
		}
		o[r] = s0 + s1
	}
}

func gemv4BF16Go(k int, w *uint16, ldw int, x *float32, out *float32) {
	ws := unsafe.Slice(w, 3*ldw+k)
	xs := unsafe.Slice(x, k)
	o := unsafe.Slice(out, 4)
	for r := 0; r < 4; r++ {
		var s0, s1 float32
		row := ws[r*ldw : r*ldw+k]
		for c := 0; c+1 < k; c += 2 {
			s0 += BF16ToF32(row[c]) * xs[c]
			s1 += BF16ToF32(row[c+1]) * xs[c+1]
		}
		if k&1 != 0 {
			s0 += BF16ToF32(row[k-1]) * xs[k-1]
		}
		o[r] = s0 + s1
	}
}

func dotGo(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func axpyGo(a float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += a * v
	}
}

func addGo(dst, x []float32) {
	x = x[:len(dst)]
	for i := range dst {
		dst[i] += x[i]
	}
}

func scaleMulGo(dst, x, w []float32, s float32) {
	w = w[:len(x)]
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = v * s * w[i]
	}
}

func scaleGo(x []float32, s float32) {
	for i := range x {
		x[i] *= s
	}
}

func siluMulGo(gate, up []float32) {
	up = up[:len(gate)]
	for i, g := range gate {
		gate[i] = g / (1 + float32(math.Exp(float64(-g)))) * up[i]
	}
}

func expSubGo(x []float32, m float32) float32 {
	var s float32
	for i, v := range x {
		e := float32(math.Exp(float64(v - m)))
		x[i] = e
		s += e
	}
	return s
}

func bf16F32Go(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, h := range src {
		dst[i] = math.Float32frombits(uint32(h) << 16)
	}
}

func f16F32Go(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, h := range src {
		dst[i] = F16ToF32(h)
	}
}

func f32F16Go(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, f := range src {
		dst[i] = F32ToF16(f)
	}
}

func expSubVGo(x, m, acc []float32) {
	m = m[:len(x)]
	acc = acc[:len(x)]
	for i, v := range x {
		e := float32(math.Exp(float64(v - m[i])))
		x[i] = e
		acc[i] += e
	}
}

func vmaxGo(dst, x []float32) {
	x = x[:len(dst)]
	for i, v := range x {
		dst[i] = max(dst[i], v)
	}
}

func f32BF16Go(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, f := range src {
		dst[i] = F32ToBF16(f)
	}
}

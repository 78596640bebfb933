package kernels

import "math"

// RMSNorm writes x / rms(x) · w into dst (dst may alias x).
func RMSNorm(dst, x, w []float32, eps float32) { defaultKernels.RMSNorm(dst, x, w, eps) }

// SiLUMul computes gate[i] = silu(gate[i]) · up[i] in place.
func SiLUMul(gate, up []float32) { defaultKernels.siluMul(gate, up[:len(gate)]) }

// Add computes dst += x.
func Add(dst, x []float32) { defaultKernels.add(dst, x[:len(dst)]) }

// RMSNorm writes x / rms(x) · w into dst (dst may alias x).
func (k *Kernels) RMSNorm(dst, x, w []float32, eps float32) {
	if len(x) == 0 {
		return
	}
	ss := k.dot(x, x)
	inv := float32(1 / math.Sqrt(float64(ss)/float64(len(x))+float64(eps)))
	k.scaleMul(dst[:len(x)], x, w[:len(x)], inv)
}

// SiLUMul computes gate[i] = silu(gate[i]) · up[i] in place.
func (k *Kernels) SiLUMul(gate, up []float32) { k.siluMul(gate, up[:len(gate)]) }

// Add computes dst += x.
func (k *Kernels) Add(dst, x []float32) { k.add(dst, x[:len(dst)]) }

// Dot is the f32 inner product.
func (k *Kernels) Dot(a, b []float32) float32 { return k.dot(a, b[:len(a)]) }

// Axpy computes y += a·x.
func (k *Kernels) Axpy(a float32, x, y []float32) { k.axpy(a, x, y[:len(x)]) }

// Scale computes x *= s.
func (k *Kernels) Scale(x []float32, s float32) { k.scale(x, s) }

// ToF32 widens 16-bit storage of dtype d (BF16 or F16) into dst.
func (k *Kernels) ToF32(dst []float32, src []uint16, d DType) {
	dst = dst[:len(src)]
	switch d {
	case BF16:
		k.bf16F32(dst, src)
	case F16:
		k.f16F32(dst, src)
	default:
		panic("kernels: ToF32 on f32 storage")
	}
}

// FromF32 rounds src to 16-bit storage of dtype d (BF16 or F16), nearest even.
func (k *Kernels) FromF32(dst []uint16, src []float32, d DType) {
	dst = dst[:len(src)]
	switch d {
	case BF16:
		k.f32BF16(dst, src)
	case F16:
		k.f32F16(dst, src)
	default:
		panic("kernels: FromF32 to f32 storage")
	}
}

// colMax sets dst[c] = max(dst[c], x[j·ld+c]) over rows j < n and columns
// c < len(dst) of the row-major block x: a softmax's running maximum over a
// block of logits kept one row per key and one column per query. The SIMD set
// walks 16-column strips in one call each instead of one call per row.
func (k *Kernels) colMax(dst, x []float32, ld, n int) {
	w := len(dst)
	if n <= 0 || w == 0 {
		return
	}
	_ = x[(n-1)*ld+w-1]
	c0 := 0
	if k.colMax16 != nil {
		for ; c0+16 <= w; c0 += 16 {
			k.colMax16(&x[c0], ld, n, &dst[c0])
		}
	}
	if c0 < w {
		for j := 0; j < n; j++ {
			k.vmax(dst[c0:], x[j*ld+c0:j*ld+w])
		}
	}
}

// expRows replaces x[j·ld+c] by exp(x[j·ld+c] − m[c]) and adds each column's
// sum to acc[c], over rows j < n and columns c < len(m) of the block x (the
// layout of colMax).
func (k *Kernels) expRows(x []float32, ld, n int, m, acc []float32) {
	w := len(m)
	if n <= 0 || w == 0 {
		return
	}
	_ = x[(n-1)*ld+w-1]
	acc = acc[:w]
	c0 := 0
	if k.expRows16 != nil {
		for ; c0+16 <= w; c0 += 16 {
			k.expRows16(&x[c0], ld, n, &m[c0], &acc[c0])
		}
	}
	if c0 < w {
		for j := 0; j < n; j++ {
			k.expSubV(x[j*ld+c0:j*ld+w], m[c0:], acc[c0:])
		}
	}
}

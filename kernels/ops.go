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

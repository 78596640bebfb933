// Package kernels holds the CPU compute kernels of the engine: matrix products over
// weights in their stored dtype, fused attention, normalisation, activations, RoPE
// and dtype conversion.
//
// Every kernel has a portable pure-Go path; SIMD paths (AVX-512 with VDPBF16PS, and
// AVX2+FMA) are Go assembly chosen at run time from golang.org/x/sys/cpu. The choice
// is a *Kernels value fixed when a Pool is created (Detect, or PoolOptions.Kernels),
// so hot loops never look at CPU flags or the environment. CACHECLIP_KERNELS=generic
// (read at Pool creation) or the purego build tag force the portable path. The
// package-level helpers that take no Pool (Dot, RMSNorm, ...) use the set detected
// at start-up.
//
// MatMul is a Goto-style blocked product: activations packed into mr-row panels,
// weights packed (and widened to f32) in kc×nc blocks per worker, a 12×32 register
// tile (AVX-512) or 6×16 (AVX2), block sizes derived from the L1d/L2 sizes. Decode and
// batched-decode products (≤ 16 rows) stream the weights once through a
// matrix-vector kernel that widens bf16/f16 on the fly. Results match
// f32 arithmetic to rounding (~1e-6 relative to Σ|x·w|) on every path, except that
// a Pool created with FastBF16 rounds activations to bf16 for bf16 weights.
package kernels

import (
	"fmt"
	"math"
)

// DType is the storage type of a weight or cache tensor. Math is always f32.
type DType uint8

const (
	F32 DType = iota
	F16
	BF16
)

func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case F16:
		return "f16"
	case BF16:
		return "bf16"
	}
	if n, ok := quantName(d); ok {
		return n
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// Size is the number of bytes of one element.
func (d DType) Size() int {
	if d == F32 {
		return 4
	}
	return 2
}

// ParseDType accepts the safetensors spellings (F32, F16, BF16) and lower-case forms.
func ParseDType(s string) (DType, error) {
	switch s {
	case "F32", "f32", "float32":
		return F32, nil
	case "F16", "f16", "float16":
		return F16, nil
	case "BF16", "bf16", "bfloat16":
		return BF16, nil
	}
	return 0, fmt.Errorf("unsupported dtype %q", s)
}

// BF16ToF32 widens a bfloat16 bit pattern.
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 rounds to nearest even; NaN stays NaN.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// F16ToF32 widens an IEEE half bit pattern, subnormals included.
func F16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0:
		if man == 0 {
			return math.Float32frombits(sign)
		}
		// Subnormal: value = man * 2^-24.
		f := float32(man) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
}

// F32ToF16 rounds to nearest even with overflow to infinity.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff {
		if man != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		man |= 0x800000
		shift := uint32(14 - e)
		half := uint32(1) << (shift - 1)
		rem := man & ((1 << shift) - 1)
		m := man >> shift
		if rem > half || (rem == half && m&1 == 1) {
			m++
		}
		return sign | uint16(m)
	}
	m := man >> 13
	rem := man & 0x1fff
	out := uint32(e)<<10 | m
	if rem > 0x1000 || (rem == 0x1000 && m&1 == 1) {
		out++
	}
	return sign | uint16(out)
}

// ToF32 converts n elements of src (raw storage) into dst.
func ToF32(dst []float32, src []uint16, d DType) { defaultKernels.ToF32(dst, src, d) }

// FromF32 converts src into 16-bit storage of dtype d.
func FromF32(dst []uint16, src []float32, d DType) { defaultKernels.FromF32(dst, src, d) }

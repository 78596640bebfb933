//go:build !purego

package kernels

import "golang.org/x/sys/cpu"

// avx512Quant holds the AVX-512 quantized routines (nil where the CPU lacks
// AVX-512 F/BW/VL or BMI2, which the mask arithmetic uses).
var avx512Quant = func() *quantKernels {
	if !(cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasBMI2) {
		return nil
	}
	k := &quantKernels{
		gemv4: map[DType]func(nb int, w *byte, ldw int, x, sx, out *float32){
			Q4_1: q41Gemv4AVX512,
			Q8_0: func(nb int, w *byte, ldw int, x, _, out *float32) { q80Gemv4AVX512(nb, w, ldw, x, out) },
		},
		dequant: map[DType]func(nb int, row *byte, dst *float32){
			Q4_1: q41DequantAVX512,
			Q8_0: q80DequantAVX512,
		},
		gemv4Q8:  genericQuant.gemv4Q8,
		quantize: q8QuantizeAVX512,
	}
	if cpu.X86.HasAVX512VNNI {
		k.gemv4Q8 = map[DType]func(nb int, w *byte, ldw int, xq *int8, xd, sx, out *float32){
			Q4_1: q41Gemv4VNNI, Q8_0: q80Gemv4VNNI,
		}
		k.intSIMD = true
	}
	return k
}()

// The integer kernels (quant_q8.go) need AVX-512 VNNI (VPDPBUSD); where the
// CPU lacks it the AVX-512 set keeps the portable integer routines.

//go:noescape
func q41Gemv4VNNI(nb int, w *byte, ldw int, xq *int8, xd, sx, out *float32)

//go:noescape
func q80Gemv4VNNI(nb int, w *byte, ldw int, xq *int8, xd, sx, out *float32)

//go:noescape
func q41Gemv4AVX512(nb int, w *byte, ldw int, x, sx, out *float32)

//go:noescape
func q80Gemv4AVX512(nb int, w *byte, ldw int, x, out *float32)

//go:noescape
func q41DequantAVX512(nb int, row *byte, dst *float32)

//go:noescape
func q80DequantAVX512(nb int, row *byte, dst *float32)

//go:noescape
func q8QuantizeAVX512(nb int, x *float32, qs *int8, d, s *float32)

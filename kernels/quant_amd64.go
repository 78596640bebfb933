//go:build !purego

package kernels

import "golang.org/x/sys/cpu"

// avx512Quant holds the AVX-512 quantized routines (nil where the CPU lacks
// AVX-512 F/BW/VL or BMI2, which the mask arithmetic uses).
var avx512Quant = func() *quantKernels {
	if !(cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasBMI2) {
		return nil
	}
	return &quantKernels{
		gemv4: map[DType]func(nb int, w *byte, ldw int, x, sx, out *float32){
			Q4_1: q41Gemv4AVX512,
			Q8_0: func(nb int, w *byte, ldw int, x, _, out *float32) { q80Gemv4AVX512(nb, w, ldw, x, out) },
		},
		dequant: map[DType]func(nb int, row *byte, dst *float32){
			Q4_1: q41DequantAVX512,
			Q8_0: q80DequantAVX512,
		},
	}
}()

//go:noescape
func q41Gemv4AVX512(nb int, w *byte, ldw int, x, sx, out *float32)

//go:noescape
func q80Gemv4AVX512(nb int, w *byte, ldw int, x, out *float32)

//go:noescape
func q41DequantAVX512(nb int, row *byte, dst *float32)

//go:noescape
func q80DequantAVX512(nb int, row *byte, dst *float32)

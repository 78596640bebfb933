//go:build !purego

package kernels

//go:noescape
func gemmPanel8F32AVX512(kc int, w *float32, x *float32, ldx int, c *float32, ldc int, acc int, pf uintptr)

//go:noescape
func gemmPanel8BF16AVX512(kc int, w *uint16, x *float32, ldx int, c *float32, ldc int, acc int, pf uintptr)

//go:noescape
func gemmPanel8F16AVX512(kc int, w *uint16, x *float32, ldx int, c *float32, ldc int, acc int, pf uintptr)

// panelIlv holds the VPERMT2PS indices that interleave two registers a
// (indices 0–15) and b (16–31) as a0 b0 a1 b1 …: the first 16 for elements
// 0–7 of each, the next 16 for 8–15. The bf16 panel kernels keep a row's
// even and odd columns apart and put them back in order with it.
//
//lint:ignore U1000 read by the assembly (panels_amd64.s, panels_batch_amd64.s)
var panelIlv = [32]uint32{0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
	8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31}

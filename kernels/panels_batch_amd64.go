//go:build !purego

package kernels

//go:noescape
func gemmPanel8F32AVX512(kc int, w *float32, x *float32, ldx int, c *float32, ldc int, acc int, pf uintptr)

//go:noescape
func gemmPanel8BF16AVX512(kc int, w *uint16, x *float32, ldx int, c *float32, ldc int, acc int, pf uintptr)

//go:noescape
func gemmPanel8F16AVX512(kc int, w *uint16, x *float32, ldx int, c *float32, ldc int, acc int, pf uintptr)

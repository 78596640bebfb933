//go:build !purego

package kernels

import "unsafe"

//go:noescape
func gemvPanelF32AVX512(k int, w *float32, x *float32, out *float32, acc int)

//go:noescape
func gemvPanelBF16AVX512(k int, w *uint16, x *float32, out *float32, acc int)

//go:noescape
func gemvPanelF16AVX512(k int, w *uint16, x *float32, out *float32, acc int)

//go:noescape
func sgemm12x32RowsPfBAVX512(kc int, a *float32, lda int, b *float32, pf *float32, pb unsafe.Pointer, c *float32, ldc int, acc int)

//go:noescape
func sgemm12x32PfBAVX512(kc int, a *float32, lda int, b *float32, ldb int, pb unsafe.Pointer, c *float32, ldc int, acc int)

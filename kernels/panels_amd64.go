//go:build !purego

package kernels

//go:noescape
func gemvPanelF32AVX512(k int, w *float32, x *float32, out *float32, acc int)

//go:noescape
func gemvPanelBF16AVX512(k int, w *uint16, x *float32, out *float32, acc int)

//go:noescape
func gemvPanelF16AVX512(k int, w *uint16, x *float32, out *float32, acc int)

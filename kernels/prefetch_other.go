//go:build purego || !amd64

package kernels

// prefetchRows is a hint only; the portable build has none.
func prefetchRows(p *float32, rows, stride, n int) {}

//go:build !purego

package kernels

// prefetchRows asks the CPU to bring the first n bytes of rows rows, stride
// bytes apart from p, into cache (decode attention's next key block and
// value rows, so that their reads overlap the current block's products).
//
//go:noescape
func prefetchRows(p *float32, rows, stride, n int)

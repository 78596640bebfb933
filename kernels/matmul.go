package kernels

// MatMul computes dst[i*w.Rows+o] = Σ_c x[i*w.Cols+c] · W[o][c] for i < n: n
// activation rows times the transposed weight matrix. dst is overwritten.
// Work is split over output features so each worker streams a slice of W once.
func MatMul(p *Pool, dst, x []float32, n int, w Mat) {
	if n == 0 {
		return
	}
	_ = dst[n*w.Rows-1]
	_ = x[n*w.Cols-1]
	p.Run(w.Rows, 16, func(lo, hi int) {
		matMulRef(dst, x, n, w, lo, hi)
	})
}

// matMulRef is the portable path: it widens a block of weight rows once and reuses
// it across all activation rows.
func matMulRef(dst, x []float32, n int, w Mat, lo, hi int) {
	k := w.Cols
	const blk = 4
	buf := make([]float32, blk*k)
	for o := lo; o < hi; o += blk {
		ob := min(blk, hi-o)
		for j := 0; j < ob; j++ {
			w.RowF32(o+j, buf[j*k:(j+1)*k])
		}
		for i := 0; i < n; i++ {
			xi := x[i*k : (i+1)*k]
			for j := 0; j < ob; j++ {
				dst[i*w.Rows+o+j] = Dot(xi, buf[j*k:(j+1)*k])
			}
		}
	}
}

// Dot is the f32 inner product.
func Dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// Axpy computes y += a·x.
func Axpy(a float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += a * v
	}
}

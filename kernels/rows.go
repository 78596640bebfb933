package kernels

// GatherRows copies rows idx[i] of src (rows of width floats) into row i of dst, so
// that selective recompute runs the dense kernels on just the chosen rows.
func GatherRows(p *Pool, dst, src []float32, idx []int32, width int) {
	if len(idx) == 0 || width <= 0 {
		return
	}
	_ = dst[len(idx)*width-1 : len(idx)*width]
	p.Run(len(idx), 64, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			r := int(idx[i])
			copy(dst[i*width:(i+1)*width], src[r*width:(r+1)*width])
		}
	})
}

// ScatterRows copies row i of src into row idx[i] of dst (the inverse of
// GatherRows); rows of dst not named in idx are left alone.
func ScatterRows(p *Pool, dst, src []float32, idx []int32, width int) {
	if len(idx) == 0 || width <= 0 {
		return
	}
	_ = src[len(idx)*width-1 : len(idx)*width]
	p.Run(len(idx), 64, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			r := int(idx[i])
			copy(dst[r*width:(r+1)*width], src[i*width:(i+1)*width])
		}
	})
}

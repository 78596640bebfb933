package model

import "cacheclip/kernels"

// sampleQuant is sample (weights.go) of the matrix's f32 values, widening only the rows
// the samples fall in.
func sampleQuant(m kernels.Mat) []float32 {
	n := m.Rows * m.Cols
	row := make([]float32, m.Cols)
	last := -1
	at := func(i int) float32 {
		if r := i / m.Cols; r != last {
			m.RowF32(r, row)
			last = r
		}
		return row[i%m.Cols]
	}
	if n <= 4096 {
		out := make([]float32, n)
		for i := range out {
			out[i] = at(i)
		}
		return out
	}
	out := make([]float32, 4096)
	for i := range out {
		out[i] = at(i * (n - 1) / 4095)
	}
	return out
}

package kernels

import "fmt"

// outputs is the output side of a blocked product: one weight matrix and its
// result (MatMul), or several matrices that take the same input side by side
// (MatMulShared) in one virtual output, each starting on a whole nr-column
// panel so that no panel straddles two matrices.
type outputs []outSeg

// outSeg is one weight matrix of a product, its result (row stride w.Rows) and
// the virtual column its first output takes.
type outSeg struct {
	w   Mat
	dst []float32
	v0  int
}

func oneOutput(dst []float32, w Mat) outputs { return outputs{{w: w, dst: dst}} }

// width is the virtual output width, up to the last matrix's last column.
func (o outputs) width() int {
	l := o[len(o)-1]
	return l.v0 + l.w.Rows
}

// at returns the matrix holding virtual column vc and vc's column in it.
func (o outputs) at(vc int) (*outSeg, int) {
	for i := len(o) - 1; i > 0; i-- {
		if vc >= o[i].v0 {
			return &o[i], vc - o[i].v0
		}
	}
	return &o[0], vc
}

// pack is packB over virtual columns [vc, vc+nc), vc on a panel boundary:
// each panel is packed from the matrix it belongs to.
func (o outputs) pack(ks *Kernels, dst []float32, vc, nc, pc, kc int, rowBuf []float32) {
	nr := ks.nr
	if len(o) == 1 {
		packB(ks, dst, o[0].w, vc, nc, pc, kc, nr, rowBuf)
		return
	}
	for jp := 0; jp*nr < nc; jp++ {
		s, lc := o.at(vc + jp*nr)
		packB(ks, dst[jp*kc*nr:], s.w, lc, min(nr, nc-jp*nr, s.w.Rows-lc), pc, kc, nr, rowBuf)
	}
}

// tile runs microTile on the tile of activation rows [r0, r0+rows) and the
// panel at virtual column vc, in its matrix's result.
func (o outputs) tile(ks *Kernels, kc int, a aPanel, b *float32, vc, r0, rows, acc int, tile []float32) {
	s, lc := o.at(vc)
	N := s.w.Rows
	microTile(ks, kc, a, b, s.dst, r0*N+lc, N, rows, min(ks.nr, N-lc), acc, tile)
}

// MatMulShared computes dsts[i] = x · ws[i]ᵀ for every i, exactly as
// MatMul(p, dsts[i], x, n, ws[i]) does, for weight matrices that take the same
// input: the Q, K and V projections, gate and up. The products run as one
// over the matrices side by side, so the activations are read once per worker
// instead of once per matrix, and the narrow K/V outputs of grouped-query
// attention become part of a wide product instead of products of their own
// (BenchmarkMatMulShared). Every matrix must have the same Cols. Decode-sized
// n, quantized weights and the FastBF16 path run the matrices one by one.
func MatMulShared(p *Pool, dsts [][]float32, x []float32, n int, ws []Mat) {
	if len(dsts) != len(ws) {
		panic(fmt.Sprintf("kernels: MatMulShared: %d results for %d matrices", len(dsts), len(ws)))
	}
	if n <= 0 || len(ws) == 0 {
		return
	}
	ks := p.Kernels()
	K := ws[0].Cols
	separate := K == 0
	for i, w := range ws {
		if w.Cols != K {
			panic(fmt.Sprintf("kernels: MatMulShared: matrix %d has %d columns, matrix 0 %d", i, w.Cols, K))
		}
		if w.DType.Quantized() || n <= matVecRows(p, ks, w.DType) || w.DType == BF16 && p != nil && p.bf16Dot || w.Rows == 0 {
			separate = true
		}
	}
	if separate {
		for i, w := range ws {
			MatMul(p, dsts[i], x, n, w)
		}
		return
	}
	o := make(outputs, len(ws))
	v := 0
	for i, w := range ws {
		if err := w.Validate(); err != nil {
			panic("kernels: MatMulShared: " + err.Error())
		}
		_ = dsts[i][n*w.Rows-1]
		o[i] = outSeg{w: w, dst: dsts[i], v0: v}
		v += (w.Rows + ks.nr - 1) / ks.nr * ks.nr
	}
	_ = x[n*K-1]
	if n > o.width() {
		matMulRowsWith(p, ks, o, x, n, true)
		return
	}
	kc, nc := blocking(ks, K, 4)
	matMulPackedWith(p, ks, o, x, n, kc, nc, true)
}

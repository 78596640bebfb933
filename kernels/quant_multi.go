package kernels

import "unsafe"

// quantPlan is one decode-sized product over quantized weights, prepared
// for the group loop: its activation rows' block sums (exact, f32
// activations) or 8-bit blocks (Q8Act). group(g) computes outputs
// 4g..4g+3 of every row exactly as matVecQuant and matVecQ8 always have, so
// a product split into groups gives the same bits however the groups are
// handed out — alone, or beside other products in one hand-off (MatMuls).
type quantPlan struct {
	w                Mat
	dst, x           []float32
	n, nb, nbPad, rb int
	ks               *Kernels
	sx               []float32 // exact: n rows of nbPad block sums
	acts             []q8Act   // Q8Act: n quantized rows
	gemv             func(nb int, w *byte, ldw int, x, sx, out *float32)
	gemvQ8           func(nb int, w *byte, ldw int, xq *int8, xd, sx, out *float32)
	q8               bool
}

// prepare fills the plan's activation side for n rows of x against w,
// taking its scratch from buf (planFloats floats); from, when not nil, is a
// plan over the same rows of x whose block sums or 8-bit blocks are reused.
func (pl *quantPlan) prepare(ks *Kernels, dst, x []float32, n int, w Mat, buf []float32, from *quantPlan) {
	K := w.Cols
	nb := K / QuantBlock
	*pl = quantPlan{w: w, dst: dst, x: x, n: n, nb: nb, nbPad: (nb + 15) &^ 15, rb: QuantRowBytes(w.DType, K), ks: ks, q8: w.Q8Act}
	qk := ks.quant()
	if pl.q8 {
		pl.gemvQ8 = qk.gemv4Q8[w.DType]
		if from != nil {
			pl.acts = from.acts
			return
		}
		per := q8Floats(nb)
		pl.acts = make([]q8Act, n)
		for i := range pl.acts {
			pl.acts[i] = carveQ8(buf[i*per:(i+1)*per], nb)
			qk.quantizeQ8(pl.acts[i], x[i*K:(i+1)*K])
		}
		return
	}
	pl.gemv = qk.gemv4[w.DType]
	if from != nil {
		pl.sx = from.sx
		return
	}
	pl.sx = buf[:n*pl.nbPad]
	for i := 0; i < n; i++ {
		blockSums(pl.sx[i*pl.nbPad:(i+1)*pl.nbPad], x[i*K:(i+1)*K])
	}
}

// planFloats is the scratch prepare needs for n rows against w.
func planFloats(n int, w Mat) int {
	nb := w.Cols / QuantBlock
	if w.Q8Act {
		return n * q8Floats(nb)
	}
	return n * ((nb + 15) &^ 15)
}

// groups is the number of four-row output groups.
func (pl *quantPlan) groups() int { return (pl.w.Rows + 3) / 4 }

// group computes outputs 4g..4g+3 (fewer in a last partial group) of every
// activation row. out is the kernels' scratch, one per part: the kernels are
// called through func values, so a local array would move to the heap at
// every group.
func (pl *quantPlan) group(g int, out *[4]float32) {
	w, K, N, rb := pl.w, pl.w.Cols, pl.w.Rows, pl.rb
	o0 := g * 4
	rows := min(4, N-o0)
	if pl.q8 {
		// A last group of one to three rows repeats its final row (ldw 0
		// for the missing ones), so the kernels never read past the matrix.
		for i, a := range pl.acts {
			if rows == 4 {
				pl.gemvQ8(pl.nb, &w.Q[o0*rb], rb, &a.qs[0], &a.d[0], &a.s[0], &out[0])
				copy(pl.dst[i*N+o0:i*N+o0+4], out[:])
				continue
			}
			for r := 0; r < rows; r++ {
				pl.gemvQ8(pl.nb, &w.Q[(o0+r)*rb], 0, &a.qs[0], &a.d[0], &a.s[0], &out[0])
				pl.dst[i*N+o0+r] = out[0]
			}
		}
		return
	}
	if rows < 4 {
		row := make([]float32, K)
		for o := o0; o < N; o++ {
			pl.ks.dequantRow(w, o, row)
			for i := 0; i < pl.n; i++ {
				pl.dst[i*N+o] = dotGo(row, pl.x[i*K:(i+1)*K])
			}
		}
		return
	}
	for i := 0; i < pl.n; i++ {
		pl.gemv(pl.nb, &w.Q[o0*rb], rb, &pl.x[i*K], &pl.sx[i*pl.nbPad], &out[0])
		copy(pl.dst[i*N+o0:i*N+o0+4], out[:])
	}
}

// Product is one product of MatMuls: Dst = X·Wᵀ, n rows (MatMul's
// arguments).
type Product struct {
	Dst, X []float32
	W      Mat
}

// MatMuls computes every product as MatMul(p, pr.Dst, pr.X, n, pr.W) would,
// with the same bits. Where every product is a decode-sized one over
// quantized weights read in registers (one row of f32 activations, or
// Q8Act's 8-bit ones), all of them go to the pool's team in one hand-off:
// its workers take groups of four weight rows of any product. A decode token
// of a small model is hundreds of products of tens of microseconds, and each
// hand-off costs the wake-up of the helpers and a wait for the slowest part;
// Q, K and V (and gate and up) share their input, so one hand-off serves
// them. Products that share X (the same slice) also share its block sums or
// 8-bit blocks. Other products run one MatMul each.
func MatMuls(p *Pool, n int, prods ...Product) {
	ks := p.Kernels()
	if n <= 0 || !fusable(ks, n, prods) {
		for _, pr := range prods {
			MatMul(p, pr.Dst, pr.X, n, pr.W)
		}
		return
	}
	for _, pr := range prods {
		if err := pr.W.Validate(); err != nil {
			panic("kernels: MatMuls: " + err.Error())
		}
		_ = pr.Dst[n*pr.W.Rows-1]
		_ = pr.X[n*pr.W.Cols-1]
	}
	runPlans(p, ks, n, prods)
}

// runPlans runs the products (validated, all fusable) in one hand-off.
func runPlans(p *Pool, ks *Kernels, n int, prods []Product) {
	total := 0
	for i, pr := range prods {
		if sharesInput(prods, i) < 0 {
			total += planFloats(n, pr.W)
		}
	}
	buf := p.getBuf(total)
	defer p.putBuf(buf)
	plans := make([]quantPlan, len(prods))
	// ends[i] is the number of groups of products 0..i.
	ends := make([]int, len(prods))
	off, G := 0, 0
	for i, pr := range prods {
		if j := sharesInput(prods, i); j >= 0 {
			plans[i].prepare(ks, pr.Dst, pr.X, n, pr.W, nil, &plans[j])
		} else {
			sz := planFloats(n, pr.W)
			plans[i].prepare(ks, pr.Dst, pr.X, n, pr.W, (*buf)[off:off+sz], nil)
			off += sz
		}
		G += plans[i].groups()
		ends[i] = G
	}
	p.runTeam(G, 16, func(lo, hi int) {
		out := new([4]float32)
		i := 0
		for g := lo; g < hi; g++ {
			for g >= ends[i] {
				i++
			}
			plans[i].group(g-(ends[i]-plans[i].groups()), out)
		}
	})
}

// fusable reports whether every product is one MatMul would serve from
// quantPlan's in-register kernels (and has columns).
func fusable(ks *Kernels, n int, prods []Product) bool {
	for _, pr := range prods {
		w := pr.W
		if !w.DType.Quantized() || w.Rows == 0 || w.Cols == 0 || !(w.Q8Act || (n <= gemvMaxRows && !widensQuant(ks, n))) {
			return false
		}
	}
	return len(prods) > 0
}

// sharesInput returns an earlier product with the same X, columns and
// activation kind as product i (whose prepared activations i can reuse), or -1.
func sharesInput(prods []Product, i int) int {
	a := prods[i]
	for j := range i {
		b := prods[j]
		if unsafe.SliceData(a.X) == unsafe.SliceData(b.X) && a.W.Cols == b.W.Cols && a.W.Q8Act == b.W.Q8Act {
			return j
		}
	}
	return -1
}

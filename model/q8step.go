package model

import "cacheclip/kernels"

// decodeStep reports whether s is a decode step (Seq.Decode, set by Generate).
// Where the weights allow 8-bit activations (kernels.Mat.Q8Act, --weights
// native-q8) only a decode step's rows use them; a prompt, a chunk, a label
// or recomputed tokens stay exact whatever their length. Which kind a row
// gets depends on its own sequence alone, never on the sequences beside it
// in the call, so a question's tokens do not depend on its batch partners.
func decodeStep(s *Seq) bool { return s.Decode }

// actRun is a run [lo, hi) of consecutive rows of one activation kind.
type actRun struct {
	lo, hi int
	q8     bool
}

// actRuns splits the rows of a call (rows(si) of sequence si, in sequence
// order) into runs of consecutive sequences of one kind. Without 8-bit
// weights (q8 false) that is one exact run.
func actRuns(seqs []*Seq, rows func(si int) int, q8 bool) []actRun {
	var runs []actRun
	at := 0
	for si, s := range seqs {
		n := rows(si)
		k := q8 && decodeStep(s)
		if last := len(runs) - 1; last >= 0 && runs[last].q8 == k {
			runs[last].hi += n
		} else {
			runs = append(runs, actRun{lo: at, hi: at + n, q8: k})
		}
		at += n
	}
	return runs
}

// matMuls runs the products (Dst and X over all the call's rows) run by run,
// each weight's Q8Act kept only on a decode step's runs; the products of
// one run go to kernels.MatMuls together.
func matMuls(pool *kernels.Pool, runs []actRun, prods ...kernels.Product) {
	sub := make([]kernels.Product, len(prods))
	for _, r := range runs {
		if r.hi == r.lo {
			continue
		}
		for i, p := range prods {
			w := p.W
			w.Q8Act = w.Q8Act && r.q8
			sub[i] = kernels.Product{Dst: p.Dst[r.lo*w.Rows : r.hi*w.Rows], X: p.X[r.lo*w.Cols : r.hi*w.Cols], W: w}
		}
		kernels.MatMuls(pool, r.hi-r.lo, sub...)
	}
}

// anyQ8Act reports whether any matrix of w allows 8-bit activations.
func (w *Weights) anyQ8Act() bool {
	if w.LMHead.Q8Act {
		return true
	}
	for i := range w.Layers {
		L := &w.Layers[i]
		for _, m := range []*kernels.Mat{&L.Wq, &L.Wk, &L.Wv, &L.Wo, &L.Wgate, &L.Wup, &L.Wdown} {
			if m.Q8Act {
				return true
			}
		}
	}
	return false
}

package model

import (
	"context"
	"fmt"
	"math"

	"cacheclip/kernels"
)

// Seq is one sequence's share of a forward call: rows (token ids at explicit
// positions) that are computed and written into slots of the sequence's cache.
type Seq struct {
	// Cache is the backend's own cache type (NewCache of the backend running
	// the call).
	Cache  KVCache
	Tokens []int32
	Pos    []int32
	Slots  []int32
	// Logits lists the rows (indices into Tokens) whose next-token logits are returned.
	Logits []int
	// Decode marks a decode step (Generate's one-token calls). Where the
	// weights allow 8-bit activations (kernels.Mat.Q8Act, --weights
	// native-q8) only a decode step's rows use them. It is a flag the caller
	// sets rather than a shape Forward infers: a one-token prompt, the last
	// one-token piece of a chunked prefill or a label's one new token look
	// like a decode step and must stay exact.
	Decode bool
	// Groups, when set, changes how rows weigh slots (APE): see AttnGroups.
	Groups *AttnGroups
	// Probe, when set, is asked before each layer's attention for a buffer of
	// len(rows)·Heads·Cache.Len() floats; a non-nil answer receives that layer's
	// attention probabilities [row][head][slot] of the rows still active.
	Probe func(layer int) []float32
	// Prune, when set, is called at layer PruneLayer with the fresh keys and values
	// of the active rows (after RoPE, before they are written to the cache); it
	// returns the subset (ascending indices into rows) that continue through this and
	// later layers. Rows dropped keep what their slots already hold. Rows whose
	// logits are asked for must be kept.
	PruneLayer int
	Prune      func(layer int, rows []int, k, v []float32) []int
}

// AttnGroups splits slots into groups attended to separately and merged by
// log-sum-exp: within group g the logits are scaled by 1/Temp[g], and group g's
// share is weighted by exp(LSEScale[g]·lse_g). Temp = LSEScale = 1 for every group
// is plain softmax attention.
type AttnGroups struct {
	SlotGroup []uint8 // per cache slot
	Temp      []float32
	LSEScale  []float32
}

// Output is the result of one sequence in a forward call.
type Output struct {
	// Logits[i] belongs to row Seq.Logits[i].
	Logits [][]float32
}

// Forward runs every layer for the given rows of each sequence: each row's key and
// value are written into its slot before attention, each row attends over every
// slot of its cache whose position is at or before its own, and logits come back
// only for the rows asked for. At the last layer a row whose output nothing reads
// (no logits asked, no Probe on its sequence) stops once its key and value are
// written. Rows of all sequences share the matrix products,
// which is what makes batched decode cheaper than one sequence at a time.
//
// Every operation runs on m.Pool with its kernel set.
func (m *Model) Forward(ctx context.Context, seqs []*Seq) ([]Output, error) {
	m.Pack()
	cfg := &m.Config
	pool := m.Pool
	ks := pool.Kernels()
	caches, R, err := CheckSeqs(seqs, m.checkSeq)
	if err != nil {
		return nil, err
	}
	H, D, QD, KD := cfg.Hidden, cfg.HeadDim, cfg.QDim(), cfg.KVDim()
	st := stageTimesFrom(ctx)
	rows := NewRows(seqs)
	for si, s := range seqs {
		// Attention masks by the positions of the slots.
		for i, sl := range s.Slots {
			caches[si].Pos[sl] = s.Pos[i]
		}
	}
	pos, slot, spans := rows.Pos, rows.Slot, rows.Spans
	q8 := m.W.anyQ8Act()
	runs := func() []actRun {
		return actRuns(seqs, func(si int) int { return spans[si].Hi - spans[si].Lo }, q8)
	}
	x := make([]float32, R*H)
	for si, s := range seqs {
		lo := spans[si].Lo
		pool.Run(len(s.Tokens), 64, func(a, b int) {
			for i := a; i < b; i++ {
				ks.RowF32(m.W.Embed, int(s.Tokens[i]), x[(lo+i)*H:(lo+i+1)*H])
			}
		})
	}
	xn := make([]float32, R*H)
	q := make([]float32, R*QD)
	k := make([]float32, R*KD)
	v := make([]float32, R*KD)
	att := make([]float32, R*QD)
	gate := make([]float32, R*cfg.Intermediate)
	up := make([]float32, R*cfg.Intermediate)
	tmp := make([]float32, R*H)
	half := D / 2
	cos := make([]float32, R*half)
	sin := make([]float32, R*half)
	pool.Run(R, 8, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			kernels.RoPETable(cos[r*half:(r+1)*half], sin[r*half:(r+1)*half], pos[r], 1, m.invFreq)
		}
	})
	st.lap(StageEmbed)
	calls := make([]kernels.AttnCall, 0, len(seqs))
	for l := 0; l < cfg.Layers; l++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		L := &m.W.Layers[l]
		R = len(pos)
		// The previous layer's MLP residual (tmp) is added here, in the pass
		// that norms x, rather than in a pass of its own.
		pool.Run(R, 8, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				if l > 0 {
					ks.Add(x[r*H:(r+1)*H], tmp[r*H:(r+1)*H])
				}
				ks.RMSNorm(xn[r*H:(r+1)*H], x[r*H:(r+1)*H], L.AttnNorm, cfg.RMSEps)
			}
		})
		st.lap(StageAttnNorm)
		// Q, K and V share their input: one hand-off where the kernels
		// can (kernels.MatMuls).
		matMuls(pool, runs(), kernels.Product{Dst: q[:R*QD], X: xn[:R*H], W: L.Wq},
			kernels.Product{Dst: k[:R*KD], X: xn[:R*H], W: L.Wk}, kernels.Product{Dst: v[:R*KD], X: xn[:R*H], W: L.Wv})
		st.lap(StageMatQKV)
		pool.Run(R, 8, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				if L.Bq != nil {
					ks.Add(q[r*QD:(r+1)*QD], L.Bq)
					ks.Add(k[r*KD:(r+1)*KD], L.Bk)
					ks.Add(v[r*KD:(r+1)*KD], L.Bv)
				}
				c, s := cos[r*half:(r+1)*half], sin[r*half:(r+1)*half]
				ks.RoPE(q[r*QD:(r+1)*QD], 0, cfg.Heads, D, c, s, cfg.RopeInterleaved)
				ks.RoPE(k[r*KD:(r+1)*KD], 0, cfg.KVHeads, D, c, s, cfg.RopeInterleaved)
			}
		})
		st.lap(StageBiasRoPE)
		// Selective recompute that decides at a layer (CacheBlend) drops rows here.
		keep, pruned, err := rows.Prune(seqs, l, func(lo, hi int) ([]float32, []float32, error) {
			return k[lo*KD : hi*KD], v[lo*KD : hi*KD], nil
		})
		if err != nil {
			return nil, err
		}
		if pruned {
			gatherRows(keep, x, H)
			gatherRows(keep, q, QD)
			gatherRows(keep, k, KD)
			gatherRows(keep, v, KD)
			gatherRows(keep, cos, half)
			gatherRows(keep, sin, half)
			if err := rows.Keep(seqs, l, keep); err != nil {
				return nil, err
			}
			pos, slot, spans = rows.Pos, rows.Slot, rows.Spans
			R = rows.Len()
		}
		st.lap(StageOther)
		for si := range seqs {
			c, lo := caches[si], spans[si].Lo
			// Slots of one call are distinct (CheckRows), so rows store in parallel.
			pool.Run(spans[si].Hi-lo, 64, func(a, b int) {
				for r := lo + a; r < lo+b; r++ {
					c.putKV(l, int(slot[r]), k[r*KD:(r+1)*KD], v[r*KD:(r+1)*KD])
				}
			})
		}
		if l == cfg.Layers-1 {
			// Past its keys and values, the last layer of a row is read only
			// through logits or a probe: the other rows (a prompt's context, a
			// chunk's cache, CacheClip's recomputed tokens) stop here.
			if keep, fewer := rows.Needed(seqs); fewer {
				gatherRows(keep, x, H)
				gatherRows(keep, q, QD)
				if err := rows.Keep(seqs, l, keep); err != nil {
					return nil, err
				}
				pos, spans = rows.Pos, rows.Spans
				R = rows.Len()
			}
		}
		st.lap(StageKVWrite)
		// Every sequence attends over its own cache; the calls go to the
		// kernels together, so that a decode step's batch (one row a
		// sequence) is one hand-off rather than two per sequence.
		calls = calls[:0]
		for si, s := range seqs {
			sp := spans[si]
			if sp.Hi == sp.Lo {
				continue
			}
			c := caches[si]
			var probs []float32
			if s.Probe != nil {
				probs = s.Probe(l)
				if probs != nil && len(probs) != (sp.Hi-sp.Lo)*cfg.Heads*c.Len() {
					return nil, fmt.Errorf("forward: sequence %d: probe buffer for layer %d has %d floats, want %d", si, l, len(probs), (sp.Hi-sp.Lo)*cfg.Heads*c.Len())
				}
			}
			n := c.Len()
			spec := kernels.AttnSpec{Heads: cfg.Heads, KVHeads: cfg.KVHeads, HeadDim: D, Scale: float32(1 / math.Sqrt(float64(D))), Probs: probs}
			if g := s.Groups; g != nil {
				spec.SlotGroup, spec.GroupTemp, spec.GroupLSEScale = g.SlotGroup[:n], g.Temp, g.LSEScale
			}
			calls = append(calls, kernels.AttnCall{Out: att[sp.Lo*QD : sp.Hi*QD], Q: q[sp.Lo*QD : sp.Hi*QD], RowPos: pos[sp.Lo:sp.Hi],
				KB: c.k[l], V: c.v[l][:n*KD], SlotPos: c.Pos[:n], Spec: spec})
		}
		kernels.AttentionBlockedBatch(pool, calls)
		st.lap(StageAttention)
		matMuls(pool, runs(), kernels.Product{Dst: tmp[:R*H], X: att[:R*QD], W: L.Wo})
		st.lap(StageMatO)
		pool.Run(R, 8, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				ks.Add(x[r*H:(r+1)*H], tmp[r*H:(r+1)*H])
				ks.RMSNorm(xn[r*H:(r+1)*H], x[r*H:(r+1)*H], L.MLPNorm, cfg.RMSEps)
			}
		})
		st.lap(StageResidNorm)
		I := cfg.Intermediate
		matMuls(pool, runs(), kernels.Product{Dst: gate[:R*I], X: xn[:R*H], W: L.Wgate},
			kernels.Product{Dst: up[:R*I], X: xn[:R*H], W: L.Wup})
		st.lap(StageMatGateUp)
		pool.Run(R, 4, func(lo, hi int) {
			ks.SiLUMul(gate[lo*I:hi*I], up[lo*I:hi*I])
		})
		st.lap(StageSiLUMul)
		matMuls(pool, runs(), kernels.Product{Dst: tmp[:R*H], X: gate[:R*I], W: L.Wdown})
		st.lap(StageMatDown)
	}
	outs := make([]Output, len(seqs))
	// Gather the rows whose logits are wanted, add the last layer's MLP residual
	// to them (no other row needs it), run the final norm and the head once.
	want := rows.Wanted(seqs)
	if len(want) == 0 {
		return outs, nil
	}
	hn := make([]float32, len(want)*H)
	for j, r := range want {
		h := hn[j*H : (j+1)*H]
		copy(h, x[r*H:(r+1)*H])
		if cfg.Layers > 0 {
			ks.Add(h, tmp[r*H:(r+1)*H])
		}
		ks.RMSNorm(h, h, m.W.Norm, cfg.RMSEps)
	}
	st.lap(StageResidAdd)
	logits := make([]float32, len(want)*cfg.Vocab)
	// The head's rows are the wanted ones, sequence by sequence.
	headRuns := actRuns(seqs, func(si int) int {
		n := 0
		for _, w := range seqs[si].Logits {
			if rows.row(si, w) >= 0 {
				n++
			}
		}
		return n
	}, q8)
	matMuls(pool, headRuns, kernels.Product{Dst: logits, X: hn, W: m.W.LMHead})
	SplitLogits(outs, seqs, logits, cfg.Vocab)
	st.lap(StageHead)
	return outs, nil
}

// gatherRows moves rows keep[j] (ascending) of buf, w floats each, to row j.
func gatherRows(keep []int, buf []float32, w int) {
	for j, r := range keep {
		if j != r {
			copy(buf[j*w:(j+1)*w], buf[r*w:(r+1)*w])
		}
	}
}

func (m *Model) checkSeq(s *Seq) (*Cache, error) {
	cfg := &m.Config
	if s.Cache == nil {
		return nil, fmt.Errorf("no cache")
	}
	c, ok := s.Cache.(*Cache)
	if !ok {
		return nil, fmt.Errorf("a %T is not a CPU cache", s.Cache)
	}
	if c.Layers != cfg.Layers || c.KVDim != cfg.KVDim() {
		return nil, fmt.Errorf("cache shaped for %d layers × %d, model has %d × %d", c.Layers, c.KVDim, cfg.Layers, cfg.KVDim())
	}
	return c, m.Config.CheckRows(s.Tokens, s.Pos, s.Slots, s.Logits, c.Len(), s.Groups)
}

// CheckRows validates the rows of one sequence against the model and a cache of
// cacheLen allocated slots; every backend calls it so bad input is the same error
// on each.
func (cfg *Config) CheckRows(tokens, pos, slots []int32, logits []int, cacheLen int, g *AttnGroups) error {
	n := len(tokens)
	if len(pos) != n || len(slots) != n {
		return fmt.Errorf("%d tokens but %d positions and %d slots", n, len(pos), len(slots))
	}
	seen := make(map[int32]bool, n)
	for i := 0; i < n; i++ {
		if t := tokens[i]; t < 0 || int(t) >= cfg.Vocab {
			return fmt.Errorf("row %d: token id %d outside the vocabulary of %d", i, t, cfg.Vocab)
		}
		if p := pos[i]; p < 0 || int(p) >= cfg.MaxPos {
			return fmt.Errorf("row %d: position %d outside the model's context of %d", i, p, cfg.MaxPos)
		}
		if cfg.SlidingWindow > 0 && int(pos[i]) >= cfg.SlidingWindow {
			return fmt.Errorf("row %d: position %d reaches the sliding window of %d, which this engine does not implement", i, pos[i], cfg.SlidingWindow)
		}
		sl := slots[i]
		if sl < 0 || int(sl) >= cacheLen {
			return fmt.Errorf("row %d: slot %d outside the cache's %d allocated slots", i, sl, cacheLen)
		}
		if seen[sl] {
			return fmt.Errorf("row %d: slot %d written twice in one call", i, sl)
		}
		seen[sl] = true
	}
	for _, w := range logits {
		if w < 0 || w >= n {
			return fmt.Errorf("logits asked for row %d of %d", w, n)
		}
	}
	if g != nil {
		if len(g.SlotGroup) < cacheLen {
			return fmt.Errorf("attention groups cover %d slots, cache has %d", len(g.SlotGroup), cacheLen)
		}
		if len(g.Temp) != len(g.LSEScale) || len(g.Temp) == 0 {
			return fmt.Errorf("attention groups: %d temperatures and %d scales", len(g.Temp), len(g.LSEScale))
		}
		for _, gi := range g.SlotGroup[:cacheLen] {
			if int(gi) >= len(g.Temp) {
				return fmt.Errorf("attention groups: slot group %d of %d", gi, len(g.Temp))
			}
		}
	}
	return nil
}

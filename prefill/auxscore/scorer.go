// Package auxscore is CacheClip's auxiliary scorer (docs/METHODS.md): a small model
// reads the same chunks and question with its own tokenizer and template, the
// last layer's attention from the question's tokens to the context marks the
// context tokens that matter, and a budgeted, grouped selection of them is
// mapped onto the primary model's tokens for recompute.
//
// The package would be "aux", but Go refuses that path element (a reserved
// device name on Windows), so it lives under prefill.
package auxscore

import (
	"context"
	"fmt"
	"sync"

	"cacheclip/model"
	"cacheclip/prefill"
)

// Reductions over the question's tokens.
const (
	Mean = "mean" // average over question tokens (default)
	Max  = "max"  // largest over question tokens
	Last = "last" // the last question token only
)

// Options tune scoring and selection.
type Options struct {
	Reduce   string // mean, max or last
	Window   int    // sliding window w (default 8)
	MinCount int    // candidates m that make a window recomputed whole (default 5)
}

// DefaultOptions are the paper's.
func DefaultOptions() Options { return Options{Reduce: Mean, Window: 8, MinCount: 5} }

// Scorer runs an auxiliary model. With Source set it assembles the context from
// per-chunk caches of the auxiliary model (its own fingerprint) and computes only
// Q fresh, so its cost stops growing with the context; otherwise it prefills
// P and the chunks in full.
type Scorer struct {
	Model    model.Backend
	Layouter prefill.Layouter
	Source   prefill.ChunkSource
	Opts     Options
	// Boundary, with Source set, recomputes the first Boundary tokens of every
	// chunk after the first over the assembled context before Q (aux_mode
	// boundary): a chunk cache computed alone lacks attention across chunks,
	// and its first tokens are the ones that lack the most, so recomputing them
	// brings the scores near the full prefill's at a fraction of its rows. A
	// Boundary of at least the chunks' length computes every context row with
	// the whole context before it, as the full prefill does. 0: none.
	Boundary int
	// FullChunkRows bounds one forward call of the full auxiliary prefill (0:
	// model.DefaultAppendRows).
	FullChunkRows int

	prefix prefill.PrefixCache
	idle   idleCaches
}

// idleCaches keeps the assembled host caches (model.Cache) of finished
// questions for the next ones: a SmolLM2-shaped auxiliary's cache over 2,080
// slots is 92 MiB (30 layers × (2,112 blocked key slots + 2,080 value slots)
// × 192 × 4 B; 104 MiB at the eighth more get allocates), and allocating
// (zeroing) one per question cost the cached
// mode about as much as widening its chunk caches. It holds at most as many as
// were in use at once (the aux stage's workers). A device cache is freed after
// each question as before: holding device memory between questions would
// take it from the primary's budget.
type idleCaches struct {
	mu     sync.Mutex
	caches []*model.Cache
}

// get returns an idle cache with room for n slots, or a new one; a new host
// cache gets an eighth more: questions differ by a few tokens, and growing a
// cache by one slot doubles it and copies the old contents, which a reused
// cache does not need. An idle cache too small is dropped.
func (c *idleCaches) get(m model.Backend, n int) (model.KVCache, error) {
	c.mu.Lock()
	if k := len(c.caches); k > 0 {
		kc := c.caches[k-1]
		c.caches = c.caches[:k-1]
		if kc.Cap() >= n {
			c.mu.Unlock()
			return kc, nil
		}
	}
	c.mu.Unlock()
	if hm, ok := m.(*model.Model); ok {
		return hm.HostCache(n + n/8), nil
	}
	return m.NewCache(n)
}

// put empties a host cache and keeps it; it frees any other.
func (c *idleCaches) put(kc model.KVCache) {
	hc, ok := kc.(*model.Cache)
	if !ok {
		kc.Free()
		return
	}
	hc.Reset()
	c.mu.Lock()
	c.caches = append(c.caches, hc)
	c.mu.Unlock()
}

func (s *Scorer) opts() (Options, error) {
	o := s.Opts
	d := DefaultOptions()
	if o.Reduce == "" {
		o.Reduce = d.Reduce
	}
	if o.Window == 0 {
		o.Window = d.Window
	}
	if o.MinCount == 0 {
		o.MinCount = d.MinCount
	}
	if o.Reduce != Mean && o.Reduce != Max && o.Reduce != Last {
		return o, fmt.Errorf("auxiliary scorer: reduction %q, want mean, max or last", o.Reduce)
	}
	if o.Window < 1 || o.MinCount < 1 {
		return o, fmt.Errorf("auxiliary scorer: window %d and minimum count %d must be positive", o.Window, o.MinCount)
	}
	return o, nil
}

// Select implements prefill.Selector: the auxiliary model's scores mapped onto
// the primary's context tokens, then SelectTokens at the budget.
func (s *Scorer) Select(ctx context.Context, q prefill.Query, primary prefill.Layout, budget int) ([]int, error) {
	o, err := s.opts()
	if err != nil {
		return nil, err
	}
	sc, err := s.PrimaryScores(ctx, q, primary)
	if err != nil {
		return nil, err
	}
	return SelectTokens(sc, budget, o.Window, o.MinCount), nil
}

// SelectScores is Select's second half, on scores PrimaryScores returned
// earlier (an adaptive budget is known only once a whole batch is scored).
func (s *Scorer) SelectScores(scores []float32, budget int) ([]int, error) {
	o, err := s.opts()
	if err != nil {
		return nil, err
	}
	return SelectTokens(scores, budget, o.Window, o.MinCount), nil
}

// PrimaryScores scores the query's context with the auxiliary model and returns
// one importance per primary context token (chunks concatenated).
func (s *Scorer) PrimaryScores(ctx context.Context, q prefill.Query, primary prefill.Layout) ([]float32, error) {
	if s.Layouter == nil || s.Model == nil {
		return nil, fmt.Errorf("auxiliary scorer: no model or layouter")
	}
	auxLay, err := s.Layouter.Layout(q.Chunks, q.Question)
	if err != nil {
		return nil, fmt.Errorf("auxiliary scorer: layout: %w", err)
	}
	if err := mappable(&primary, &auxLay); err != nil {
		return nil, err
	}
	per, err := s.Scores(ctx, auxLay)
	if err != nil {
		return nil, err
	}
	out := make([]float32, 0, primary.ContextTokens())
	for i, pc := range primary.Chunks {
		ac := auxLay.Chunks[i]
		if sameTokens(&pc, &ac) {
			out = append(out, per[i]...)
			continue
		}
		m, err := MapScores(pc.Offsets, ac.Offsets, per[i], len(pc.Text))
		if err != nil {
			return nil, fmt.Errorf("auxiliary scorer: chunk %d: %w", i, err)
		}
		out = append(out, m...)
	}
	return out, nil
}

// mappable checks that the auxiliary tokens can be mapped onto the primary's by
// byte offsets: the same chunk texts, and offsets for every token.
func mappable(p, a *prefill.Layout) error {
	if len(p.Chunks) != len(a.Chunks) {
		return fmt.Errorf("auxiliary scorer: primary layout has %d chunks, auxiliary %d", len(p.Chunks), len(a.Chunks))
	}
	for i := range p.Chunks {
		pc, ac := &p.Chunks[i], &a.Chunks[i]
		if sameTokens(pc, ac) {
			continue
		}
		if pc.Text != ac.Text {
			return fmt.Errorf("auxiliary tokenizer cannot be mapped: chunk %d reads %q in the auxiliary template but %q in the primary's", i, clip(ac.Text), clip(pc.Text))
		}
		if len(pc.Offsets) != len(pc.IDs) {
			return fmt.Errorf("auxiliary tokenizer cannot be mapped: chunk %d: primary tokenizer gave %d offsets for %d tokens", i, len(pc.Offsets), len(pc.IDs))
		}
		if len(ac.Offsets) != len(ac.IDs) {
			return fmt.Errorf("auxiliary tokenizer cannot be mapped: chunk %d: auxiliary tokenizer gave %d offsets for %d tokens", i, len(ac.Offsets), len(ac.IDs))
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func sameTokens(a, b *prefill.Segment) bool {
	if a.Text != b.Text || len(a.IDs) != len(b.IDs) || len(a.Offsets) != len(b.Offsets) {
		return false
	}
	for i := range a.IDs {
		if a.IDs[i] != b.IDs[i] {
			return false
		}
	}
	for i := range a.Offsets {
		if a.Offsets[i] != b.Offsets[i] {
			return false
		}
	}
	return true
}

// Scores returns, per chunk of the auxiliary layout, each token's importance:
// its last-layer attention probability from the question's tokens, averaged over
// heads and reduced over question tokens by Opts.Reduce.
func (s *Scorer) Scores(ctx context.Context, lay prefill.Layout) ([][]float32, error) {
	o, err := s.opts()
	if err != nil {
		return nil, err
	}
	probs, cache, err := s.attend(ctx, lay)
	if err != nil {
		return nil, err
	}
	defer s.idle.put(cache)
	H := s.Model.ModelConfig().Heads
	nq := len(lay.Question.IDs)
	ns := cache.Len()
	slot := make([]float64, ns)
	rowScore := make([]float64, ns)
	first := 0
	if o.Reduce == Last {
		first = nq - 1
	}
	for r := first; r < nq; r++ {
		for j := range rowScore {
			rowScore[j] = 0
		}
		for h := 0; h < H; h++ {
			p := probs[(r*H+h)*ns : (r*H+h+1)*ns]
			for j, x := range p {
				rowScore[j] += float64(x)
			}
		}
		for j := range slot {
			v := rowScore[j] / float64(H)
			if o.Reduce == Max {
				slot[j] = max(slot[j], v)
			} else {
				slot[j] += v
			}
		}
	}
	if o.Reduce == Mean {
		for j := range slot {
			slot[j] /= float64(nq)
		}
	}
	out := make([][]float32, len(lay.Chunks))
	at := len(lay.Prefix.IDs)
	for i, c := range lay.Chunks {
		out[i] = make([]float32, len(c.IDs))
		for t := range c.IDs {
			out[i][t] = float32(slot[at+t])
		}
		at += len(c.IDs)
	}
	return out, nil
}

// attend fills the auxiliary cache with P and the chunks (from per-chunk caches
// or a full prefill), then computes only Q's rows, probing the last layer: the
// probabilities are [Q row][head][slot], never a rows×rows matrix of the context.
func (s *Scorer) attend(ctx context.Context, lay prefill.Layout) ([]float32, model.KVCache, error) {
	cfg := s.Model.ModelConfig()
	nq := len(lay.Question.IDs)
	if nq == 0 {
		return nil, nil, fmt.Errorf("auxiliary scorer: empty question")
	}
	total := lay.Len()
	if total > cfg.MaxPos {
		return nil, nil, fmt.Errorf("auxiliary scorer: prompt of %d tokens exceeds the auxiliary model's context of %d", total, cfg.MaxPos)
	}
	qStart := total - nq
	var cache model.KVCache
	if s.Source != nil {
		pkv, err := s.prefix.Get(ctx, s.Model, lay.Prefix.IDs)
		if err != nil {
			return nil, nil, fmt.Errorf("auxiliary scorer: %w", err)
		}
		if cache, err = s.idle.get(s.Model, total); err != nil {
			return nil, nil, fmt.Errorf("auxiliary scorer: %w", err)
		}
		asm, err := prefill.AssembleInto(ctx, s.Model, s.Source, pkv, &lay, cache)
		if err != nil {
			s.idle.put(cache)
			return nil, nil, fmt.Errorf("auxiliary scorer: %w", err)
		}
		if err := s.recomputeBoundaries(ctx, cache, &lay, asm.ChunkStart); err != nil {
			s.idle.put(cache)
			return nil, nil, err
		}
	} else {
		var err error
		if cache, err = s.idle.get(s.Model, total); err != nil {
			return nil, nil, fmt.Errorf("auxiliary scorer: %w", err)
		}
		var toks []int32
		toks = append(toks, lay.Prefix.IDs...)
		for _, c := range lay.Chunks {
			toks = append(toks, c.IDs...)
		}
		if _, err := model.Append(ctx, s.Model, cache, toks, 0, s.FullChunkRows, false); err != nil {
			s.idle.put(cache)
			return nil, nil, fmt.Errorf("auxiliary scorer: prefill: %w", err)
		}
		if _, err := cache.Alloc(nq); err != nil {
			s.idle.put(cache)
			return nil, nil, fmt.Errorf("auxiliary scorer: %w", err)
		}
	}
	last := cfg.Layers - 1
	probs := make([]float32, nq*cfg.Heads*cache.Len())
	seq := &model.Seq{Cache: cache, Probe: func(layer int) []float32 {
		if layer == last {
			return probs
		}
		return nil
	}}
	for i, t := range lay.Question.IDs {
		seq.Tokens = append(seq.Tokens, t)
		seq.Pos = append(seq.Pos, int32(qStart+i))
		seq.Slots = append(seq.Slots, int32(qStart+i))
	}
	if _, err := s.Model.Forward(ctx, []*model.Seq{seq}); err != nil {
		s.idle.put(cache)
		return nil, nil, fmt.Errorf("auxiliary scorer: question rows: %w", err)
	}
	return probs, cache, nil
}

// recomputeBoundaries runs the first s.Boundary tokens of chunks 1… through
// the model in one call, over the assembled cache: their keys and values
// replace the ones computed without the chunks before them. Chunk 0's cache
// was computed after P, as in the full prefill, so it is left as it is.
func (s *Scorer) recomputeBoundaries(ctx context.Context, cache model.KVCache, lay *prefill.Layout, start []int) error {
	if s.Boundary <= 0 {
		return nil
	}
	seq := &model.Seq{Cache: cache}
	for i := 1; i < len(lay.Chunks); i++ {
		ids := lay.Chunks[i].IDs
		for t := range min(s.Boundary, len(ids)) {
			seq.Tokens = append(seq.Tokens, ids[t])
			seq.Pos = append(seq.Pos, int32(start[i]+t))
			seq.Slots = append(seq.Slots, int32(start[i]+t))
		}
	}
	if len(seq.Tokens) == 0 {
		return nil
	}
	if _, err := s.Model.Forward(ctx, []*model.Seq{seq}); err != nil {
		return fmt.Errorf("auxiliary scorer: chunk boundaries: %w", err)
	}
	return nil
}

package prefill

import (
	"cmp"
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"cacheclip/methods"
	"cacheclip/model"
)

// Prefiller runs the methods for a primary model (any backend): it bundles the
// model with its tokenizer and template (Layouter) and the source of its chunk
// caches. A Prefiller may serve several goroutines at once.
type Prefiller struct {
	Model    model.Backend
	Layouter Layouter
	// Source hands out chunk caches; nil computes them with the model and keeps
	// them in memory.
	Source ChunkSource
	// FullChunkRows bounds the rows of one forward call of the full method (chunked
	// prefill); 0 means model.DefaultAppendRows.
	FullChunkRows int
	// BatchRows bounds the rows of one forward call that PrefillBatch shares
	// among questions; 0 means BatchRows.
	BatchRows int

	prefix  PrefixCache
	memOnce sync.Once
	mem     *MemorySource
}

// Stats is the accounting of one prefill.
type Stats struct {
	Method string
	// Ratio is the requested ratio (0 for a method that takes none); what was
	// recomputed is RecomputedTokens out of ContextTokens.
	Ratio          float64
	PrefixTokens   int
	ContextTokens  int
	QuestionTokens int
	// RecomputedTokens is the number of context tokens computed fresh through the
	// last layer (all of them for full; CacheBlend also runs every context token
	// through the layers before its check layer).
	RecomputedTokens int
	// Load is getting the chunk caches from the source: mapping each shard
	// (a prefill.ShardSource), or loading and decoding it to f32, or
	// computing it (ChunkSource.Chunk). Assembly is copying and re-rotating
	// them into the cache; on the shard path it also widens each layer from
	// the stored dtype, which on the Chunk path is Load's.
	Load      time.Duration
	Assembly  time.Duration
	Aux       time.Duration // auxiliary scoring and selection
	Recompute time.Duration // the forward call(s) over the recomputed rows and Q
	// Own is the question's own wall time in the prefill call: for a question
	// prefilled alone the whole call; in PrefillBatch its work before the
	// shared forward call plus its share (by rows) of that call.
	Own time.Duration
	// TTFT is the wall time of the prefill call up to the logits of the first
	// answer token. It includes Aux when the scorer runs inside the call, not
	// when the selection came with the Query (made ahead, overlapped).
	TTFT time.Duration
}

// Result is a prefilled question, ready for decoding.
type Result struct {
	Cache   model.KVCache
	Logits  []float32 // of the last Q row: they predict the first answer token
	NextPos int32
	// Selected are the context tokens recomputed through the last layer (indices
	// into the concatenated chunk tokens); nil for full and reuse.
	Selected []int
	// Groups is set for ape: decoding must keep Q's view of the chunks.
	Groups *model.AttnGroups
	Stats  Stats
}

func (e *Prefiller) source() ChunkSource {
	if e.Source != nil {
		return e.Source
	}
	e.memOnce.Do(func() { e.mem = NewMemorySource(&Computer{Model: e.Model}) })
	return e.mem
}

// Prefill lays out the query with the prefiller's tokenizer and template and runs the
// method. reserve is the number of slots kept free for the answer; the whole
// prompt plus reserve must fit the model's context.
func (e *Prefiller) Prefill(ctx context.Context, q Query, m Method, reserve int) (*Result, error) {
	if e.Layouter == nil {
		return nil, fmt.Errorf("prefill: no layouter")
	}
	lay, err := e.Layouter.Layout(q.Chunks, q.Question)
	if err != nil {
		return nil, fmt.Errorf("prefill: layout: %w", err)
	}
	return e.PrefillLayout(ctx, q, lay, m, reserve)
}

// PrefillLayout runs the method on an already tokenised layout (q is passed on
// to the auxiliary scorer, which lays the texts out with its own tokenizer).
func (e *Prefiller) PrefillLayout(ctx context.Context, q Query, lay Layout, m Method, reserve int) (*Result, error) {
	res, errs := e.PrefillBatch(ctx, []Item{{Query: q, Layout: lay, Reserve: reserve}}, m)
	return res[0], errs[0]
}

// Item is one question of PrefillBatch: its query, its layout and the slots
// kept free for its answer.
type Item struct {
	Query   Query
	Layout  Layout
	Reserve int
}

// BatchRows bounds the rows of one shared forward call of PrefillBatch when
// the Prefiller sets none: about two full prefills' worth of activations.
const BatchRows = 2 * model.DefaultAppendRows

// PrefillBatch runs the method on several questions. Each question's cache is
// assembled on its own, then the rows that methods recompute (CacheClip's
// selected tokens and question, CacheBlend's, APE's and reuse's question) of
// consecutive questions share forward calls of up to BatchRows rows: at
// r = 0.2 a question recomputes a few hundred rows, and each product then
// reads (and, for bf16 weights, widens) its weights once for the batch rather
// than once per question. On the CPU that is worth little (products of 460
// rows run at 0.93–0.98 of their rate at 3,680; docs/BENCHMARKS.md); a wide
// device needs the rows to fill it. Full prefill computes each question alone
// (its thousands of rows fill a call already).
//
// Every question has its own result or error, in the order of items: a
// question that fails leaves the others to go on. Stats.Recompute is the
// question's share (by rows) of the forward call it shared, and Stats.TTFT
// runs from the batch's start to the end of that call.
func (e *Prefiller) PrefillBatch(ctx context.Context, items []Item, m Method) ([]*Result, []error) {
	start := time.Now()
	results := make([]*Result, len(items))
	errs := make([]error, len(items))
	limit := e.BatchRows
	if limit <= 0 {
		limit = BatchRows
	}
	var group []*pending
	rows := 0
	flush := func() {
		e.recompute(ctx, group, start)
		group, rows = nil, 0
	}
	for i, it := range items {
		res, p, err := e.prepare(ctx, it, m, start)
		if err != nil {
			errs[i] = err
			continue
		}
		if p == nil {
			results[i] = res
			continue
		}
		p.res, p.idx, p.results, p.errs = res, i, results, errs
		if p.seq.Prune != nil {
			// CacheBlend's hook reads the loaded caches at its layer, which a
			// failed shared call would have overwritten before a retry alone.
			e.recompute(ctx, []*pending{p}, start)
			continue
		}
		if n := len(p.seq.Tokens); rows > 0 && rows+n > limit {
			flush()
		}
		group = append(group, p)
		rows += len(p.seq.Tokens)
	}
	if len(group) > 0 {
		flush()
	}
	return results, errs
}

// pending is a question prepared up to its forward call.
type pending struct {
	res      *Result
	seq      *model.Seq
	cache    model.KVCache
	name     string
	total    int
	prep     time.Duration // its own work before the forward call
	pruneErr error         // reading the cache inside CacheBlend's hook failed
	idx      int
	results  []*Result
	errs     []error
}

// recompute runs the group's rows in one forward call and completes each
// question. When the shared call fails, each question is run alone, so that
// the error lands on the question that caused it.
func (e *Prefiller) recompute(ctx context.Context, group []*pending, start time.Time) {
	seqs := make([]*model.Seq, len(group))
	rows := 0
	for i, p := range group {
		seqs[i] = p.seq
		rows += len(p.seq.Tokens)
	}
	t0 := time.Now()
	out, err := e.Model.Forward(ctx, seqs)
	d := time.Since(t0)
	if err != nil && len(group) > 1 && ctx.Err() == nil {
		for _, p := range group {
			e.recompute(ctx, []*pending{p}, start)
		}
		return
	}
	for i, p := range group {
		if err := cmp.Or(p.pruneErr, err); err != nil {
			// A hook that failed kept no rows, so Forward failed on that: the
			// cause is the hook's error.
			p.cache.Free()
			p.errs[p.idx] = fmt.Errorf("prefill: %s: %w", p.name, err)
			continue
		}
		res := p.res
		res.Stats.Recompute = time.Duration(float64(d) * float64(len(p.seq.Tokens)) / float64(rows))
		res.Logits = out[i].Logits[0]
		res.NextPos = int32(p.total)
		res.Stats.RecomputedTokens = len(res.Selected)
		res.Stats.TTFT = time.Since(start)
		res.Stats.Own = p.prep + res.Stats.Recompute
		p.results[p.idx] = res
	}
}

// prepare checks one question and runs its method up to the forward call: a
// full prefill completes here (the result), any other method returns its
// assembled cache and the rows to recompute (pending).
func (e *Prefiller) prepare(ctx context.Context, it Item, m Method, batchStart time.Time) (*Result, *pending, error) {
	start := time.Now()
	q, lay, reserve := it.Query, it.Layout, it.Reserve
	cfg := e.Model.ModelConfig()
	if err := m.Validate(cfg.Layers); err != nil {
		return nil, nil, fmt.Errorf("prefill: %w", err)
	}
	if len(lay.Question.IDs) == 0 {
		return nil, nil, fmt.Errorf("prefill: empty question")
	}
	if reserve < 0 {
		reserve = 0
	}
	total := lay.Len()
	if total+reserve > cfg.MaxPos {
		return nil, nil, fmt.Errorf("prefill: prompt of %d tokens (%d prefix, %d context, %d question) plus %d reserved for the answer exceeds the model's context of %d",
			total, len(lay.Prefix.IDs), lay.ContextTokens(), len(lay.Question.IDs), reserve, cfg.MaxPos)
	}
	for i, c := range lay.Chunks {
		if len(c.Offsets) != 0 && len(c.Offsets) != len(c.IDs) {
			return nil, nil, fmt.Errorf("prefill: chunk %d: %d tokens but %d offsets", i, len(c.IDs), len(c.Offsets))
		}
	}
	n := lay.ContextTokens()
	kind := m.Entry.Kind
	res := &Result{Stats: Stats{Method: m.Name(), Ratio: m.Ratio, PrefixTokens: len(lay.Prefix.IDs), ContextTokens: n, QuestionTokens: len(lay.Question.IDs)}}
	if kind == methods.Fresh {
		if err := e.full(ctx, &lay, reserve, res); err != nil {
			return nil, nil, err
		}
		res.Stats.TTFT = time.Since(batchStart)
		res.Stats.Own = time.Since(start)
		return res, nil, nil
	}
	// A selection does not depend on the primary's caches, so it is made first;
	// the job runner overlaps the auxiliary model's with the previous batch.
	var sel []int
	budget := m.Budget(n)
	if kind == methods.Selected {
		var err error
		if sel, err = e.selection(ctx, q, lay, m, budget, res); err != nil {
			return nil, nil, err
		}
	}
	pkv, err := e.prefix.Get(ctx, e.Model, lay.Prefix.IDs)
	if err != nil {
		return nil, nil, fmt.Errorf("prefill: %w", err)
	}
	asm, err := Assemble(ctx, e.Model, e.source(), pkv, &lay, reserve)
	if err != nil {
		return nil, nil, fmt.Errorf("prefill: %w", err)
	}
	res.Stats.Load = time.Duration(asm.Load * float64(time.Second))
	res.Stats.Assembly = time.Duration(asm.Fill * float64(time.Second))
	res.Cache = asm.Cache
	qStart := asm.ChunkStart[len(asm.ChunkStart)-1]

	seq := &model.Seq{Cache: asm.Cache}
	addRow := func(tok int32, pos int) {
		seq.Tokens = append(seq.Tokens, tok)
		seq.Pos = append(seq.Pos, int32(pos))
		seq.Slots = append(seq.Slots, int32(pos))
	}
	ctxTok := make([]int32, 0, n)
	for _, c := range lay.Chunks {
		ctxTok = append(ctxTok, c.IDs...)
	}
	np := len(lay.Prefix.IDs)
	p := &pending{seq: seq, cache: asm.Cache, name: m.Name(), total: total}
	switch {
	case m.Entry.AttnGroups:
		// APE (Infini-AI-Lab/APE, ape_llama.py, prefill_query): the query's attention
		// over the chunks is a separate softmax with logits scaled by 1/T, whose
		// log-sum-exp is multiplied by S·T before merging with the attention over P
		// and Q. AttnGroups weighs group g by exp(LSEScale[g]·lse_g) with lse_g taken
		// over logits already divided by Temp[g], so Temp = T and LSEScale = S·T.
		temp, scale := m.Values.Float("temp"), m.Values.Float("scale")
		g := &model.AttnGroups{SlotGroup: make([]uint8, asm.Cache.Cap()), Temp: []float32{1, float32(temp)}, LSEScale: []float32{1, float32(scale * temp)}}
		for i := np; i < qStart; i++ {
			g.SlotGroup[i] = 1
		}
		seq.Groups = g
		res.Groups = g
	case kind == methods.Prune:
		for i, t := range ctxTok {
			addRow(t, np+i)
		}
		res.Selected = nil
		seq.PruneLayer = m.Values.Int("check_layer")
		cache := asm.Cache
		kd := cfg.KVDim()
		seq.Prune = func(layer int, rows []int, k, v []float32) []int {
			// The cache still holds the loaded chunks' keys and values at this
			// layer: the fresh ones are written after the hook.
			oldK, oldV, err := cache.ReadKV(layer, np, np+n)
			if err != nil {
				p.pruneErr = err
				return nil
			}
			fresh, old := v, oldV
			if m.Values.String("rank_by") == "k" {
				fresh, old = k, oldK
			}
			// LMCache ranks by the squared L2 distance over every KV head of a
			// token's fresh and cached vector; the order is the same as the L2 norm's.
			type cand struct {
				i   int
				dev float64
			}
			var cands []cand
			var keep []int
			for i, r := range rows {
				if r >= n {
					keep = append(keep, i)
					continue
				}
				sl := int(seq.Slots[r]) - np
				var d float64
				f := fresh[i*kd : (i+1)*kd]
				o := old[sl*kd : (sl+1)*kd]
				for j := range f {
					x := float64(f[j] - o[j])
					d += x * x
				}
				cands = append(cands, cand{i, d})
			}
			sort.SliceStable(cands, func(a, b int) bool { return cands[a].dev > cands[b].dev })
			for _, c := range cands[:min(budget, len(cands))] {
				keep = append(keep, c.i)
				res.Selected = append(res.Selected, rows[c.i])
			}
			sort.Ints(keep)
			sort.Ints(res.Selected)
			return keep
		}
	case kind == methods.Selected:
		for _, i := range sel {
			addRow(ctxTok[i], np+i)
		}
		res.Selected = sel
	}
	for i, t := range lay.Question.IDs {
		addRow(t, qStart+i)
	}
	seq.Logits = []int{len(seq.Tokens) - 1}
	p.prep = time.Since(start)
	return res, p, nil
}

// full computes every row (P, chunks, Q) fresh, FullChunkRows at a time.
func (e *Prefiller) full(ctx context.Context, lay *Layout, reserve int, res *Result) error {
	var toks []int32
	toks = append(toks, lay.Prefix.IDs...)
	for _, c := range lay.Chunks {
		toks = append(toks, c.IDs...)
	}
	toks = append(toks, lay.Question.IDs...)
	cache, err := e.Model.NewCache(len(toks) + reserve)
	if err != nil {
		return fmt.Errorf("prefill: full: %w", err)
	}
	t0 := time.Now()
	logits, err := model.Append(ctx, e.Model, cache, toks, 0, e.FullChunkRows, true)
	if err != nil {
		cache.Free()
		return fmt.Errorf("prefill: full: %w", err)
	}
	res.Logits = logits
	res.Stats.Recompute = time.Since(t0)
	res.Stats.RecomputedTokens = lay.ContextTokens()
	res.Cache = cache
	res.NextPos = int32(len(toks))
	return nil
}

// selection is the tokens a Selected method recomputes: made ahead (the
// Query's), by the auxiliary scorer, or by the method's own Select.
func (e *Prefiller) selection(ctx context.Context, q Query, lay Layout, m Method, budget int, res *Result) ([]int, error) {
	var sel []int
	var err error
	t0 := time.Now()
	switch {
	case q.Selection != nil:
		sel = q.Selection
		res.Stats.Aux = q.AuxTime
		if q.Allocated {
			// Allocated over the question's batch: the batch, not the
			// question, holds the method's ⌈r·N⌉ each on average.
			budget = len(sel)
		}
	case m.Entry.NeedsAux && m.Selector != nil:
		sel, err = m.Selector.Select(ctx, q, lay, budget)
		res.Stats.Aux = time.Since(t0)
	case m.Entry.NeedsAux:
		return nil, fmt.Errorf("prefill: method %s: no auxiliary scorer and no selection made ahead", m.Name())
	default:
		c := methods.Chunks{Lens: make([]int, len(lay.Chunks))}
		for i, ch := range lay.Chunks {
			c.Lens[i] = len(ch.IDs)
		}
		sel, err = m.Entry.Select(ctx, c, budget, m.Values)
		res.Stats.Aux = time.Since(t0)
	}
	if err != nil {
		return nil, fmt.Errorf("prefill: %s selection: %w", m.Name(), err)
	}
	if !m.Entry.TakesRatio {
		budget = len(sel) // the method chooses its own count
	}
	if err := checkSelection(sel, budget, lay.ContextTokens()); err != nil {
		return nil, fmt.Errorf("prefill: %s selection: %w", m.Name(), err)
	}
	return sel, nil
}

func checkSelection(sel []int, budget, n int) error {
	if len(sel) != budget {
		return fmt.Errorf("selected %d tokens, budget is %d", len(sel), budget)
	}
	for i, s := range sel {
		if s < 0 || s >= n {
			return fmt.Errorf("selected token %d outside the %d context tokens", s, n)
		}
		if i > 0 && s <= sel[i-1] {
			return fmt.Errorf("selection not strictly ascending at %d", i)
		}
	}
	return nil
}

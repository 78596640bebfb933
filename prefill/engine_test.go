package prefill_test

import (
	"context"
	"math"
	"strings"
	"testing"

	"cacheclip/methods"
	"cacheclip/model"
	"cacheclip/model/testmodel"
	"cacheclip/prefill"
	"cacheclip/prefill/auxscore"
	"cacheclip/prefill/prefilltest"
)

var testQuery = prefill.Query{
	Chunks: []string{
		"The grass is green and the sky is blue over the little village.",
		"One of the special magic numbers for the key is 7319, remember it.",
		"Retrieval augmented generation reuses the cache of every chunk.",
	},
	Question: "What is the special magic number?",
}

func variant(t testing.TB, name string) testmodel.Spec {
	t.Helper()
	s, ok := testmodel.Variant(name)
	if !ok {
		t.Fatalf("no test model variant %q", name)
	}
	return s
}

func build(t testing.TB, s testmodel.Spec) *model.Model {
	t.Helper()
	m, err := testmodel.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fixture is a primary prefiller and an auxiliary scorer over a different
// tokenisation (2-byte tokens against the primary's 1-byte ones).
type fixture struct {
	eng *prefill.Prefiller
	aux *auxscore.Scorer
	lay prefilltest.Layouter
}

func newFixture(t testing.TB, primary string) *fixture {
	m := build(t, variant(t, primary))
	am := build(t, variant(t, "smollm2"))
	lay := prefilltest.Layouter{Width: 1}
	return &fixture{
		eng: &prefill.Prefiller{Model: m, Layouter: lay},
		aux: &auxscore.Scorer{Model: am, Layouter: prefilltest.Layouter{Width: 2, Shift: 3}},
		lay: lay,
	}
}

func (f *fixture) method(t testing.TB, name string, ratio float64) prefill.Method {
	t.Helper()
	m, err := prefill.NewMethod(name)
	if err != nil {
		t.Fatal(err)
	}
	m.Ratio = ratio
	m.Selector = f.aux
	return m
}

func (f *fixture) run(t testing.TB, q prefill.Query, m prefill.Method) *prefill.Result {
	t.Helper()
	r, err := f.eng.Prefill(context.Background(), q, m, 8)
	if err != nil {
		t.Fatalf("%s r=%v: %v", m.Name(), m.Ratio, err)
	}
	return r
}

func (f *fixture) answer(t testing.TB, q prefill.Query, m prefill.Method) []int32 {
	t.Helper()
	a, err := f.eng.Answer(context.Background(), q, m, model.GenOptions{MaxNewTokens: 6}, f.lay)
	if err != nil {
		t.Fatalf("%s r=%v: %v", m.Name(), m.Ratio, err)
	}
	return a.IDs
}

func relDiff(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		num = math.Max(num, math.Abs(float64(a[i]-b[i])))
		den = math.Max(den, math.Abs(float64(b[i])))
	}
	return num / den
}

// keysOf reads the keys of slots [0, n) of one layer.
func keysOf(t *testing.T, c model.KVCache, layer, n int) []float32 {
	t.Helper()
	k, _, err := c.ReadKV(layer, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sameIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// At r = 1 the selective methods recompute every context token over the exact P
// and must reproduce full prefill.
func TestRatioOneEqualsFull(t *testing.T) {
	for _, v := range []string{"llama2", "qwen2", "llama3"} {
		t.Run(v, func(t *testing.T) {
			f := newFixture(t, v)
			full := f.run(t, testQuery, f.method(t, methods.Full, 1))
			fullAns := f.answer(t, testQuery, f.method(t, methods.Full, 1))
			t.Logf("full greedy answer %v", fullAns)
			cases := []struct {
				name   string
				method func() prefill.Method
			}{
				{"cacheclip", func() prefill.Method { return f.method(t, methods.CacheClip, 1) }},
				{"cacheblend-v", func() prefill.Method { return f.method(t, methods.CacheBlend, 1) }},
				{"cacheblend-k", func() prefill.Method { m := f.method(t, methods.CacheBlend, 1); m.Values["rank_by"] = "k"; return m }},
				{"cacheblend-layer0", func() prefill.Method { m := f.method(t, methods.CacheBlend, 1); m.Values["check_layer"] = 0; return m }},
			}
			for _, c := range cases {
				r := f.run(t, testQuery, c.method())
				if d := relDiff(r.Logits, full.Logits); d > 1e-4 {
					t.Errorf("%s: logits differ from full by %.3g relative", c.name, d)
				}
				if r.Stats.RecomputedTokens != r.Stats.ContextTokens {
					t.Errorf("%s: recomputed %d of %d context tokens at r=1", c.name, r.Stats.RecomputedTokens, r.Stats.ContextTokens)
				}
				if ans := f.answer(t, testQuery, c.method()); !sameIDs(ans, fullAns) {
					t.Errorf("%s: greedy answer %v, full gives %v", c.name, ans, fullAns)
				}
			}
			// The assembly must matter: reuse over three chunks is not full.
			if d := relDiff(f.run(t, testQuery, f.method(t, methods.Reuse, 0)).Logits, full.Logits); d < 1e-3 {
				t.Errorf("reuse is within %.3g of full: the test cannot tell methods apart", d)
			}
		})
	}
}

// With one chunk, its cache computed after P is exactly what full prefill
// computes, so reuse equals full: this checks P's cache, the shard's BasePos and
// Q's positions.
func TestOneChunkReuseEqualsFull(t *testing.T) {
	f := newFixture(t, "qwen2")
	q := prefill.Query{Chunks: testQuery.Chunks[1:2], Question: testQuery.Question}
	full := f.run(t, q, f.method(t, methods.Full, 1))
	for _, name := range []string{methods.Reuse, methods.CacheClip, methods.CacheBlend} {
		r := f.run(t, q, f.method(t, name, 0.3))
		if d := relDiff(r.Logits, full.Logits); d > 1e-4 {
			t.Errorf("%s over one chunk differs from full by %.3g", name, d)
		}
	}
}

// With no chunks every method is full prefill of P and Q.
func TestEmptyContext(t *testing.T) {
	f := newFixture(t, "llama2")
	q := prefill.Query{Question: testQuery.Question}
	full := f.run(t, q, f.method(t, methods.Full, 1))
	for _, name := range methods.Default().Names() {
		r := f.run(t, q, f.method(t, name, 0.5))
		if d := relDiff(r.Logits, full.Logits); d > 1e-4 {
			t.Errorf("%s without context differs from full by %.3g", name, d)
		}
		if r.Stats.ContextTokens != 0 || r.Stats.RecomputedTokens != 0 {
			t.Errorf("%s: %d context and %d recomputed tokens, want 0", name, r.Stats.ContextTokens, r.Stats.RecomputedTokens)
		}
	}
}

// At r = 0 cacheclip recomputes only Q (reuse); cacheblend also runs every
// context token through the layers before its check layer. The expectation is
// built by hand: the context slots of layers below the check layer from a full
// prefill (those layers see the full prompt), the rest from the chunk caches.
func TestRatioZero(t *testing.T) {
	f := newFixture(t, "qwen2")
	ctx := context.Background()
	reuse := f.run(t, testQuery, f.method(t, methods.Reuse, 0))
	clip := f.run(t, testQuery, f.method(t, methods.CacheClip, 0))
	if d := relDiff(clip.Logits, reuse.Logits); d > 1e-6 {
		t.Errorf("cacheclip r=0 differs from reuse by %.3g", d)
	}
	if len(clip.Selected) != 0 {
		t.Errorf("cacheclip r=0 selected %v", clip.Selected)
	}
	m := f.eng.Model.(*model.Model)
	lay, err := f.lay.Layout(testQuery.Chunks, testQuery.Question)
	if err != nil {
		t.Fatal(err)
	}
	var toks []int32
	toks = append(toks, lay.Prefix.IDs...)
	for _, c := range lay.Chunks {
		toks = append(toks, c.IDs...)
	}
	np, nctx := len(lay.Prefix.IDs), lay.ContextTokens()
	fullCache := m.HostCache(len(toks))
	fullCache.Alloc(len(toks))
	seq := &model.Seq{Cache: fullCache}
	for i, tk := range toks {
		seq.Tokens, seq.Pos, seq.Slots = append(seq.Tokens, tk), append(seq.Pos, int32(i)), append(seq.Slots, int32(i))
	}
	if _, err := m.Forward(ctx, []*model.Seq{seq}); err != nil {
		t.Fatal(err)
	}
	src := prefill.NewMemorySource(&prefill.Computer{Model: m})
	pkv, err := (&prefill.Computer{Model: m}).ComputeChunk(ctx, nil, lay.Prefix.IDs)
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range []int{1, 2} {
		asm, err := prefill.Assemble(ctx, m, src, pkv, &lay, 0)
		if err != nil {
			t.Fatal(err)
		}
		if cl == 1 {
			// Layer 0's keys depend on token and position only: the chunk caches,
			// computed at |P|+t and re-rotated to o_i+t, must match full prefill's.
			if d := relDiff(keysOf(t, asm.Cache, 0, len(toks)), keysOf(t, fullCache, 0, len(toks))); d > 1e-5 {
				t.Errorf("assembled layer-0 keys differ from full prefill's by %.3g: re-rotation is wrong", d)
			}
			if d := relDiff(keysOf(t, asm.Cache, 1, len(toks)), keysOf(t, fullCache, 1, len(toks))); d < 1e-4 {
				t.Errorf("assembled layer-1 keys equal full prefill's (%.3g): chunks were not computed apart", d)
			}
		}
		for l := 0; l < cl; l++ {
			k, v, err := fullCache.ReadKV(l, np, np+nctx)
			if err == nil {
				err = asm.Cache.(*model.Cache).WriteKV(l, np, k, v)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		qs := &model.Seq{Cache: asm.Cache}
		for i, tk := range lay.Question.IDs {
			p := int32(len(toks) + i)
			qs.Tokens, qs.Pos, qs.Slots = append(qs.Tokens, tk), append(qs.Pos, p), append(qs.Slots, p)
		}
		qs.Logits = []int{len(qs.Tokens) - 1}
		out, err := m.Forward(ctx, []*model.Seq{qs})
		if err != nil {
			t.Fatal(err)
		}
		want := out[0].Logits[0]
		for _, rank := range []string{"v", "k"} {
			mt := f.method(t, methods.CacheBlend, 0)
			mt.Values["check_layer"], mt.Values["rank_by"] = cl, rank
			got := f.run(t, testQuery, mt)
			if d := relDiff(got.Logits, want); d > 1e-4 {
				t.Errorf("cacheblend r=0 check layer %d rank %s: differs from the hand-built cache by %.3g", cl, rank, d)
			}
			// Layer 0's keys and values depend on the token alone, so check layer 1
			// is reuse; deeper check layers must differ from it.
			d := relDiff(got.Logits, reuse.Logits)
			if cl == 1 && d > 1e-4 {
				t.Errorf("cacheblend r=0 check layer 1 differs from reuse by %.3g", d)
			}
			if cl == 2 && d < 1e-4 {
				t.Errorf("cacheblend r=0 check layer 2 equals reuse (%.3g): layer 1 was not recomputed", d)
			}
		}
	}
}

// APE with T = S = 1 is plain attention, i.e. reuse; the defaults change it.
func TestAPE(t *testing.T) {
	f := newFixture(t, "llama3")
	reuse := f.run(t, testQuery, f.method(t, methods.Reuse, 0))
	one := f.method(t, methods.APE, 0)
	one.Values["temp"], one.Values["scale"] = 1.0, 1.0
	if d := relDiff(f.run(t, testQuery, one).Logits, reuse.Logits); d > 1e-4 {
		t.Errorf("ape T=S=1 differs from reuse by %.3g", d)
	}
	for _, ts := range [][2]float64{{0.9, 0.9}, {1, 0.5}, {0.5, 1}} {
		m := f.method(t, methods.APE, 0)
		m.Values["temp"], m.Values["scale"] = ts[0], ts[1]
		if d := relDiff(f.run(t, testQuery, m).Logits, reuse.Logits); d < 1e-4 {
			t.Errorf("ape T=%v S=%v equals reuse (%.3g): temperature or scale not applied", ts[0], ts[1], d)
		}
	}
	if ans := f.answer(t, testQuery, f.method(t, methods.APE, 0)); len(ans) == 0 {
		t.Errorf("ape generated nothing")
	}
}

// Every method gives the same output for the same input, and exact budgets.
func TestDeterministicAndBudgets(t *testing.T) {
	f := newFixture(t, "llama2")
	for _, name := range methods.Default().Names() {
		for _, r := range []float64{0.1, 0.35} {
			a := f.run(t, testQuery, f.method(t, name, r))
			b := f.run(t, testQuery, f.method(t, name, r))
			for i := range a.Logits {
				if a.Logits[i] != b.Logits[i] {
					t.Fatalf("%s r=%v: logit %d is %v then %v", name, r, i, a.Logits[i], b.Logits[i])
				}
			}
			if len(a.Selected) != len(b.Selected) {
				t.Fatalf("%s r=%v: selections of %d and %d", name, r, len(a.Selected), len(b.Selected))
			}
			if name == methods.CacheBlend || name == methods.CacheClip {
				n := a.Stats.ContextTokens
				want := methods.Budget(r, n)
				if len(a.Selected) != want || a.Stats.RecomputedTokens != want {
					t.Errorf("%s r=%v: recomputed %d (%d selected) of %d, want %d", name, r, a.Stats.RecomputedTokens, len(a.Selected), n, want)
				}
				for i, s := range a.Selected {
					if s < 0 || s >= n || (i > 0 && s <= a.Selected[i-1]) || s != b.Selected[i] {
						t.Fatalf("%s r=%v: bad selection %v", name, r, a.Selected)
					}
				}
			}
			if a.Stats.TTFT <= 0 || a.NextPos != int32(a.Stats.PrefixTokens+a.Stats.ContextTokens+a.Stats.QuestionTokens) {
				t.Errorf("%s: stats %+v, next position %d", name, a.Stats, a.NextPos)
			}
		}
	}
}

func TestFullChunkedEqualsOneCall(t *testing.T) {
	f := newFixture(t, "mistral")
	one := f.run(t, testQuery, f.method(t, methods.Full, 1))
	f.eng.FullChunkRows = 7
	if d := relDiff(f.run(t, testQuery, f.method(t, methods.Full, 1)).Logits, one.Logits); d > 1e-5 {
		t.Errorf("chunked full prefill differs by %.3g", d)
	}
}

func TestBudget(t *testing.T) {
	for _, c := range []struct {
		r    float64
		n    int
		want int
	}{{0, 10, 0}, {1, 10, 10}, {0.2, 5, 1}, {0.2, 6, 2}, {0.1, 2048, 205}, {0.2, 2048, 410}, {0.4, 2048, 820}, {0.5, 0, 0}} {
		if got := methods.Budget(c.r, c.n); got != c.want {
			t.Errorf("Budget(%v, %d) = %d, want %d", c.r, c.n, got, c.want)
		}
	}
}

func TestBadInput(t *testing.T) {
	f := newFixture(t, "llama2")
	other := build(t, variant(t, "mistral"))
	short := variant(t, "llama2")
	short.MaxPos = 64
	shortEng := &prefill.Prefiller{Model: build(t, short), Layouter: f.lay}
	cases := []struct {
		name string
		eng  *prefill.Prefiller
		q    prefill.Query
		m    func() prefill.Method
		want string
	}{
		{"ratio below 0", f.eng, testQuery, func() prefill.Method { return f.method(t, methods.CacheClip, -0.1) }, "not in [0, 1]"},
		{"ratio above 1", f.eng, testQuery, func() prefill.Method { return f.method(t, methods.CacheBlend, 1.5) }, "not in [0, 1]"},
		{"ratio NaN", f.eng, testQuery, func() prefill.Method { return f.method(t, methods.CacheClip, math.NaN()) }, "not in [0, 1]"},
		{"unknown method", f.eng, testQuery, func() prefill.Method { m := f.method(t, methods.Full, 1); m.Entry = nil; return m }, "method: none given"},
		{"check layer", f.eng, testQuery, func() prefill.Method {
			m := f.method(t, methods.CacheBlend, 0.2)
			m.Values["check_layer"] = 3
			return m
		}, "check_layer: 3 is not below the model's"},
		{"rank by", f.eng, testQuery, func() prefill.Method { m := f.method(t, methods.CacheBlend, 0.2); m.Values["rank_by"] = "q"; return m }, "rank_by: \"q\" is not one of v, k"},
		{"ape temperature", f.eng, testQuery, func() prefill.Method { m := f.method(t, methods.APE, 0); m.Values["temp"] = 0.0; return m }, "temp: 0 is not a number in (0, inf)"},
		{"no selector", f.eng, testQuery, func() prefill.Method { m := f.method(t, methods.CacheClip, 0.2); m.Selector = nil; return m }, "no auxiliary scorer"},
		{"shard of another model", &prefill.Prefiller{Model: f.eng.Model, Layouter: f.lay,
			Source: prefill.NewMemorySource(&prefill.Computer{Model: other})}, testQuery,
			func() prefill.Method { return f.method(t, methods.Reuse, 0) }, "another model"},
		{"context over the limit", shortEng, testQuery, func() prefill.Method { return f.method(t, methods.Full, 1) }, "exceeds the model's context"},
		{"context over the limit, reuse", shortEng, testQuery, func() prefill.Method { return f.method(t, methods.CacheClip, 0.2) }, "exceeds the model's context"},
		{"empty question", f.eng, prefill.Query{Chunks: testQuery.Chunks}, func() prefill.Method { return f.method(t, methods.Reuse, 0) }, "empty question"},
		{"unmappable auxiliary tokenizer", f.eng, testQuery, func() prefill.Method {
			m := f.method(t, methods.CacheClip, 0.2)
			m.Selector = &auxscore.Scorer{Model: f.aux.Model, Layouter: prefilltest.Layouter{Width: 3, NoOffsets: true}}
			return m
		}, "cannot be mapped"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.eng.Prefill(context.Background(), c.q, c.m(), 8)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

// A selection made ahead of time (the job's auxiliary stage) gives the same
// prefill as the scorer called inline; a selection of the wrong size is refused.
func TestSelectionAhead(t *testing.T) {
	f := newFixture(t, "llama2")
	ctx := context.Background()
	inline := f.run(t, testQuery, f.method(t, methods.CacheClip, 0.25))
	lay, err := f.lay.Layout(testQuery.Chunks, testQuery.Question)
	if err != nil {
		t.Fatal(err)
	}
	sel, err := f.aux.Select(ctx, testQuery, lay, methods.Budget(0.25, lay.ContextTokens()))
	if err != nil {
		t.Fatal(err)
	}
	q := testQuery
	q.Selection, q.AuxTime = sel, 1234
	m := f.method(t, methods.CacheClip, 0.25)
	m.Selector = nil
	ahead, err := f.eng.PrefillLayout(ctx, q, lay, m, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d := relDiff(ahead.Logits, inline.Logits); d != 0 || ahead.Stats.Aux != 1234 {
		t.Fatalf("ahead-of-time selection: logits differ by %.3g, aux time %v", d, ahead.Stats.Aux)
	}
	for _, bad := range [][]int{sel[1:], append(append([]int(nil), sel[:len(sel)-1]...), lay.ContextTokens()), {}} {
		q.Selection = bad
		if _, err := f.eng.PrefillLayout(ctx, q, lay, m, 0); err == nil {
			t.Errorf("selection %v accepted", bad)
		}
	}
	q.Selection = nil
	if _, err := f.eng.PrefillLayout(ctx, q, lay, m, 0); err == nil || !strings.Contains(err.Error(), "no auxiliary scorer") {
		t.Errorf("error %v without scorer or selection", err)
	}
}

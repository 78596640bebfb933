// Package backendtest is the conformance suite of model.Backend: the method
// invariants run through the interface, so that every forward implementation
// (the CPU's model.Model, package gpu's Model) is held to the same contract.
// A backend's own test calls Run with a Factory that turns a CPU model into a
// backend of its kind; nothing in the suite knows which backend it runs on.
//
// The invariants: incremental decode and chunked prefill equal one-shot
// prefill; a chunk cache moved by Fill's re-rotation equals the chunk computed
// at its new place; CacheClip and CacheBlend at r = 1 equal full prefill; at
// r = 0 CacheClip equals reuse; and the stories260K checkpoint reproduces the
// logits and greedy tokens that llama2.c's run.c wrote to
// testdata/stories260K/stories260K.golden.json.
package backendtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"cacheclip/methods"
	"cacheclip/model"
	"cacheclip/model/testmodel"
	"cacheclip/prefill"
	"cacheclip/prefill/auxscore"
	"cacheclip/prefill/prefilltest"
)

// Factory returns a backend of the kind under test holding the CPU model's
// weights; the suite closes nothing it gets (use t.Cleanup).
type Factory func(t testing.TB, cpu *model.Model) model.Backend

// Options are the backend's tolerances.
type Options struct {
	// Tol bounds the relative difference of two computations of the same thing
	// on the backend (one-shot against incremental, r = 1 against full); 0
	// means 1e-4, what the CPU's f32 arithmetic keeps.
	Tol float64
	// GoldenTol bounds the difference from llama2.c's logits (relative, at
	// least 1 absolute scale); 0 means 1e-4.
	GoldenTol float64
	// RoundsWeights says the Factory rounds the weights it is given (to a
	// quantized format): the invariants still hold on the backend's own
	// arithmetic, but llama2.c's golden is the f32 weights' output, so it is
	// left out.
	RoundsWeights bool
}

func (o Options) tol() float64 {
	if o.Tol > 0 {
		return o.Tol
	}
	return 1e-4
}

func (o Options) goldenTol() float64 {
	if o.GoldenTol > 0 {
		return o.GoldenTol
	}
	return 1e-4
}

// Run runs the whole suite against backends made by newBackend.
func Run(t *testing.T, newBackend Factory, o Options) {
	t.Run("DecodeEqualsPrefill", func(t *testing.T) { decodeEqualsPrefill(t, newBackend, o) })
	t.Run("Rerotation", func(t *testing.T) { rerotation(t, newBackend, o) })
	t.Run("RatioOneEqualsFull", func(t *testing.T) { ratioOneEqualsFull(t, newBackend, o) })
	t.Run("RatioZeroEqualsReuse", func(t *testing.T) { ratioZeroEqualsReuse(t, newBackend, o) })
	if !o.RoundsWeights {
		t.Run("Stories260KGolden", func(t *testing.T) { stories260K(t, newBackend, o) })
	}
}

func build(t testing.TB, s testmodel.Spec) *model.Model {
	t.Helper()
	m, err := testmodel.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func variant(t testing.TB, name string) testmodel.Spec {
	t.Helper()
	s, ok := testmodel.Variant(name)
	if !ok {
		t.Fatalf("no test model variant %q", name)
	}
	return s
}

// RandTokens returns n token ids below vocab drawn from seed: the inputs of the
// suite, and of benchmarks that need some tokens.
func RandTokens(seed uint64, n, vocab int) []int32 {
	r := rand.New(rand.NewPCG(seed, 7))
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(r.IntN(vocab))
	}
	return out
}

// relDiff is max|a-b| / max|b|.
func relDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var num, den float64
	for i := range a {
		num = math.Max(num, math.Abs(float64(a[i]-b[i])))
		den = math.Max(den, math.Abs(float64(b[i])))
	}
	return num / math.Max(den, 1e-6)
}

func newCache(t testing.TB, b model.Backend, capacity int) model.KVCache {
	t.Helper()
	c, err := b.NewCache(capacity)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Free)
	return c
}

// rows computes toks[lo:hi] at positions off+i into fresh slots of c and
// returns the logits of every row.
func rows(t testing.TB, b model.Backend, c model.KVCache, toks []int32, lo, hi int, off int32) [][]float32 {
	t.Helper()
	first, err := c.Alloc(hi - lo)
	if err != nil {
		t.Fatal(err)
	}
	s := &model.Seq{Cache: c}
	for i := lo; i < hi; i++ {
		s.Tokens = append(s.Tokens, toks[i])
		s.Pos = append(s.Pos, off+int32(i))
		s.Slots = append(s.Slots, int32(first+i-lo))
		s.Logits = append(s.Logits, i-lo)
	}
	out, err := b.Forward(context.Background(), []*model.Seq{s})
	if err != nil {
		t.Fatal(err)
	}
	return out[0].Logits
}

// decodeEqualsPrefill: one call over n rows, uneven chunks and one row at a
// time give the same logits for every row, on every architecture variant.
func decodeEqualsPrefill(t *testing.T, newBackend Factory, o Options) {
	for _, spec := range testmodel.Variants() {
		t.Run(spec.Name, func(t *testing.T) {
			b := newBackend(t, build(t, spec))
			const n = 37
			toks := RandTokens(spec.Seed, n, b.ModelConfig().Vocab)
			one := rows(t, b, newCache(t, b, n), toks, 0, n, 0)
			c := newCache(t, b, 4) // grows
			var chunked [][]float32
			for lo := 0; lo < n; {
				hi := min(n, lo+1+lo%11)
				chunked = append(chunked, rows(t, b, c, toks, lo, hi, 0)...)
				lo = hi
			}
			c2 := newCache(t, b, n)
			var dec [][]float32
			for i := 0; i < n; i++ {
				dec = append(dec, rows(t, b, c2, toks, i, i+1, 0)...)
			}
			// model.Append in bounded calls ends on the same last-row logits.
			last, err := model.Append(context.Background(), b, newCache(t, b, n), toks, 0, 5, true)
			if err != nil {
				t.Fatal(err)
			}
			if d := relDiff(last, one[n-1]); d > o.tol() {
				t.Errorf("Append in calls of 5 rows: last logits differ from one call by %.2e", d)
			}
			for i := 0; i < n; i++ {
				if d := relDiff(chunked[i], one[i]); d > o.tol() {
					t.Errorf("row %d: chunked prefill differs from one call by %.2e", i, d)
				}
				if d := relDiff(dec[i], one[i]); d > o.tol() {
					t.Errorf("row %d: decode differs from one call by %.2e", i, d)
				}
			}
		})
	}
}

// rerotation: a chunk computed at offset a, moved to offset b by Fill, holds
// the keys and values computed at b, and the next row sees the same context.
func rerotation(t *testing.T, newBackend Factory, o Options) {
	for _, spec := range testmodel.Variants() {
		t.Run(spec.Name, func(t *testing.T) {
			bk := newBackend(t, build(t, spec))
			cfg := bk.ModelConfig()
			const n = 20
			const a, b = 5, 300
			toks := RandTokens(spec.Seed+9, n+1, cfg.Vocab)
			ca := newCache(t, bk, n)
			rows(t, bk, ca, toks, 0, n, a)
			cb := newCache(t, bk, n+1)
			rows(t, bk, cb, toks, 0, n, b)
			moved := newCache(t, bk, n+1)
			first, err := moved.Alloc(n)
			if err != nil {
				t.Fatal(err)
			}
			pos := make([]int32, n)
			from := make([]int32, n)
			for i := range pos {
				pos[i], from[i] = int32(b+i), int32(a+i)
			}
			for l := 0; l < cfg.Layers; l++ {
				k, v, err := ca.ReadKV(l, 0, n)
				if err != nil {
					t.Fatal(err)
				}
				if err := bk.Fill(moved, l, first, pos, k, v, from); err != nil {
					t.Fatal(err)
				}
				gk, gv, err := moved.ReadKV(l, first, first+n)
				if err != nil {
					t.Fatal(err)
				}
				wk, wv, err := cb.ReadKV(l, 0, n)
				if err != nil {
					t.Fatal(err)
				}
				if d := relDiff(gk, wk); d > o.tol() {
					t.Errorf("layer %d: re-rotated keys differ from keys computed at %d by %.2e", l, b, d)
				}
				if d := relDiff(gv, wv); d > o.tol() {
					t.Errorf("layer %d: values differ by %.2e", l, d)
				}
			}
			got := rows(t, bk, moved, toks, n, n+1, b)
			want := rows(t, bk, cb, toks, n, n+1, b)
			if d := relDiff(got[0], want[0]); d > o.tol() {
				t.Errorf("next-token logits after a moved chunk differ by %.2e", d)
			}
		})
	}
}

var query = prefill.Query{
	Chunks: []string{
		"The grass is green and the sky is blue over the little village.",
		"One of the special magic numbers for the key is 7319, remember it.",
		"Retrieval augmented generation reuses the cache of every chunk.",
	},
	Question: "What is the special magic number?",
}

// fixture is a primary prefiller on the backend under test and an auxiliary
// scorer over another tokenisation (2-byte tokens) on the same kind of backend.
type fixture struct {
	eng *prefill.Prefiller
	aux *auxscore.Scorer
}

func newFixture(t testing.TB, newBackend Factory, primary string) *fixture {
	return &fixture{
		eng: &prefill.Prefiller{Model: newBackend(t, build(t, variant(t, primary))), Layouter: prefilltest.Layouter{Width: 1}},
		aux: &auxscore.Scorer{Model: newBackend(t, build(t, variant(t, "smollm2"))), Layouter: prefilltest.Layouter{Width: 2, Shift: 3}},
	}
}

func (f *fixture) prefill(t testing.TB, name string, ratio float64, tweak func(*prefill.Method)) *prefill.Result {
	t.Helper()
	m, err := prefill.NewMethod(name)
	if err != nil {
		t.Fatal(err)
	}
	m.Ratio, m.Selector = ratio, f.aux
	if tweak != nil {
		tweak(&m)
	}
	r, err := f.eng.Prefill(context.Background(), query, m, 8)
	if err != nil {
		t.Fatalf("%s r=%v: %v", name, ratio, err)
	}
	t.Cleanup(r.Cache.Free)
	return r
}

// ratioOneEqualsFull: recomputing every context token over the exact prefix
// is full prefill, whichever method selects them.
func ratioOneEqualsFull(t *testing.T, newBackend Factory, o Options) {
	for _, v := range []string{"llama2", "qwen2", "llama3"} {
		t.Run(v, func(t *testing.T) {
			f := newFixture(t, newBackend, v)
			full := f.prefill(t, methods.Full, 1, nil)
			for _, c := range []struct {
				name  string
				tweak func(*prefill.Method)
			}{
				{methods.CacheClip, nil},
				{methods.CacheBlend, nil},
				{methods.CacheBlend + "-k", func(m *prefill.Method) { m.Values["rank_by"] = "k" }},
				{methods.CacheBlend + "-layer0", func(m *prefill.Method) { m.Values["check_layer"] = 0 }},
			} {
				name := c.name
				if c.tweak != nil {
					name = methods.CacheBlend
				}
				r := f.prefill(t, name, 1, c.tweak)
				if d := relDiff(r.Logits, full.Logits); d > o.tol() {
					t.Errorf("%s r=1: logits differ from full by %.3g", c.name, d)
				}
				if r.Stats.RecomputedTokens != r.Stats.ContextTokens {
					t.Errorf("%s r=1: recomputed %d of %d context tokens", c.name, r.Stats.RecomputedTokens, r.Stats.ContextTokens)
				}
			}
			// The assembly must matter, or the comparison above proves nothing.
			if d := relDiff(f.prefill(t, methods.Reuse, 0, nil).Logits, full.Logits); d < 1e-3 {
				t.Errorf("reuse is within %.3g of full: the suite cannot tell methods apart", d)
			}
		})
	}
}

// ratioZeroEqualsReuse: CacheClip at r = 0 recomputes only the question.
func ratioZeroEqualsReuse(t *testing.T, newBackend Factory, o Options) {
	f := newFixture(t, newBackend, "qwen2")
	reuse := f.prefill(t, methods.Reuse, 0, nil)
	clip := f.prefill(t, methods.CacheClip, 0, nil)
	if d := relDiff(clip.Logits, reuse.Logits); d > o.tol() {
		t.Errorf("cacheclip r=0 differs from reuse by %.3g", d)
	}
	if len(clip.Selected) != 0 || clip.Stats.RecomputedTokens != 0 {
		t.Errorf("cacheclip r=0 recomputed %d tokens (%v)", clip.Stats.RecomputedTokens, clip.Selected)
	}
}

type storiesGolden struct {
	PromptIDs    []int32 `json:"prompt_ids"`
	PromptLogits []struct {
		Pos     int       `json:"pos"`
		Argmax  int       `json:"argmax"`
		First16 []float32 `json:"first16"`
		Sum     float64   `json:"sum"`
	} `json:"prompt_logits"`
	GreedyIDs []int32 `json:"greedy_ids"`
}

// testdata is the repository's testdata directory, found from this file so
// that the suite runs from any package's test; a test binary built on another
// machine (scripts/gpu-check.sh carries prebuilt ones) finds it instead by
// walking up from the working directory.
func testdata() string {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "testdata")
	if _, err := os.Stat(filepath.Join(dir, "stories260K")); err == nil {
		return dir
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "testdata", "stories260K")); err == nil {
				return filepath.Join(d, "testdata")
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return dir
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol*math.Max(1, math.Abs(b)) }

func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// stories260K feeds the prompt one position at a time, as llama2.c's run.c did
// for the golden, then decodes greedily with Generate.
func stories260K(t *testing.T, newBackend Factory, o Options) {
	dir := filepath.Join(testdata(), "stories260K")
	cpu, err := model.LoadLlama2C(filepath.Join(dir, "stories260K.bin"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "stories260K.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g storiesGolden
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatalf("stories260K.golden.json: %v", err)
	}
	b := newBackend(t, cpu)
	c := newCache(t, b, len(g.PromptIDs)+len(g.GreedyIDs))
	var logits [][]float32
	for pos := range g.PromptIDs {
		logits = rows(t, b, c, g.PromptIDs, pos, pos+1, 0)
		want := g.PromptLogits[pos]
		if got := argmax(logits[0]); got != want.Argmax {
			t.Errorf("pos %d: argmax %d, llama2.c %d", pos, got, want.Argmax)
		}
		for i, w := range want.First16 {
			if !near(float64(logits[0][i]), float64(w), o.goldenTol()) {
				t.Errorf("pos %d logit %d: %v, llama2.c %v", pos, i, logits[0][i], w)
			}
		}
		var sum float64
		for _, v := range logits[0] {
			sum += float64(v)
		}
		if !near(sum, want.Sum, o.goldenTol()) {
			t.Errorf("pos %d: logit sum %v, llama2.c %v", pos, sum, want.Sum)
		}
	}
	st := &model.GenState{Cache: c, NextPos: int32(len(g.PromptIDs)), Logits: logits[0], Opts: model.GenOptions{MaxNewTokens: len(g.GreedyIDs)}}
	if err := b.Generate(context.Background(), []*model.GenState{st}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(st.IDs) != fmt.Sprint(g.GreedyIDs) {
		t.Errorf("greedy decode %v,\nllama2.c        %v", st.IDs, g.GreedyIDs)
	}
}

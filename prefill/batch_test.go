package prefill_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"cacheclip/methods"
	"cacheclip/prefill"
)

// Questions prefilled together (their recomputed rows sharing forward calls)
// get what each gets prefilled alone: the same selection, logits and cache,
// up to the products' summation order; a question that fails fails alone; and
// a row bound splits the batch into several calls without changing anything.
func TestPrefillBatchEqualsAlone(t *testing.T) {
	queries := []prefill.Query{
		testQuery,
		{Chunks: testQuery.Chunks[1:], Question: "Which colour is the sky?"},
		{Chunks: []string{testQuery.Chunks[2], testQuery.Chunks[0]}, Question: "What is reused?"},
	}
	for _, name := range []string{"qwen2", "llama3"} {
		f := newFixture(t, name)
		for _, tc := range []struct {
			method string
			ratio  float64
		}{{methods.CacheClip, 0.2}, {methods.CacheClip, 1}, {methods.Reuse, 0}, {methods.APE, 0}, {methods.CacheBlend, 0.3}, {methods.Full, 0}} {
			for _, rows := range []int{0, 40} {
				t.Run(name+"/"+tc.method+"/"+map[bool]string{true: "one call", false: "row bound 40"}[rows == 0], func(t *testing.T) {
					m := f.method(t, tc.method, tc.ratio)
					eng := &prefill.Prefiller{Model: f.eng.Model, Layouter: f.eng.Layouter, BatchRows: rows}
					items := make([]prefill.Item, 0, len(queries)+1)
					for i, q := range queries {
						lay, err := f.lay.Layout(q.Chunks, q.Question)
						if err != nil {
							t.Fatal(err)
						}
						items = append(items, prefill.Item{Query: q, Layout: lay, Reserve: 8})
						if i == 1 {
							// A question that cannot fit the model's context, in the middle.
							bad := lay
							bad.Question.IDs = make([]int32, eng.Model.ModelConfig().MaxPos)
							items = append(items, prefill.Item{Query: q, Layout: bad, Reserve: 8})
						}
					}
					got, errs := eng.PrefillBatch(context.Background(), items, m)
					if errs[2] == nil || !strings.Contains(errs[2].Error(), "exceeds the model's context") || got[2] != nil {
						t.Fatalf("the question too long for the model: error %v, result %v", errs[2], got[2])
					}
					for i, it := range items {
						if i == 2 {
							continue
						}
						if errs[i] != nil {
							t.Fatalf("question %d: %v", i, errs[i])
						}
						want, err := f.eng.PrefillLayout(context.Background(), it.Query, it.Layout, m, it.Reserve)
						if err != nil {
							t.Fatal(err)
						}
						g := got[i]
						if !slices.Equal(g.Selected, want.Selected) || g.NextPos != want.NextPos || g.Stats.RecomputedTokens != want.Stats.RecomputedTokens {
							t.Fatalf("question %d: selected %v next %d, alone %v next %d", i, g.Selected, g.NextPos, want.Selected, want.NextPos)
						}
						if d := relDiff(g.Logits, want.Logits); d > 1e-4 {
							t.Fatalf("question %d: logits %.2e from prefilling it alone", i, d)
						}
						n := int(g.NextPos)
						for l := 0; l < eng.Model.ModelConfig().Layers; l++ {
							if d := relDiff(keysOf(t, g.Cache, l, n), keysOf(t, want.Cache, l, n)); d > 1e-4 {
								t.Fatalf("question %d layer %d: keys %.2e from prefilling it alone", i, l, d)
							}
						}
						if g.Stats.Own <= 0 || g.Stats.Own > g.Stats.TTFT {
							t.Fatalf("question %d: own time %v, TTFT %v", i, g.Stats.Own, g.Stats.TTFT)
						}
					}
				})
			}
		}
	}
}

package prefill_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"cacheclip/methods"
	"cacheclip/model"
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

// failingRows is a backend whose forward calls fail whenever one of their
// sequences holds the poisoned question's tokens: a fault that belongs to one
// question of a shared call.
type failingRows struct {
	model.Backend
	poison []int32
}

func (b failingRows) Forward(ctx context.Context, seqs []*model.Seq) ([]model.Output, error) {
	for _, s := range seqs {
		if len(s.Tokens) >= len(b.poison) && slices.Equal(s.Tokens[len(s.Tokens)-len(b.poison):], b.poison) {
			return nil, errors.New("injected fault")
		}
	}
	return b.Backend.Forward(ctx, seqs)
}

// When the shared forward call fails, each question is retried alone: the
// error lands on the question that caused it, and the others get what they
// get prefilled alone.
func TestPrefillBatchFailedCallRetriesAlone(t *testing.T) {
	queries := []prefill.Query{
		testQuery,
		{Chunks: testQuery.Chunks[1:], Question: "Which colour is the sky?"},
		{Chunks: []string{testQuery.Chunks[2], testQuery.Chunks[0]}, Question: "What is reused?"},
	}
	f := newFixture(t, "qwen2")
	for _, tc := range []struct {
		method string
		ratio  float64
	}{{methods.CacheClip, 0.2}, {methods.Reuse, 0}, {methods.APE, 0}} {
		t.Run(tc.method, func(t *testing.T) {
			m := f.method(t, tc.method, tc.ratio)
			items := make([]prefill.Item, len(queries))
			for i, q := range queries {
				lay, err := f.lay.Layout(q.Chunks, q.Question)
				if err != nil {
					t.Fatal(err)
				}
				items[i] = prefill.Item{Query: q, Layout: lay, Reserve: 8}
			}
			eng := &prefill.Prefiller{Model: failingRows{Backend: f.eng.Model, poison: items[1].Layout.Question.IDs}, Layouter: f.eng.Layouter}
			got, errs := eng.PrefillBatch(context.Background(), items, m)
			if errs[1] == nil || !strings.Contains(errs[1].Error(), "injected fault") || got[1] != nil {
				t.Fatalf("the poisoned question: error %v, result %v", errs[1], got[1])
			}
			for _, i := range []int{0, 2} {
				if errs[i] != nil {
					t.Fatalf("question %d failed with its batch partner: %v", i, errs[i])
				}
				want, err := f.eng.PrefillLayout(context.Background(), items[i].Query, items[i].Layout, m, items[i].Reserve)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got[i].Selected, want.Selected) || got[i].NextPos != want.NextPos {
					t.Fatalf("question %d: selected %v next %d, alone %v next %d", i, got[i].Selected, got[i].NextPos, want.Selected, want.NextPos)
				}
				if d := relDiff(got[i].Logits, want.Logits); d > 1e-4 {
					t.Fatalf("question %d: logits %.2e from prefilling it alone", i, d)
				}
			}
		})
	}
}

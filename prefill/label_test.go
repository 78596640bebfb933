package prefill_test

import (
	"context"
	"math"
	"slices"
	"testing"

	"cacheclip/prefill"
)

// directLabelLogProbs scores one label without sharing anything: for each of
// its tokens, the prompt plus the label's earlier tokens is prefilled on its
// own with the method (the question segment extended by those tokens), and the
// last row's logits give the token's log-probability.
func directLabelLogProbs(t *testing.T, f *fixture, q prefill.Query, lay prefill.Layout, m prefill.Method, label []int32) []float64 {
	t.Helper()
	out := make([]float64, len(label))
	for j := range label {
		l := lay
		l.Question.IDs = append(slices.Clone(lay.Question.IDs), label[:j]...)
		l.Question.Offsets = nil
		res, err := f.eng.PrefillLayout(context.Background(), q, l, m, 0)
		if err != nil {
			t.Fatalf("%s: direct prefill: %v", m.Name, err)
		}
		lse := math.Inf(-1)
		for _, x := range res.Logits {
			lse = max(lse, float64(x))
		}
		var s float64
		for _, x := range res.Logits {
			s += math.Exp(float64(x) - lse)
		}
		out[j] = float64(res.Logits[label[j]]) - (lse + math.Log(s))
	}
	return out
}

// Label scores from one batched branching forward equal a direct computation
// that prefills the prompt plus each label prefix separately, for every method
// and with labels that share prefixes (one label a prefix of another).
func TestScoreLabelsEqualsDirect(t *testing.T) {
	for _, v := range []string{"llama2", "qwen2"} {
		f := newFixture(t, v)
		ctx := context.Background()
		lay, err := f.lay.Layout(testQuery.Chunks, testQuery.Question)
		if err != nil {
			t.Fatal(err)
		}
		var labels [][]int32
		for _, s := range []string{" 7319", " 7391", " 42", " 7", " 731", " blue", "x"} { // "x": one token, no row
			labels = append(labels, f.lay.Segment(s).IDs)
		}
		if got, want := prefill.LabelReserve(labels), 4+1+1+3; got != want { // inner nodes of " 7319", then "9", "4", "blu"
			t.Fatalf("trie of %d nodes, want %d", got, want)
		}
		for _, name := range prefill.Methods {
			t.Run(v+"/"+name, func(t *testing.T) {
				m := f.method(t, name, 0.3)
				q := testQuery
				res, err := f.eng.PrefillLayout(ctx, q, lay, m, prefill.LabelReserve(labels))
				if err != nil {
					t.Fatal(err)
				}
				if name == prefill.CacheClip {
					q.Selection = res.Selected // the direct prefills recompute the same tokens
				}
				// Two items in one call: the second, a reordering of the labels,
				// must score each label the same.
				res2, err := f.eng.PrefillLayout(ctx, q, lay, m, prefill.LabelReserve(labels))
				if err != nil {
					t.Fatal(err)
				}
				rev := slices.Clone(labels)
				slices.Reverse(rev)
				items := []*prefill.LabelItem{{Res: res, Labels: labels}, {Res: res2, Labels: rev}}
				if err := prefill.ScoreLabels(ctx, f.eng.Model, items); err != nil {
					t.Fatal(err)
				}
				for li, label := range labels {
					want := directLabelLogProbs(t, f, q, lay, m, label)
					got := items[0].LogProbs[li]
					got2 := items[1].LogProbs[len(labels)-1-li]
					for j := range want {
						if math.Abs(got[j]-want[j]) > 2e-4 || math.Abs(got2[j]-want[j]) > 2e-4 {
							t.Errorf("label %d token %d: branched %.6f and %.6f, direct %.6f", li, j, got[j], got2[j], want[j])
						}
					}
				}
			})
		}
	}
}

func TestScoreLabelsNeedsReserve(t *testing.T) {
	f := newFixture(t, "qwen2")
	ctx := context.Background()
	labels := [][]int32{f.lay.Segment(" yes").IDs, f.lay.Segment(" no").IDs}
	res, err := f.eng.Prefill(ctx, testQuery, f.method(t, prefill.Reuse, 0), 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := prefill.ScoreLabels(ctx, f.eng.Model, []*prefill.LabelItem{{Res: res, Labels: labels}}); err == nil {
		t.Fatal("labels needing 7 slots scored in a cache with 2 reserved")
	}
	if err := prefill.ScoreLabels(ctx, f.eng.Model, []*prefill.LabelItem{{Res: res, Labels: [][]int32{{}}}}); err == nil {
		t.Fatal("a label without tokens was scored")
	}
}

func TestDecideLabels(t *testing.T) {
	for _, c := range []struct {
		name     string
		lp       [][]float64
		how      string
		best     int
		margin   float64
		scores   []float64
		wantProb []float64
	}{
		{"sum", [][]float64{{-1, -1}, {-0.5}, {-3}}, prefill.ScoreSum, 1, 1.5, []float64{-2, -0.5, -3}, nil},
		{"mean favours the long label", [][]float64{{-0.2, -0.2, -0.2}, {-0.5}}, prefill.ScoreMean, 0, 0.3, []float64{-0.2, -0.5}, nil},
		{"tie keeps the first", [][]float64{{-1}, {-1}}, prefill.ScoreSum, 0, 0, []float64{-1, -1}, []float64{0.5, 0.5}},
		{"one label", [][]float64{{-4}}, prefill.ScoreSum, 0, math.NaN(), []float64{-4}, []float64{1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := prefill.DecideLabels(c.lp, c.how)
			if d.Best != c.best || !(math.Abs(d.Margin-c.margin) < 1e-12 || math.IsNaN(c.margin) && math.IsNaN(d.Margin)) {
				t.Errorf("best %d margin %v, want %d %v", d.Best, d.Margin, c.best, c.margin)
			}
			var sum float64
			for i, p := range d.Probs {
				sum += p
				var ll float64
				for _, x := range c.lp[i] {
					ll += x
				}
				if d.LogLik[i] != ll {
					t.Errorf("log-likelihood %d = %v, want the sum %v", i, d.LogLik[i], ll)
				}
				if math.Abs(d.Scores[i]-c.scores[i]) > 1e-12 {
					t.Errorf("score %d = %v, want %v", i, d.Scores[i], c.scores[i])
				}
				if c.wantProb != nil && math.Abs(p-c.wantProb[i]) > 1e-12 {
					t.Errorf("prob %d = %v, want %v", i, p, c.wantProb[i])
				}
				// softmax: p_i / p_j = exp(s_i - s_j)
				if r := math.Log(p / d.Probs[d.Best]); math.Abs(r-(d.Scores[i]-d.Scores[d.Best])) > 1e-9 {
					t.Errorf("prob %d not the softmax of the scores", i)
				}
			}
			if math.Abs(sum-1) > 1e-12 {
				t.Errorf("probabilities sum to %v", sum)
			}
		})
	}
}

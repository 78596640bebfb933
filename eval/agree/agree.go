// Package agree measures CacheClip's premise: how well the auxiliary model's
// last-layer question-to-context attention agrees with the primary model's
// attention at each of its layers (Jaccard of the top-k tokens and Spearman rank
// correlation over all context tokens).
package agree

import (
	"context"
	"fmt"
	"math"
	"sort"

	"cacheclip/model"
	"cacheclip/prefill"
	"cacheclip/prefill/auxscore"
)

// Layer is the agreement with one primary layer, averaged over questions.
type Layer struct {
	Layer    int
	Jaccard  float64 // |A ∩ B| / |A ∪ B| of the top-k context tokens
	Spearman float64
}

// PrimaryLayerScores runs the primary model over the layout (P and the chunks in
// bounded calls (model.Append), then the question rows with a probe on every layer) and returns, per
// layer, each context token's attention from the question averaged over heads and
// question tokens — the primary's own answer to "which tokens matter".
func PrimaryLayerScores(ctx context.Context, m model.Backend, lay prefill.Layout) ([][]float32, error) {
	np, n, nq := len(lay.Prefix.IDs), lay.ContextTokens(), len(lay.Question.IDs)
	if nq == 0 {
		return nil, fmt.Errorf("agreement: empty question")
	}
	cfg := m.ModelConfig()
	c, err := m.NewCache(np + n + nq)
	if err != nil {
		return nil, fmt.Errorf("agreement: %w", err)
	}
	defer c.Free()
	toks := append([]int32(nil), lay.Prefix.IDs...)
	for _, ch := range lay.Chunks {
		toks = append(toks, ch.IDs...)
	}
	if _, err := model.Append(ctx, m, c, toks, 0, 0, false); err != nil {
		return nil, fmt.Errorf("agreement: primary context: %w", err)
	}
	first, err := c.Alloc(nq)
	if err != nil {
		return nil, fmt.Errorf("agreement: %w", err)
	}
	q := &model.Seq{Cache: c, Tokens: lay.Question.IDs}
	for i := range lay.Question.IDs {
		q.Pos = append(q.Pos, int32(first+i))
		q.Slots = append(q.Slots, int32(first+i))
	}
	H := cfg.Heads
	slots := c.Len()
	probs := make([][]float32, cfg.Layers)
	q.Probe = func(layer int) []float32 {
		probs[layer] = make([]float32, nq*H*slots)
		return probs[layer]
	}
	if _, err := m.Forward(ctx, []*model.Seq{q}); err != nil {
		return nil, fmt.Errorf("agreement: primary question: %w", err)
	}
	out := make([][]float32, len(probs))
	for l, p := range probs {
		s := make([]float32, n)
		for r := 0; r < nq; r++ {
			for h := 0; h < H; h++ {
				row := p[(r*H+h)*slots:]
				for j := 0; j < n; j++ {
					s[j] += row[np+j]
				}
			}
		}
		for j := range s {
			s[j] /= float32(nq * H)
		}
		out[l] = s
	}
	return out, nil
}

// Question compares the auxiliary scorer's importances with every primary layer's
// for one question, at a top-k of ⌈ratio·N⌉ tokens.
func Question(ctx context.Context, m model.Backend, layouter prefill.Layouter, aux *auxscore.Scorer, q prefill.Query, ratio float64) ([]Layer, error) {
	lay, err := layouter.Layout(q.Chunks, q.Question)
	if err != nil {
		return nil, fmt.Errorf("agreement: layout: %w", err)
	}
	auxScores, err := aux.PrimaryScores(ctx, q, lay)
	if err != nil {
		return nil, fmt.Errorf("agreement: %w", err)
	}
	per, err := PrimaryLayerScores(ctx, m, lay)
	if err != nil {
		return nil, err
	}
	k := prefill.Budget(ratio, len(auxScores))
	out := make([]Layer, len(per))
	for l, ps := range per {
		out[l] = Layer{Layer: l, Jaccard: Jaccard(TopK(auxScores, k), TopK(ps, k)), Spearman: Spearman(auxScores, ps)}
	}
	return out, nil
}

// Average is Question averaged over questions, layer by layer. A Spearman
// that is NaN for one question (a constant score vector) is left out of that
// layer's mean rather than poisoning it; Counted says how many questions each
// layer's Spearman averages.
func Average(ctx context.Context, m model.Backend, layouter prefill.Layouter, aux *auxscore.Scorer, qs []prefill.Query, ratio float64) ([]Mean, error) {
	var sum []Mean
	for i, q := range qs {
		layers, err := Question(ctx, m, layouter, aux, q, ratio)
		if err != nil {
			return nil, fmt.Errorf("question %d: %w", i, err)
		}
		if sum == nil {
			sum = make([]Mean, len(layers))
		}
		for l, x := range layers {
			sum[l].Layer = l
			sum[l].Jaccard += x.Jaccard
			sum[l].Questions++
			if !math.IsNaN(x.Spearman) {
				sum[l].Spearman += x.Spearman
				sum[l].Counted++
			}
		}
	}
	for l := range sum {
		sum[l].Jaccard /= float64(sum[l].Questions)
		if sum[l].Counted > 0 {
			sum[l].Spearman /= float64(sum[l].Counted)
		} else {
			sum[l].Spearman = math.NaN()
		}
	}
	return sum, nil
}

// Mean is one primary layer's agreement averaged over questions.
type Mean struct {
	Layer     int
	Jaccard   float64
	Spearman  float64 // NaN when no question had a defined rank correlation
	Questions int     // questions averaged into Jaccard
	Counted   int     // questions whose Spearman was defined
}

// TopK returns the indices of the k largest scores (ties: lower index first).
func TopK(s []float32, k int) []int {
	idx := make([]int, len(s))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return s[idx[a]] > s[idx[b]] })
	if k > len(idx) {
		k = len(idx)
	}
	return idx[:k]
}

// Jaccard is |a ∩ b| / |a ∪ b| of two index sets; 1 for two empty sets.
func Jaccard(a, b []int) float64 {
	in := map[int]bool{}
	for _, x := range a {
		in[x] = true
	}
	inter := 0
	union := len(in)
	for _, x := range b {
		if in[x] {
			inter++
		} else {
			union++
		}
	}
	if union == 0 {
		return 1
	}
	return float64(inter) / float64(union)
}

// Spearman is the rank correlation of a and b (average ranks for ties); NaN when
// either is constant.
func Spearman(a, b []float32) float64 {
	ra, rb := ranks(a), ranks(b)
	var ma, mb float64
	for i := range ra {
		ma += ra[i]
		mb += rb[i]
	}
	n := float64(len(ra))
	ma, mb = ma/n, mb/n
	var num, da, db float64
	for i := range ra {
		num += (ra[i] - ma) * (rb[i] - mb)
		da += (ra[i] - ma) * (ra[i] - ma)
		db += (rb[i] - mb) * (rb[i] - mb)
	}
	if da == 0 || db == 0 {
		return math.NaN()
	}
	return num / math.Sqrt(da*db)
}

func ranks(s []float32) []float64 {
	idx := make([]int, len(s))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return s[idx[a]] < s[idx[b]] })
	r := make([]float64, len(s))
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && s[idx[j+1]] == s[idx[i]] {
			j++
		}
		avg := float64(i+j)/2 + 1
		for t := i; t <= j; t++ {
			r[idx[t]] = avg
		}
		i = j + 1
	}
	return r
}

package prefill

import (
	"context"
	"fmt"
	"math"

	"cacheclip/model"
)

// LabelItem is one prefilled question and the token ids of the labels to score
// as its answer. ScoreLabels fills LogProbs.
type LabelItem struct {
	Res    *Result
	Labels [][]int32
	// LogProbs[i][j] is the natural-log probability of label i's token j given
	// the prompt and the label's earlier tokens (teacher forcing).
	LogProbs [][]float64
}

// labelTrie merges labels by shared token prefixes: a node is one token at one
// depth, computed once whatever the number of labels through it.
type labelTrie struct {
	tok    []int32
	parent []int // -1: the node follows the prompt directly
	depth  []int
	kids   []int   // number of children
	paths  [][]int // per label, its nodes from the root
}

func buildTrie(labels [][]int32) (*labelTrie, error) {
	t := &labelTrie{}
	child := map[[2]int32]int{} // (parent+1, token) -> node
	for li, l := range labels {
		if len(l) == 0 {
			return nil, fmt.Errorf("label %d has no tokens", li)
		}
		parent := -1
		var path []int
		for d, tok := range l {
			key := [2]int32{int32(parent + 1), tok}
			n, ok := child[key]
			if !ok {
				n = len(t.tok)
				child[key] = n
				t.tok = append(t.tok, tok)
				t.parent = append(t.parent, parent)
				t.depth = append(t.depth, d)
				t.kids = append(t.kids, 0)
				if parent >= 0 {
					t.kids[parent]++
				}
			}
			path = append(path, n)
			parent = n
		}
		t.paths = append(t.paths, path)
	}
	return t, nil
}

// LabelReserve is the number of cache slots ScoreLabels needs after the prompt
// for these labels (one per inner node of their token trie): pass it as
// Prefill's reserve.
func LabelReserve(labels [][]int32) int {
	t, err := buildTrie(labels)
	if err != nil {
		return 0
	}
	return t.rows()
}

// rows is the number of nodes that must be computed: those with children. A
// leaf's key and value are never attended to and its logits predict nothing
// scored, so single-token labels need no forward work at all (their
// log-probabilities come from the prompt's last logits).
func (t *labelTrie) rows() int {
	n := 0
	for _, k := range t.kids {
		if k > 0 {
			n++
		}
	}
	return n
}

// ScoreLabels scores every label of every item by teacher forcing in one
// forward call of the model. The labels of an item branch from its prefilled
// prompt without recomputing it: their tokens form a trie (labels sharing a
// prefix share its rows) whose inner nodes take slots after the prompt in the
// item's cache (leaves need no row: see rows). Each root-to-leaf path is a sequence over a view of that cache in which
// only the prompt and the path's own nodes are visible, so a label attends to
// the context and its own earlier tokens exactly as if it had been generated,
// and the context's keys and values are shared, never copied. The item's cache
// must have room for LabelReserve(labels) more slots (reserve it at prefill);
// it is consumed (its label slots are written).
func ScoreLabels(ctx context.Context, m model.Backend, items []*LabelItem) error {
	type logitRow struct{ item, node int }
	var seqs []*model.Seq
	var rows []logitRow // the node behind each requested logits row, in order
	tries := make([]*labelTrie, len(items))
	for ii, it := range items {
		t, err := buildTrie(it.Labels)
		if err != nil {
			return fmt.Errorf("score labels: item %d: %w", ii, err)
		}
		tries[ii] = t
		c, ok := it.Res.Cache.(model.Viewer)
		if !ok {
			return fmt.Errorf("score labels: item %d: a %T cannot branch views of its slots (model.Viewer), which label scoring needs", ii, it.Res.Cache)
		}
		need := t.rows()
		if c.Len()+need > c.Cap() {
			return fmt.Errorf("score labels: item %d: the labels need %d cache slots after the prompt, %d were reserved", ii, need, c.Cap()-c.Len())
		}
		// Inner nodes get slots first, first+0 … first+need-1, in node order.
		slot := make([]int32, len(t.tok))
		first, err := c.Alloc(need)
		if err != nil {
			return fmt.Errorf("score labels: item %d: %w", ii, err)
		}
		k := 0
		for n := range t.tok {
			slot[n] = -1
			if t.kids[n] > 0 {
				slot[n] = int32(first + k)
				k++
			}
		}
		owned := make([]bool, len(t.tok))
		for _, path := range t.paths {
			var mine []int
			for _, n := range path {
				if !owned[n] && t.kids[n] > 0 {
					owned[n] = true
					mine = append(mine, n)
				}
			}
			if len(mine) == 0 {
				continue // the label is a prefix of an earlier one: nothing new to compute
			}
			// Rows attend to slots whose position is at or before theirs; the view
			// hides every other branch's slots (position -1) and shows this path's
			// nodes computed by other sequences of the same call (written before any
			// attention of a layer runs).
			v := c.View()
			for j := first; j < first+need; j++ {
				v.SetPos(j, -1)
			}
			for _, n := range path {
				if slot[n] >= 0 {
					v.SetPos(int(slot[n]), it.Res.NextPos+int32(t.depth[n]))
				}
			}
			s := &model.Seq{Cache: v, Groups: it.Res.Groups}
			for i, n := range mine {
				s.Tokens = append(s.Tokens, t.tok[n])
				s.Pos = append(s.Pos, it.Res.NextPos+int32(t.depth[n]))
				s.Slots = append(s.Slots, slot[n])
				s.Logits = append(s.Logits, i)
				rows = append(rows, logitRow{ii, n})
			}
			seqs = append(seqs, s)
		}
	}
	// lse[item][node+1] normalises the logits that predict a child of node (node
	// -1 is the prompt's last row).
	logits := make([][][]float32, len(items))
	for ii, it := range items {
		logits[ii] = make([][]float32, len(tries[ii].tok)+1)
		logits[ii][0] = it.Res.Logits
	}
	if len(seqs) > 0 {
		outs, err := m.Forward(ctx, seqs)
		if err != nil {
			return fmt.Errorf("score labels: %w", err)
		}
		j := 0
		for _, o := range outs {
			for _, l := range o.Logits {
				r := rows[j]
				logits[r.item][r.node+1] = l
				j++
			}
		}
	}
	for ii, it := range items {
		t := tries[ii]
		lse := make([]float64, len(t.tok)+1)
		for k, l := range logits[ii] {
			if l != nil {
				lse[k] = logSumExp(l)
			}
		}
		it.LogProbs = make([][]float64, len(t.paths))
		for li, path := range t.paths {
			lp := make([]float64, len(path))
			for d, n := range path {
				p := t.parent[n] + 1
				lp[d] = float64(logits[ii][p][t.tok[n]]) - lse[p]
			}
			it.LogProbs[li] = lp
		}
	}
	return nil
}

func logSumExp(x []float32) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = max(m, float64(v))
	}
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - m)
	}
	return m + math.Log(s)
}

// LabelScore says how a label's token log-probabilities become its score.
const (
	// ScoreSum is the label's log-likelihood: right when the labels are answers
	// of similar token length, or when a longer label should need more evidence.
	ScoreSum = "sum"
	// ScoreMean is the per-token mean: it removes the bias of the sum towards
	// short labels when their lengths differ a lot (multi-word labels).
	ScoreMean = "mean"
)

// LabelDecision is the verdict over one question's labels.
type LabelDecision struct {
	LogLik []float64 // per label: the sum of its token log-probabilities
	Scores []float64 // per label: LogLik, or its per-token mean (ScoreMean)
	Probs  []float64 // softmax over Scores
	Best   int       // index of the highest score (the first on ties)
	// Margin is the best score minus the second best, in nats; NaN with one label.
	Margin float64
}

// DecideLabels turns per-token log-probabilities into scores, probabilities,
// the best label and its margin. how is ScoreSum or ScoreMean.
func DecideLabels(logProbs [][]float64, how string) LabelDecision {
	d := LabelDecision{LogLik: make([]float64, len(logProbs)), Scores: make([]float64, len(logProbs)), Probs: make([]float64, len(logProbs)), Margin: math.NaN()}
	for i, lp := range logProbs {
		var s float64
		for _, x := range lp {
			s += x
		}
		d.LogLik[i] = s
		if how == ScoreMean && len(lp) > 0 {
			s /= float64(len(lp))
		}
		d.Scores[i] = s
	}
	if len(d.Scores) == 0 {
		d.Best = -1
		return d
	}
	second := math.Inf(-1)
	for i, s := range d.Scores {
		switch {
		case s > d.Scores[d.Best]:
			second = d.Scores[d.Best]
			d.Best = i
		case i != d.Best && s > second:
			second = s
		}
	}
	if len(d.Scores) > 1 {
		d.Margin = d.Scores[d.Best] - second
	}
	top := d.Scores[d.Best]
	var z float64
	for i, s := range d.Scores {
		d.Probs[i] = math.Exp(s - top)
		z += d.Probs[i]
	}
	for i := range d.Probs {
		d.Probs[i] /= z
	}
	return d
}

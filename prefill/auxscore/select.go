package auxscore

import (
	"fmt"
	"sort"
)

// rank orders token indices by score, highest first; ties go to the earlier token
// so selections are deterministic.
func rank(scores []float32) []int {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] > scores[idx[b]] })
	return idx
}

// group marks every token of each window of w consecutive tokens that holds at
// least m marked tokens (CacheClip's sliding-window grouping): recomputing a
// dense run whole keeps the attention among its tokens consistent. Windows slide
// by one token; a context shorter than w is one window.
func group(marked []bool, w, m int) []bool {
	n := len(marked)
	out := append([]bool(nil), marked...)
	if n == 0 || w <= 0 || m <= 0 {
		return out
	}
	w = min(w, n)
	cnt := 0
	for i := 0; i < w; i++ {
		if marked[i] {
			cnt++
		}
	}
	// diff accumulates the windows to fill, as +1/-1 at their ends.
	diff := make([]int, n+1)
	for s := 0; ; s++ {
		if cnt >= m {
			diff[s]++
			diff[s+w]--
		}
		if s+w >= n {
			break
		}
		if marked[s] {
			cnt--
		}
		if marked[s+w] {
			cnt++
		}
	}
	run := 0
	for i := 0; i < n; i++ {
		run += diff[i]
		if run > 0 {
			out[i] = true
		}
	}
	return out
}

// SelectTokens picks exactly budget tokens by score with sliding-window grouping
// (window w, at least m candidates). Grouping adds tokens below the candidates'
// scores, so trimming the grouped set by score would undo it; instead the number
// of top-scored candidates k is the largest whose grouped set still fits the
// budget (the grouped set only grows with k), and the remaining budget is filled
// with the best tokens outside it. Returns ascending indices.
func SelectTokens(scores []float32, budget, w, m int) []int {
	n := len(scores)
	budget = min(max(budget, 0), n)
	if budget == 0 {
		return []int{}
	}
	order := rank(scores)
	grouped := func(k int) []bool {
		marked := make([]bool, n)
		for _, i := range order[:k] {
			marked[i] = true
		}
		return group(marked, w, m)
	}
	count := func(b []bool) int {
		c := 0
		for _, x := range b {
			if x {
				c++
			}
		}
		return c
	}
	lo, hi := 0, budget // invariant: grouped(lo) fits
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if count(grouped(mid)) <= budget {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	set := grouped(lo)
	have := count(set)
	for _, i := range order {
		if have >= budget {
			break
		}
		if !set[i] {
			set[i] = true
			have++
		}
	}
	out := make([]int, 0, budget)
	for i, x := range set {
		if x {
			out = append(out, i)
		}
	}
	return out
}

// MapScores gives each primary token the largest score of the auxiliary tokens
// it overlaps, both tokenisations being of the same text with byte offsets
// [start, end). A token straddling several auxiliary tokens takes the largest; a
// zero-width token (a special token) takes the score of the token covering its
// position, if any; a token overlapping none scores 0.
func MapScores(primary, aux [][2]int, auxScores []float32, textLen int) ([]float32, error) {
	if len(aux) != len(auxScores) {
		return nil, fmt.Errorf("map scores: %d auxiliary tokens but %d scores", len(aux), len(auxScores))
	}
	for name, offs := range map[string][][2]int{"primary": primary, "auxiliary": aux} {
		prev := 0
		for i, o := range offs {
			if o[0] < 0 || o[1] < o[0] || o[1] > textLen {
				return nil, fmt.Errorf("map scores: %s token %d has offsets [%d,%d) outside the text of %d bytes", name, i, o[0], o[1], textLen)
			}
			if o[0] < prev {
				return nil, fmt.Errorf("map scores: %s token %d starts at %d, before the previous token's end %d", name, i, o[0], prev)
			}
			prev = o[1]
		}
	}
	out := make([]float32, len(primary))
	j := 0
	for i, p := range primary {
		// Skip auxiliary tokens that end before this primary token begins; offsets
		// ascend, so the sweep is linear.
		for j < len(aux) && aux[j][1] <= p[0] && !(aux[j][0] == aux[j][1] && aux[j][0] == p[0]) {
			j++
		}
		best, found := float32(0), false
		for k := j; k < len(aux); k++ {
			a := aux[k]
			if a[0] > p[1] || (a[0] == p[1] && p[0] != p[1]) {
				break
			}
			var hit bool
			switch {
			case p[0] == p[1]:
				hit = a[0] <= p[0] && p[0] < a[1]
			case a[0] == a[1]:
				hit = false
			default:
				hit = max(a[0], p[0]) < min(a[1], p[1])
			}
			if hit && (!found || auxScores[k] > best) {
				best, found = auxScores[k], true
			}
		}
		out[i] = best
	}
	return out, nil
}

// Jaccard is |A∩B| / |A∪B| of the sets A and B of the indices in a and b:
// a repeated index counts once, on either side; 1 for two empty sets. It is
// the one Jaccard of the repository (selection overlap here, attention
// agreement in eval/agree).
func Jaccard(a, b []int) float64 {
	in := map[int]bool{}
	for _, x := range a {
		in[x] = true
	}
	inter, union := 0, len(in)
	seen := map[int]bool{}
	for _, x := range b {
		if seen[x] {
			continue
		}
		seen[x] = true
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

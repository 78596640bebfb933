package auxscore

import (
	"fmt"
	"math"
	"sort"
)

// Spread is the effective number of context tokens the auxiliary's attention
// is spread over: the exponential of the entropy of the scores normalised to
// sum to 1 (the perplexity of the attention distribution). It is 1 when one
// token holds all the mass and len(scores) when the mass is spread evenly; a
// context with no mass at all (every score 0) says nothing about where the
// question looks and counts as spread evenly. Negative scores count as 0.
func Spread(scores []float32) float64 {
	var sum float64
	for _, s := range scores {
		if s > 0 {
			sum += float64(s)
		}
	}
	if sum == 0 || math.IsInf(sum, 0) || math.IsNaN(sum) {
		return float64(len(scores))
	}
	var h float64
	for _, s := range scores {
		if s > 0 {
			p := float64(s) / sum
			h -= p * math.Log(p)
		}
	}
	return math.Exp(h)
}

// Allocate spreads a batch's recompute budget unevenly over its questions
// (method parameter budget=adaptive). fixed[i] is question i's budget at the
// job's ratio r (methods.Budget(r, n[i]), the ⌈r·N⌉ a fixed ratio would
// recompute), n[i] its number of context tokens and spread[i] its Spread. The
// result recomputes exactly Σ fixed tokens in all, so an adaptive job does the
// same total work as a fixed-ratio one:
//
//   - half of each question's fixed budget is its floor: the auxiliary's
//     attention is a proxy for the primary's (their top tokens overlap by a
//     Jaccard of about 0.2–0.5 on the test bed), so a question it judges
//     concentrated is never starved;
//   - the other half of the batch's budget goes to the questions in
//     proportion to their spread: where the mass sits on a few tokens, few
//     recomputed tokens already cover it, and the tokens saved go to questions
//     whose mass is spread over many;
//   - no question gets more than its n (water-filling: what a capped question
//     cannot take goes to the others by the same proportion), so at r = 1
//     every question recomputes everything, as full does;
//   - the shares are rounded to integers by largest remainder (ties to the
//     earlier question), so the total is exact and the result depends only on
//     the inputs and their order.
//
// The budget is monotone in the spread: between two questions of equal n,
// the one with the larger spread never gets fewer tokens.
func Allocate(fixed, n []int, spread []float64) ([]int, error) {
	if len(n) != len(fixed) || len(spread) != len(fixed) {
		return nil, fmt.Errorf("allocate: %d fixed budgets, %d context sizes, %d spreads", len(fixed), len(n), len(spread))
	}
	total := 0
	for i := range fixed {
		if fixed[i] < 0 || fixed[i] > n[i] {
			return nil, fmt.Errorf("allocate: question %d: budget %d outside [0, %d]", i, fixed[i], n[i])
		}
		if !(spread[i] >= 0) || math.IsInf(spread[i], 0) {
			return nil, fmt.Errorf("allocate: question %d: spread %v is not a finite non-negative number", i, spread[i])
		}
		total += fixed[i]
	}
	k := len(fixed)
	x := make([]float64, k)
	for i, f := range fixed {
		x[i] = float64(f) / 2
	}
	// Water-filling of the remaining half over the questions not yet at their cap.
	rest := float64(total) / 2
	capped := make([]bool, k)
	for rest > 1e-9 {
		var wsum float64
		open := 0
		for i := range x {
			if !capped[i] {
				wsum += spread[i]
				open++
			}
		}
		if open == 0 {
			break
		}
		share := func(i int) float64 {
			if wsum == 0 {
				return rest / float64(open)
			}
			return rest * spread[i] / wsum
		}
		over := false
		for i := range x {
			if !capped[i] && x[i]+share(i) > float64(n[i]) {
				over = true
			}
		}
		if !over {
			for i := range x {
				if !capped[i] {
					x[i] += share(i)
				}
			}
			break
		}
		// Fill the questions that overflow to their cap and hand out the rest again.
		for i := range x {
			if !capped[i] && x[i]+share(i) > float64(n[i]) {
				rest -= float64(n[i]) - x[i]
				x[i] = float64(n[i])
				capped[i] = true
			}
		}
	}
	return roundExact(x, n, total), nil
}

// roundExact rounds x to integers in [0, n[i]] summing to total by largest
// remainder; ties go to the earlier index.
func roundExact(x []float64, n []int, total int) []int {
	out := make([]int, len(x))
	sum := 0
	for i, v := range x {
		out[i] = min(max(int(math.Floor(v+1e-9)), 0), n[i])
		sum += out[i]
	}
	order := make([]int, len(x))
	for i := range order {
		order[i] = i
	}
	frac := func(i int) float64 { return x[i] - float64(out[i]) }
	sort.SliceStable(order, func(a, b int) bool { return frac(order[a]) > frac(order[b]) })
	for sum < total {
		moved := false
		for _, i := range order {
			if sum < total && out[i] < n[i] {
				out[i]++
				sum++
				moved = true
			}
		}
		if !moved {
			break // total exceeds Σ n: cannot happen for valid fixed budgets
		}
	}
	for j := len(order) - 1; sum > total && j >= 0; j-- {
		if i := order[j]; out[i] > 0 {
			out[i]--
			sum--
		}
	}
	return out
}

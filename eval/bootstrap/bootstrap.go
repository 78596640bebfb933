// Package bootstrap gives a score averaged over questions its confidence
// interval: the percentile bootstrap, resampling the questions with
// replacement. It is seeded, so a report is reproducible, and two runs over the
// same questions with the same seed draw the same resamples (their intervals
// are paired).
package bootstrap

import (
	"math"
	"math/rand/v2"
	"slices"
)

// Resamples is the number of bootstrap resamples the evaluation draws.
const Resamples = 1000

// Interval is the central level·100% percentile-bootstrap interval of the
// mean of xs, from resamples resamples of len(xs) items drawn with
// replacement by a PCG generator seeded with seed. No items give NaN, NaN.
func Interval(xs []float64, level float64, resamples int, seed uint64) (lo, hi float64) {
	n := len(xs)
	if n == 0 || resamples < 1 || !(level > 0 && level < 1) {
		return math.NaN(), math.NaN()
	}
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	means := make([]float64, resamples)
	for b := range means {
		sum := 0.0
		for range n {
			sum += xs[rng.IntN(n)]
		}
		means[b] = sum / float64(n)
	}
	slices.Sort(means)
	alpha := (1 - level) / 2
	return quantile(means, alpha), quantile(means, 1-alpha)
}

// quantile is the q-quantile of sorted xs, interpolated linearly between
// order statistics.
func quantile(sorted []float64, q float64) float64 {
	pos := q * float64(len(sorted)-1)
	i := int(math.Floor(pos))
	if i >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	f := pos - float64(i)
	return sorted[i]*(1-f) + sorted[i+1]*f
}

// PairedInterval is the interval of the mean difference a−b of two runs
// scored on the same questions (a[i] and b[i] are question i): the bootstrap
// resamples questions, so both runs draw the same ones. Runs of different
// lengths give NaN, NaN.
func PairedInterval(a, b []float64, level float64, resamples int, seed uint64) (lo, hi float64) {
	if len(a) != len(b) {
		return math.NaN(), math.NaN()
	}
	d := make([]float64, len(a))
	for i := range a {
		d[i] = a[i] - b[i]
	}
	return Interval(d, level, resamples, seed)
}

// Stratified is the central level·100% percentile interval of stat over
// resamples in which each stratum's items are redrawn with replacement on
// their own, each stratum keeping its size: the interval of a statistic over
// several tasks that each have their own questions (a mean over tasks of a
// per-task score). stat gets, per stratum, the resampled item indices, and
// may return NaN for a resample it cannot judge (left out). No strata, an
// empty stratum, or no judged resample give NaN, NaN.
func Stratified(sizes []int, stat func(idx [][]int) float64, level float64, resamples int, seed uint64) (lo, hi float64) {
	if len(sizes) == 0 || resamples < 1 || !(level > 0 && level < 1) || slices.Contains(sizes, 0) {
		return math.NaN(), math.NaN()
	}
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	idx := make([][]int, len(sizes))
	for s, n := range sizes {
		idx[s] = make([]int, n)
	}
	stats := make([]float64, 0, resamples)
	for range resamples {
		for s, n := range sizes {
			for i := range idx[s] {
				idx[s][i] = rng.IntN(n)
			}
		}
		if v := stat(idx); !math.IsNaN(v) {
			stats = append(stats, v)
		}
	}
	if len(stats) == 0 {
		return math.NaN(), math.NaN()
	}
	slices.Sort(stats)
	alpha := (1 - level) / 2
	return quantile(stats, alpha), quantile(stats, 1-alpha)
}

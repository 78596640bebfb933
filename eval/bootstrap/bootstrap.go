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

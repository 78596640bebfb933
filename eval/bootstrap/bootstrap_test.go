package bootstrap

import (
	"math"
	"testing"
)

func TestInterval(t *testing.T) {
	ones := func(n, k int) []float64 { // k ones among n
		xs := make([]float64, n)
		for i := range k {
			xs[i] = 1
		}
		return xs
	}
	// A known binomial case: the 95% interval of a proportion p over n
	// questions is close to the normal approximation p ± 1.96·√(p(1−p)/n).
	normal := func(n, k int) (float64, float64) {
		p := float64(k) / float64(n)
		h := 1.96 * math.Sqrt(p*(1-p)/float64(n))
		return p - h, p + h
	}
	for _, c := range []struct {
		name   string
		xs     []float64
		lo, hi float64
		tol    float64
	}{
		{"all correct", ones(50, 50), 1, 1, 0},
		{"all wrong", ones(50, 0), 0, 0, 0},
		{"one question", []float64{0.5}, 0.5, 0.5, 0},
		{"half of 400", ones(400, 200), 0, 0, 0.01},
		{"80 of 100", ones(100, 80), 0, 0, 0.015},
		{"partial credit 0.5 each", []float64{0.5, 0.5, 0.5, 0.5}, 0.5, 0.5, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			lo, hi := Interval(c.xs, 0.95, Resamples, 2026)
			wantLo, wantHi := c.lo, c.hi
			if c.tol > 0 {
				k := 0
				for _, x := range c.xs {
					k += int(x)
				}
				wantLo, wantHi = normal(len(c.xs), k)
			}
			if math.Abs(lo-wantLo) > c.tol+1e-12 || math.Abs(hi-wantHi) > c.tol+1e-12 {
				t.Fatalf("Interval = [%v, %v], want [%v, %v] ± %v", lo, hi, wantLo, wantHi, c.tol)
			}
			mean := 0.0
			for _, x := range c.xs {
				mean += x
			}
			mean /= float64(len(c.xs))
			if lo > mean || hi < mean {
				t.Fatalf("interval [%v, %v] leaves out the mean %v", lo, hi, mean)
			}
		})
	}
}

func TestIntervalSeededAndPaired(t *testing.T) {
	xs := []float64{1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0}
	lo1, hi1 := Interval(xs, 0.95, Resamples, 7)
	lo2, hi2 := Interval(xs, 0.95, Resamples, 7)
	if lo1 != lo2 || hi1 != hi2 {
		t.Fatalf("same seed, different intervals: [%v,%v] vs [%v,%v]", lo1, hi1, lo2, hi2)
	}
	// A wider level gives a wider interval.
	lo3, hi3 := Interval(xs, 0.5, Resamples, 7)
	if !(lo3 >= lo1 && hi3 <= hi1 && hi3-lo3 < hi1-lo1) {
		t.Fatalf("50%% interval [%v,%v] not inside the 95%% one [%v,%v]", lo3, hi3, lo1, hi1)
	}
	if lo, hi := Interval(nil, 0.95, Resamples, 7); !math.IsNaN(lo) || !math.IsNaN(hi) {
		t.Fatalf("no items: [%v, %v], want NaN", lo, hi)
	}
}

func TestPairedInterval(t *testing.T) {
	// a is right on every question b is, and on 30 more of 100: the
	// difference is 0.3, and pairing makes its interval that of a 30-of-100
	// proportion (normal approximation 0.3 ± 0.09), far from 0.
	a, b := make([]float64, 100), make([]float64, 100)
	for i := range 60 {
		a[i] = 1
		if i < 30 {
			b[i] = 1
		}
	}
	lo, hi := PairedInterval(a, b, 0.95, Resamples, 1)
	if h := 1.96 * math.Sqrt(0.3*0.7/100); math.Abs(lo-(0.3-h)) > 0.015 || math.Abs(hi-(0.3+h)) > 0.015 {
		t.Fatalf("PairedInterval = [%v, %v], want about [%v, %v]", lo, hi, 0.3-h, 0.3+h)
	}
	// Identical runs differ by exactly nothing.
	if lo, hi := PairedInterval(a, a, 0.95, Resamples, 1); lo != 0 || hi != 0 {
		t.Fatalf("a run against itself: [%v, %v], want [0, 0]", lo, hi)
	}
	if lo, _ := PairedInterval(a, b[:10], 0.95, Resamples, 1); !math.IsNaN(lo) {
		t.Fatalf("runs of different lengths: %v, want NaN", lo)
	}
}

// A stratified interval over one stratum is the plain interval (same draws);
// over two strata of constant items it is the constant mean; an empty
// stratum gives NaN.
func TestStratified(t *testing.T) {
	xs := []float64{0, 1, 1, 0, 1, 1, 1, 0, 0, 1}
	mean := func(idx [][]int) float64 {
		s := 0.0
		for _, i := range idx[0] {
			s += xs[i]
		}
		return s / float64(len(idx[0]))
	}
	lo, hi := Stratified([]int{len(xs)}, mean, 0.95, Resamples, 42)
	wlo, whi := Interval(xs, 0.95, Resamples, 42)
	if lo != wlo || hi != whi {
		t.Fatalf("one stratum: [%v, %v], plain interval [%v, %v]", lo, hi, wlo, whi)
	}
	a, b := []float64{0.5, 0.5, 0.5}, []float64{1, 1}
	avg := func(idx [][]int) float64 {
		sa, sb := 0.0, 0.0
		for _, i := range idx[0] {
			sa += a[i]
		}
		for _, i := range idx[1] {
			sb += b[i]
		}
		return (sa/3 + sb/2) / 2
	}
	if lo, hi := Stratified([]int{3, 2}, avg, 0.95, Resamples, 1); lo != 0.75 || hi != 0.75 {
		t.Fatalf("constant strata: [%v, %v], want [0.75, 0.75]", lo, hi)
	}
	if lo, hi := Stratified([]int{3, 0}, avg, 0.95, Resamples, 1); !math.IsNaN(lo) || !math.IsNaN(hi) {
		t.Fatalf("empty stratum: [%v, %v], want NaN", lo, hi)
	}
	// Each stratum is redrawn on its own: a stratum of 0s and one of 1s never mix,
	// so the mean of the two strata's means is always 0.5.
	z, o := make([]float64, 7), []float64{1, 1, 1, 1}
	mix := func(idx [][]int) float64 {
		s0, s1 := 0.0, 0.0
		for _, i := range idx[0] {
			s0 += z[i]
		}
		for _, i := range idx[1] {
			s1 += o[i]
		}
		return (s0/float64(len(idx[0])) + s1/float64(len(idx[1]))) / 2
	}
	if lo, hi := Stratified([]int{7, 4}, mix, 0.95, Resamples, 3); lo != 0.5 || hi != 0.5 {
		t.Fatalf("strata mixed: [%v, %v], want [0.5, 0.5]", lo, hi)
	}
}

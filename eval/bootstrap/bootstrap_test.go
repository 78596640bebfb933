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

package auxscore

import (
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"cacheclip/methods"
)

func TestSpread(t *testing.T) {
	cases := []struct {
		name   string
		scores []float32
		want   float64
	}{
		{"one token holds all the mass", []float32{0, 0, 3, 0}, 1},
		{"even over four", []float32{1, 1, 1, 1}, 4},
		{"even over two of four", []float32{0.5, 0, 0.5, 0}, 2},
		{"no mass counts as even", []float32{0, 0, 0}, 3},
		{"negative scores count as zero", []float32{-1, 2, 2}, 2},
		{"empty", nil, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Spread(c.scores); math.Abs(got-c.want) > 1e-9 {
				t.Fatalf("Spread(%v) = %v, want %v", c.scores, got, c.want)
			}
		})
	}
	// More spread, more effective tokens: moving mass from the top token to
	// the others never lowers the spread.
	prev := 0.0
	for _, top := range []float32{100, 50, 10, 5, 2, 1} {
		s := Spread([]float32{top, 1, 1, 1, 1, 1, 1, 1})
		if s < prev {
			t.Fatalf("top %v: spread %v fell below %v", top, s, prev)
		}
		prev = s
	}
}

// The adaptive allocation recomputes exactly the fixed ratio's tokens over a
// batch, never more than a question's context, and everything at r = 1.
func TestAllocateEqualTotalWork(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 5))
	for _, r := range []float64{0, 0.05, 0.1, 0.2, 0.4, 0.6, 0.99, 1} {
		for trial := 0; trial < 200; trial++ {
			k := 1 + rng.IntN(16)
			n, fixed := make([]int, k), make([]int, k)
			spread := make([]float64, k)
			want := 0
			for i := range n {
				n[i] = rng.IntN(1200)
				fixed[i] = methods.Budget(r, n[i])
				want += fixed[i]
				switch rng.IntN(4) {
				case 0:
					spread[i] = 0
				case 1:
					spread[i] = 1
				default:
					spread[i] = rng.Float64() * float64(n[i])
				}
			}
			got, err := Allocate(fixed, n, spread)
			if err != nil {
				t.Fatal(err)
			}
			sum := 0
			for i, b := range got {
				if b < 0 || b > n[i] {
					t.Fatalf("r=%v: question %d gets %d of %d tokens", r, i, b, n[i])
				}
				if b < fixed[i]/2 {
					t.Fatalf("r=%v: question %d gets %d, below half its fixed budget %d", r, i, b, fixed[i])
				}
				sum += b
			}
			if sum != want {
				t.Fatalf("r=%v, n=%v, spread=%v: %v sums to %d, fixed ratio recomputes %d", r, n, spread, got, sum, want)
			}
			if r == 1 && !slices.Equal(got, n) {
				t.Fatalf("r=1: %v, want every token %v", got, n)
			}
		}
	}
}

// Equal spreads over equal contexts leave the fixed budgets as they are; a
// question with more spread never gets fewer tokens than one with less.
func TestAllocateMonotoneInSpread(t *testing.T) {
	n := []int{1000, 1000, 1000, 1000}
	fixed := []int{200, 200, 200, 200}
	got, err := Allocate(fixed, n, []float64{50, 50, 50, 50})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, fixed) {
		t.Fatalf("equal spreads: %v, want the fixed budgets %v", got, fixed)
	}
	got, err = Allocate(fixed, n, []float64{10, 400, 40, 40})
	if err != nil {
		t.Fatal(err)
	}
	if !(got[1] > got[2] && got[2] == got[3] && got[3] > got[0]) {
		t.Fatalf("spreads 10, 400, 40, 40: budgets %v, want the most for the second and the least for the first", got)
	}
	// Raising one question's spread step by step never lowers its budget.
	rng := rand.New(rand.NewPCG(7, 7))
	for trial := 0; trial < 100; trial++ {
		k := 2 + rng.IntN(10)
		n, fixed, spread := make([]int, k), make([]int, k), make([]float64, k)
		for i := range n {
			n[i] = 512
			fixed[i] = methods.Budget(0.2, 512)
			spread[i] = 1 + rng.Float64()*300
		}
		prevSelf := -1
		for _, s := range []float64{1, 5, 20, 80, 200, 400, 512} {
			spread[0] = s
			got, err := Allocate(fixed, n, spread)
			if err != nil {
				t.Fatal(err)
			}
			if got[0] < prevSelf {
				t.Fatalf("spread %v: budget %d fell below %d", s, got[0], prevSelf)
			}
			for i := 1; i < k; i++ {
				if spread[i] < spread[0] && got[i] > got[0] {
					t.Fatalf("question %d (spread %v) got %d > question 0 (spread %v) %d", i, spread[i], got[i], s, got[0])
				}
			}
			prevSelf = got[0]
		}
	}
}

// The allocation is a function of its inputs alone: the same batch gives the
// same budgets every time.
func TestAllocateDeterministic(t *testing.T) {
	fixed := []int{103, 103, 103, 52, 103}
	n := []int{512, 512, 512, 256, 512}
	spread := []float64{33.3, 33.3, 120, 7, 33.3}
	first, err := Allocate(fixed, n, spread)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		got, err := Allocate(slices.Clone(fixed), slices.Clone(n), slices.Clone(spread))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, first) {
			t.Fatalf("run gave %v, first run %v", got, first)
		}
	}
	// Questions 0, 1 and 4 are alike: they get the same budget or differ by
	// the one token of rounding, the earlier one first.
	if first[0] < first[1] || first[1] < first[4] || first[0]-first[4] > 1 {
		t.Fatalf("alike questions 0, 1, 4 got %d, %d, %d", first[0], first[1], first[4])
	}
}

func TestAllocateRejects(t *testing.T) {
	cases := []struct {
		name   string
		fixed  []int
		n      []int
		spread []float64
	}{
		{"lengths differ", []int{1, 2}, []int{5}, []float64{1, 1}},
		{"budget over the context", []int{6}, []int{5}, []float64{1}},
		{"negative budget", []int{-1}, []int{5}, []float64{1}},
		{"NaN spread", []int{1}, []int{5}, []float64{math.NaN()}},
		{"infinite spread", []int{1}, []int{5}, []float64{math.Inf(1)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Allocate(c.fixed, c.n, c.spread); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

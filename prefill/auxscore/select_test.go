package auxscore

import (
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func TestSelectTokens(t *testing.T) {
	// Tokens 0..4 lead; 15..17 come next; the rest trail. Top 8 would be
	// 0..4 and 15..17, but 0..4 are five candidates in the window [0,8), which is
	// recomputed whole, and that fills the budget of 8.
	dense := make([]float32, 20)
	for i := range dense {
		dense[i] = 0.01 * float32(i)
	}
	copy(dense, []float32{10, 9, 8, 7, 6})
	dense[15], dense[16], dense[17] = 5, 4, 3
	seq := func(lo, hi int) []int {
		var s []int
		for i := lo; i < hi; i++ {
			s = append(s, i)
		}
		return s
	}
	cases := []struct {
		name   string
		scores []float32
		budget int
		w, m   int
		want   []int
	}{
		{"grouped window fills the budget", dense, 8, 8, 5, seq(0, 8)},
		{"no grouping when m exceeds w", dense, 8, 8, 9, []int{0, 1, 2, 3, 4, 15, 16, 17}},
		{"group then fill by score", dense, 10, 8, 5, append(seq(0, 8), 15, 16)},
		{"budget zero", dense, 0, 8, 5, []int{}},
		{"budget is everything", dense, 20, 8, 5, seq(0, 20)},
		{"budget over everything", dense, 25, 8, 5, seq(0, 20)},
		{"empty context", nil, 3, 8, 5, []int{}},
		{"context shorter than the window", []float32{1, 5, 2, 4}, 2, 8, 2, []int{1, 3}},
		{"ties go to the earlier token", []float32{1, 1, 1, 1}, 2, 8, 5, []int{0, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := SelectTokens(c.scores, c.budget, c.w, c.m)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}

// Every selection is exactly the budget, ascending and distinct, and every window
// the grouping marks is whole unless the budget forced fewer candidates.
func TestSelectTokensExactBudget(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 300; trial++ {
		n := r.IntN(200)
		scores := make([]float32, n)
		for i := range scores {
			// Clustered scores make grouping fire often.
			scores[i] = float32(r.IntN(5)) + r.Float32()
		}
		budget := r.IntN(n + 2)
		got := SelectTokens(scores, budget, 1+r.IntN(10), 1+r.IntN(6))
		if len(got) != min(budget, n) {
			t.Fatalf("trial %d: %d selected, budget %d of %d", trial, len(got), budget, n)
		}
		for i, x := range got {
			if x < 0 || x >= n || (i > 0 && x <= got[i-1]) {
				t.Fatalf("trial %d: selection %v not ascending within [0,%d)", trial, got, n)
			}
		}
	}
}

func TestGroup(t *testing.T) {
	b := func(s string) []bool {
		out := make([]bool, len(s))
		for i := range s {
			out[i] = s[i] == 'x'
		}
		return out
	}
	str := func(v []bool) string {
		var sb strings.Builder
		for _, x := range v {
			if x {
				sb.WriteByte('x')
			} else {
				sb.WriteByte('.')
			}
		}
		return sb.String()
	}
	cases := []struct{ in, want string }{
		{"x.xxx.x.x.......", "xxxxxxxxxx......"}, // windows [0,8), [1,9), [2,10) hold 5 (w=8, m=5)
		{"x.x.x.x.........", "x.x.x.x........."}, // 4 never reach 5
		{"..........xxxxx.", ".......xxxxxxxxx"}, // windows [7,15) and [8,16) hold all five
		{"xxxxx", "xxxxx"},
	}
	for _, c := range cases {
		if got := str(group(b(c.in), 8, 5)); got != c.want {
			t.Errorf("group(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestMapScores(t *testing.T) {
	// The same 10-byte text: primary tokens of 2 bytes, auxiliary of 3. Primary
	// [2,4) straddles auxiliary [0,3) and [3,6); [8,10) straddles [6,9) and [9,10).
	p2 := [][2]int{{0, 2}, {2, 4}, {4, 6}, {6, 8}, {8, 10}}
	a3 := [][2]int{{0, 3}, {3, 6}, {6, 9}, {9, 10}}
	cases := []struct {
		name      string
		primary   [][2]int
		aux       [][2]int
		auxScores []float32
		want      []float32
		err       string
	}{
		{"straddling takes the max", p2, a3, []float32{0.1, 0.5, 0.2, 0.7}, []float32{0.1, 0.5, 0.5, 0.2, 0.7}, ""},
		{"straddling, other order", p2, a3, []float32{0.6, 0.5, 0.9, 0.3}, []float32{0.6, 0.6, 0.5, 0.9, 0.9}, ""},
		{"coarse primary", [][2]int{{0, 10}}, a3, []float32{0.1, 0.5, 0.2, 0.7}, []float32{0.7}, ""},
		{"same tokens", a3, a3, []float32{1, 2, 3, 4}, []float32{1, 2, 3, 4}, ""},
		{"zero-width primary token takes its position's", [][2]int{{0, 0}, {0, 4}, {4, 4}, {4, 10}}, a3, []float32{0.1, 0.5, 0.2, 0.7},
			[]float32{0.1, 0.5, 0.5, 0.7}, ""},
		{"zero-width auxiliary token maps to nothing", [][2]int{{0, 5}, {5, 10}}, [][2]int{{0, 0}, {0, 5}, {5, 10}}, []float32{9, 1, 2}, []float32{1, 2}, ""},
		{"uncovered bytes score 0", [][2]int{{0, 2}, {2, 4}}, [][2]int{{0, 2}}, []float32{3}, []float32{3, 0}, ""},
		{"offsets past the text", p2, [][2]int{{0, 11}}, []float32{1}, nil, "outside the text"},
		{"offsets out of order", p2, [][2]int{{3, 6}, {0, 3}}, []float32{1, 2}, nil, "before the previous"},
		{"scores and tokens disagree", p2, a3, []float32{1}, nil, "scores"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := MapScores(c.primary, c.aux, c.auxScores, 10)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestJaccard(t *testing.T) {
	for _, c := range []struct {
		a, b []int
		want float64
	}{{nil, nil, 1}, {[]int{1, 2}, []int{1, 2}, 1}, {[]int{1, 2}, []int{3}, 0}, {[]int{1, 2, 3}, []int{2, 3, 4}, 0.5},
		// Sets: a repeated index counts once, on either side.
		{[]int{1, 1, 2}, []int{2, 2, 3}, 1.0 / 3}, {[]int{5, 5}, []int{5}, 1}, {[]int{4}, []int{4, 4, 6, 6}, 0.5}} {
		if got := Jaccard(c.a, c.b); got != c.want {
			t.Errorf("Jaccard(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

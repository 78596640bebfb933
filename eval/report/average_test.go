package report

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// Averages over two tasks, worked out by hand: cacheclip scores 3/4 and 1/2
// where full scores 4/4 and 1/2; blend 1/4 and 0/2.
func TestAverages(t *testing.T) {
	rows := []Row{
		{Task: "a", Method: "full", RatioFree: true, Score: 100, PerQuestion: []float64{1, 1, 1, 1}},
		{Task: "a", Method: "cacheclip", Ratio: 0.2, Score: 75, PerQuestion: []float64{1, 1, 1, 0}},
		{Task: "a", Method: "cacheblend", Ratio: 0.2, Score: 25, PerQuestion: []float64{1, 0, 0, 0}},
		{Task: "b", Method: "full", RatioFree: true, Score: 50, PerQuestion: []float64{1, 0}},
		{Task: "b", Method: "cacheclip", Ratio: 0.2, Score: 50, PerQuestion: []float64{1, 0}},
		{Task: "b", Method: "cacheblend", Ratio: 0.2, Score: 0, PerQuestion: []float64{0, 0}},
		// full scored 0 on c: c is left out of every average.
		{Task: "c", Method: "full", RatioFree: true, Score: 0, PerQuestion: []float64{0}},
		{Task: "c", Method: "cacheclip", Ratio: 0.2, Score: 100, PerQuestion: []float64{1}},
	}
	avs := Averages(Sorted(rows), 7)
	find := func(a, b string) Average {
		for _, x := range avs {
			bn := ""
			if x.B != nil {
				bn = x.B.Method
			}
			if x.A.Method == a && bn == b {
				return x
			}
		}
		t.Fatalf("no average of %s against %q in %+v", a, b, avs)
		return Average{}
	}
	clip := find("cacheclip", "")
	if clip.Score != 62.5 || clip.OfFull != 87.5 || strings.Join(clip.Tasks, ",") != "a,b" {
		t.Errorf("cacheclip: mean %v, of full %v over %v; want 62.5, (75 + 100)/2 = 87.5 over a,b", clip.Score, clip.OfFull, clip.Tasks)
	}
	if !(clip.Lo <= clip.Score && clip.Score <= clip.Hi) || !(clip.OfLo <= clip.OfFull && clip.OfFull <= clip.OfHi) {
		t.Errorf("cacheclip: intervals [%v, %v] and [%v, %v] leave out the estimates", clip.Lo, clip.Hi, clip.OfLo, clip.OfHi)
	}
	d := find("cacheblend", "cacheclip")
	if d.Score != -50 || d.Hi > 0 {
		t.Errorf("cacheblend − cacheclip: %v [%v, %v], want −50 with an interval below 0", d.Score, d.Lo, d.Hi)
	}
	if d.Verdict() != "cacheclip ahead" {
		t.Errorf("verdict %q", d.Verdict())
	}
	if g := find("cacheclip", "full"); g.Score != -12.5 || !math.IsNaN(g.OfFull) {
		t.Errorf("cacheclip − full: %v, want −12.5 ((−25 + 0)/2)", g.Score)
	}
	var b bytes.Buffer
	if err := AveragesMarkdown(&b, avs, "tasks"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Averaged over tasks", "| 0.2 | cacheclip | 2 | 62.5 |", "## Differences averaged over tasks", "| 0.2 | cacheblend | cacheclip @ 0.2 | 2 | -50.0 |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, b.String())
		}
	}
}

func TestOfTasks(t *testing.T) {
	rows := []Row{{Task: "a"}, {Task: "b"}, {Task: "c"}, {Task: "a", Method: "x"}}
	got := OfTasks(rows, []string{"a", "c"})
	if len(got) != 3 || got[0].Task != "a" || got[1].Task != "c" || got[2].Method != "x" {
		t.Fatalf("%+v", got)
	}
}

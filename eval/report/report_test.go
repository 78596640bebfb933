package report

import (
	"context"
	"encoding/csv"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// handMade is a result set whose derived columns are worked out by hand in
// the tests below.
func handMade() []Row {
	nan := math.NaN()
	return []Row{
		{Task: "vt", Method: "cacheclip", Ratio: 0.4, Questions: 4, Answered: 4, Score: 75, ScoreLo: 50, ScoreHi: 100, SameAsFull: 75, KLFirst: 0.125, TokenAgree: 90, TTFTP50ms: 12,
			SeedScores: []SeedScore{{Seed: 1, Score: 100}, {Seed: 2, Score: 50}}, Recomputed: 1200, AuxP50ms: 1.5},
		{Task: "vt", Method: "full", RatioFree: true, Questions: 4, Answered: 4, Score: 80, ScoreLo: 62.5, ScoreHi: 95, SameAsFull: 100, KLFirst: 0, TokenAgree: 100, TTFTP50ms: 30},
		// A variant of cacheclip sorts after the plain method at the same ratio.
		{Task: "vt", Method: "cacheclip[aux_mode=cached]", Ratio: 0.4, Questions: 4, Answered: 4, Score: 50, ScoreLo: 25, ScoreHi: 75, SameAsFull: 50, KLFirst: 0.25, TokenAgree: 80, TTFTP50ms: 10},
		{Task: "vt", Method: "cacheclip", Ratio: 0.1, Questions: 4, Answered: 3, Score: 40, ScoreLo: 12.5, ScoreHi: 62.5, SameAsFull: 50, KLFirst: 0.5, TokenAgree: 60, TTFTP50ms: 8.25},
		{Task: "vt", Method: "reuse", RatioFree: true, Questions: 4, Answered: 4, Score: 20, ScoreLo: 0, ScoreHi: 40, SameAsFull: 25, KLFirst: 1.25, TokenAgree: 30, TTFTP50ms: 5},
		{Task: "niah_single", Method: "full", RatioFree: true, Questions: 2, Answered: 2, Score: 0, ScoreLo: 0, ScoreHi: 0, SameAsFull: 100, KLFirst: 0, TokenAgree: 100, TTFTP50ms: 9},
		{Task: "niah_single", Method: "reuse", RatioFree: true, Questions: 2, Answered: 2, Score: 0, ScoreLo: 0, ScoreHi: 0, SameAsFull: 50, KLFirst: 0.03125, TokenAgree: 75, TTFTP50ms: 3},
		{Task: "multihop", Method: "cacheblend", Ratio: 0.2, Questions: 1, Answered: 1, Score: 100, ScoreLo: nan, ScoreHi: nan, SameAsFull: nan, KLFirst: nan, TokenAgree: nan, TTFTP50ms: 7, AuxP50ms: nan},
	}
}

func TestEvalReportWrite(t *testing.T) {
	dir := t.TempDir()
	agreement := []Agreement{
		{Task: "vt", Layer: 0, Jaccard: 0.25, Spearman: 0.5, Questions: 4},
		{Task: "vt", Layer: 1, Jaccard: 0.75, Spearman: math.NaN(), Questions: 4},
	}
	files, err := Write(context.Background(), dir, Results{Title: "Test-bed results", Rows: handMade(), Agreement: agreement, TopK: "top 20%"})
	if err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	var tableRows []string
	for _, l := range strings.Split(string(md), "\n") {
		if strings.HasPrefix(l, "| ") && !strings.HasPrefix(l, "| task ") && strings.Count(l, "|") == 15 {
			tableRows = append(tableRows, l)
		}
	}
	wantMD := []string{
		// Task order is first appearance; within a task full, reuse, ape, cacheblend, cacheclip, then ratio.
		"| vt | full | - | 4/4 | 80.0 | [62.5, 95.0] | - | 100.0 | 100.0 | 0.0000 | 100.0 | 0 | 0.00 | 30.0 |",
		"| vt | reuse | - | 4/4 | 20.0 | [0.0, 40.0] | - | 25.0 | 25.0 | 1.2500 | 30.0 | 0 | 0.00 | 5.0 |",
		"| vt | cacheclip | 0.1 | 3/4 | 40.0 | [12.5, 62.5] | - | 50.0 | 50.0 | 0.5000 | 60.0 | 0 | 0.00 | 8.2 |",
		// Two seeds pooled: each seed's score beside the pooled one.
		"| vt | cacheclip | 0.4 | 4/4 | 75.0 | [50.0, 100.0] | 100.0 / 50.0 | 93.8 | 75.0 | 0.1250 | 90.0 | 1200 | 1.50 | 12.0 |",
		// A variant's brackets are escaped so Markdown does not read a link.
		`| vt | cacheclip\[aux_mode=cached\] | 0.4 | 4/4 | 50.0 | [25.0, 75.0] | - | 62.5 | 50.0 | 0.2500 | 80.0 | 0 | 0.00 | 10.0 |`,
		// full scored 0: a percentage of it is meaningless.
		"| niah_single | full | - | 2/2 | 0.0 | [0.0, 0.0] | - | n/a | 100.0 | 0.0000 | 100.0 | 0 | 0.00 | 9.0 |",
		"| niah_single | reuse | - | 2/2 | 0.0 | [0.0, 0.0] | - | n/a | 50.0 | 0.0312 | 75.0 | 0 | 0.00 | 3.0 |",
		// no full run for the task at all, and no interval.
		"| multihop | cacheblend | 0.2 | 1/1 | 100.0 | n/a | - | n/a | n/a | n/a | n/a | 0 | n/a | 7.0 |",
	}
	if len(tableRows) != len(wantMD) {
		t.Fatalf("markdown has %d table rows, want %d:\n%s", len(tableRows), len(wantMD), md)
	}
	for i := range wantMD {
		if tableRows[i] != wantMD[i] {
			t.Errorf("markdown row %d:\n got %s\nwant %s", i, tableRows[i], wantMD[i])
		}
	}
	for _, want := range []string{"| vt | 0 | 0.250 | 0.500 | 4 |", "| vt | 1 | 0.750 | n/a | 4 |", "Jaccard: overlap of the top 20% context tokens"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("markdown lacks the agreement line %q:\n%s", want, md)
		}
	}
	ag, err := os.ReadFile(filepath.Join(dir, files.AgreementCSV))
	if err != nil {
		t.Fatal(err)
	}
	if want := "task,primary_layer,jaccard_topk,spearman,questions\nvt,0,0.25,0.5,4\nvt,1,0.75,,4\n"; string(ag) != want {
		t.Errorf("agreement.csv:\n%s\nwant\n%s", ag, want)
	}
	if !strings.HasPrefix(string(md), "# Test-bed results\n") {
		t.Errorf("markdown does not start with the title: %q", md[:min(40, len(md))])
	}

	cf, err := os.Open(filepath.Join(dir, "results.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer cf.Close()
	recs, err := csv.NewReader(cf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	wantCSV := [][]string{
		CSVHeader,
		{"vt", "full", "", "4", "4", "80", "62.5", "95", "-", "100", "100", "0", "100", "0", "0", "30"},
		{"vt", "reuse", "", "4", "4", "20", "0", "40", "-", "25", "25", "1.25", "30", "0", "0", "5"},
		{"vt", "cacheclip", "0.1", "4", "3", "40", "12.5", "62.5", "-", "50", "50", "0.5", "60", "0", "0", "8.25"},
		{"vt", "cacheclip", "0.4", "4", "4", "75", "50", "100", "1:100;2:50", "93.75", "75", "0.125", "90", "1200", "1.5", "12"},
		{"vt", "cacheclip[aux_mode=cached]", "0.4", "4", "4", "50", "25", "75", "-", "62.5", "50", "0.25", "80", "0", "0", "10"},
		{"niah_single", "full", "", "2", "2", "0", "0", "0", "-", "", "100", "0", "100", "0", "0", "9"},
		{"niah_single", "reuse", "", "2", "2", "0", "0", "0", "-", "", "50", "0.03125", "75", "0", "0", "3"},
		{"multihop", "cacheblend", "0.2", "1", "1", "100", "", "", "-", "", "", "", "", "0", "", "7"},
	}
	if len(recs) != len(wantCSV) {
		t.Fatalf("csv has %d records, want %d: %v", len(recs), len(wantCSV), recs)
	}
	for i := range wantCSV {
		if strings.Join(recs[i], ",") != strings.Join(wantCSV[i], ",") {
			t.Errorf("csv record %d: got %q, want %q", i, recs[i], wantCSV[i])
		}
	}

	prs, err := parquet.ReadFile[ParquetRow](filepath.Join(dir, "results.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	if len(prs) != len(wantCSV)-1 {
		t.Fatalf("parquet has %d rows, want %d", len(prs), len(wantCSV)-1)
	}
	show := func(p *float64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatFloat(*p, 'f', -1, 64)
	}
	for i, pr := range prs {
		got := []string{pr.Task, pr.Method, show(pr.Ratio), strconv.Itoa(int(pr.Questions)), strconv.Itoa(int(pr.Answered)),
			show(&pr.Score), show(pr.ScoreLo), show(pr.ScoreHi), pr.ScoreBySeed, show(pr.PctOfFull), show(pr.SameAsFullPct), show(pr.KLFirstToken), show(pr.TokenAgreePct),
			strconv.FormatInt(pr.Recomputed, 10), show(pr.AuxP50ms), show(&pr.TTFTP50ms)}
		if strings.Join(got, ",") != strings.Join(wantCSV[i+1], ",") {
			t.Errorf("parquet row %d: got %q, want %q", i, got, wantCSV[i+1])
		}
	}

	wantPlots := []string{"quality-vt.png", "fidelity-vt.png", "ttft-vt.png", "quality-niah_single.png", "fidelity-niah_single.png",
		"ttft-niah_single.png", "quality-multihop.png", "fidelity-multihop.png", "ttft-multihop.png", "agreement.png"}
	if strings.Join(files.Plots, ",") != strings.Join(wantPlots, ",") {
		t.Errorf("plots %v, want %v", files.Plots, wantPlots)
	}
	for _, p := range wantPlots {
		f, err := os.Open(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Errorf("%s: not a PNG: %v", p, err)
			continue
		}
		if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
			t.Errorf("%s: image %v too small", p, b)
		}
	}
	// Atomic writes leave no temporary files behind.
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestEvalReportWriteErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		dir  func(t *testing.T) string
		rows []Row
		want string
	}{
		{"no rows", func(t *testing.T) string { return t.TempDir() }, nil, "no result rows"},
		{"dir is a file", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, handMade(), "report:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Write(context.Background(), tc.dir(t), Results{Rows: tc.rows})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestEvalReportOfFull(t *testing.T) {
	for _, tc := range []struct {
		score, full, want float64
	}{
		{50, 100, 50},
		{90, 60, 150},
		{0, 80, 0},
	} {
		if got := OfFull(tc.score, tc.full); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("OfFull(%v, %v) = %v, want %v", tc.score, tc.full, got, tc.want)
		}
	}
	for _, full := range []float64{0, math.NaN()} {
		if got := OfFull(10, full); !math.IsNaN(got) {
			t.Errorf("OfFull(10, %v) = %v, want NaN", full, got)
		}
	}
}

// TestEvalReportVariantColours: a method variant is its own line, so it gets
// its own colour, the same in every task's plots.
func TestEvalReportVariantColours(t *testing.T) {
	c := colourIndex(Sorted(handMade()))
	if len(c) != 5 {
		t.Fatalf("colour index %v, want 5 method variants", c)
	}
	seen := map[int]string{}
	for m, i := range c {
		if prev, ok := seen[i]; ok {
			t.Errorf("%s and %s share colour %d", prev, m, i)
		}
		seen[i] = m
	}
	if c["cacheclip"] == c["cacheclip[aux_mode=cached]"] {
		t.Errorf("cacheclip and its variant share a colour")
	}
}

// TestEvalReportDifferences: each ratio-taking run is paired with every
// ratio-free run and the other ratio-taking runs at its ratio; the verdict
// states a difference only where the interval leaves out 0.
func TestEvalReportDifferences(t *testing.T) {
	pq := func(k int) []float64 { // k of 20 questions right
		xs := make([]float64, 20)
		for i := range k {
			xs[i] = 1
		}
		return xs
	}
	rows := Sorted([]Row{
		{Task: "vt", Method: "full", RatioFree: true, Score: 100, PerQuestion: pq(20)},
		{Task: "vt", Method: "cacheblend", Ratio: 0.2, Score: 50, PerQuestion: pq(10)},
		{Task: "vt", Method: "cacheclip", Ratio: 0.2, Score: 95, PerQuestion: pq(19)},
		{Task: "vt", Method: "cacheclip", Ratio: 0.4, Score: 100, PerQuestion: pq(20)},
		{Task: "niah_single", Method: "cacheclip", Ratio: 0.2, Score: 50}, // no per-question scores: left out
	})
	ds := Differences(rows, 3)
	var got []string
	for _, d := range ds {
		got = append(got, fmt.Sprintf("%s-%s:%s", RunLabel(d.A), RunLabel(d.B), d.Verdict()))
	}
	want := []string{
		"cacheblend @ 0.2-full:full ahead",
		"cacheblend @ 0.2-cacheclip @ 0.2:cacheclip ahead",
		// 19 of 20 against 20 of 20: one question apart, within the interval.
		"cacheclip @ 0.2-full:no difference shown",
		"cacheclip @ 0.4-full:no difference shown",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("differences:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if d := ds[1]; d.Diff != -45 || d.Lo > -45 || d.Hi < -45 || d.Hi >= 0 {
		t.Errorf("cacheblend − cacheclip = %v [%v, %v], want -45 inside an interval below 0", d.Diff, d.Lo, d.Hi)
	}
	var b strings.Builder
	if err := DifferencesMarkdown(&b, ds); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "| vt | 0.2 | cacheblend | cacheclip @ 0.2 | -45.0 | [") {
		t.Errorf("markdown lacks the cacheblend − cacheclip row:\n%s", b.String())
	}
}

package suite

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cacheclip/eval"
)

// TestEvalConfigOverride checks that the YAML file sets the plan and that a
// flag given on the command line wins over it.
func TestEvalConfigOverride(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(p, []byte("tasks: [vt]\nmethods: [full, cacheblend]\nratios: [0.3]\nn: 5\nseed: 9\nchain_length: 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Default()
	if err := Load(p, &cfg); err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Tasks, ",") != "vt" || cfg.N != 5 || cfg.Seed != 9 || cfg.ChainLength != 5 || cfg.Model != "testdata/testbed/primary" {
		t.Errorf("config not applied over defaults: %+v", cfg)
	}
	var got []string
	for _, r := range cfg.Plan() {
		got = append(got, r.Name())
	}
	if strings.Join(got, ",") != "full,cacheblend-0.3" {
		t.Errorf("plan %v, want full,cacheblend-0.3", got)
	}
	// Full runs first whatever the order given, since fidelity needs its answers.
	cfg.Methods = []string{"cacheclip", "ape", "full"}
	cfg.Ratios = []float64{0.1, 0.4}
	got = nil
	for _, r := range cfg.Plan() {
		got = append(got, r.Name())
	}
	if strings.Join(got, ",") != "full,cacheclip-0.1,cacheclip-0.4,ape" {
		t.Errorf("plan %v, want full,cacheclip-0.1,cacheclip-0.4,ape", got)
	}
	if err := (&Config{Tasks: []string{"vt"}, Methods: []string{"cacheclip"}, Ratios: []float64{0.2}, Model: "m", Out: "o", N: 1,
		ContextTokens: 10, ChunkTokens: 5}).Validate(); err == nil || !strings.Contains(err.Error(), "aux") {
		t.Errorf("cacheclip without aux: err %v, want an aux error", err)
	}
}

func TestTokenAgreement(t *testing.T) {
	for _, tc := range []struct {
		a, ref []int32
		want   float64
	}{
		{nil, nil, 1},
		{[]int32{1, 2, 3}, []int32{1, 2, 3}, 1},
		{[]int32{1, 2}, []int32{1, 2, 3, 4}, 0.5},
		{[]int32{1, 9, 3}, []int32{1, 2, 3}, 2.0 / 3},
		{[]int32{5}, nil, 0},
	} {
		if got := tokenAgreement(tc.a, tc.ref); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("tokenAgreement(%v, %v) = %v, want %v", tc.a, tc.ref, got, tc.want)
		}
	}
}

// TestEvalVariants: method variants are runs of their own, named by their
// canonical form, with their parameters passed to the job; a bad variant is
// an error naming it and the key before any work.
func TestEvalVariants(t *testing.T) {
	cfg := Default()
	cfg.Methods = []string{"cacheclip[window=1, aux_mode=cached]", "full", "cacheclip", "cacheblend[rank_by=k]"}
	cfg.Ratios = []float64{0.2}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range cfg.Plan() {
		got = append(got, r.Name())
		if r.Variant == "cacheclip[aux_mode=cached,window=1]" && (r.Method != "cacheclip" || r.Params["aux_mode"] != "cached" || r.Params["window"] != "1") {
			t.Errorf("variant run %+v: want method cacheclip with aux_mode=cached, window=1", r)
		}
		if r.Variant == "cacheclip" && len(r.Params) != 0 {
			t.Errorf("plain cacheclip run has params %v", r.Params)
		}
	}
	want := "full,cacheclip@aux_mode=cached,window=1-0.2,cacheclip-0.2,cacheblend@rank_by=k-0.2"
	if strings.Join(got, ",") != want {
		t.Errorf("plan %v, want %s", got, want)
	}
	for _, tc := range []struct {
		methods []string
		want    string
	}{
		{[]string{"full", "cacheclip[windw=1]"}, `methods: "cacheclip[windw=1]": method_params.windw: unknown parameter`},
		{[]string{"cacheclip[aux_mode=warm]"}, "method_params.aux_mode"},
		{[]string{"cacheclip[window=2,reduce=max]", "cacheclip[reduce=max,window=2]"}, "are the same variant cacheclip[reduce=max,window=2]"},
		{[]string{"full", "full"}, "same variant full"},
		{[]string{"magic"}, `methods: "magic": method: "magic" is not one of`},
	} {
		c := Default()
		c.Methods = tc.methods
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("methods %q: err %v, want one containing %q", tc.methods, err, tc.want)
		}
	}
}

// TestScoreRunInterval: the score's 95% interval is the bootstrap's over the
// questions: a point when every question scores alike, and around the score
// otherwise; an unanswered question counts as wrong in both.
func TestScoreRunInterval(t *testing.T) {
	var exs []eval.Example
	refs := map[string][]string{}
	for i := range 40 {
		id := fmt.Sprintf("q%d", i)
		exs = append(exs, eval.Example{QueryID: id, Answers: []string{"blue"}})
		refs[id] = []string{"blue"}
	}
	answers := func(right, answered int) map[string]diagnostics {
		out := map[string]diagnostics{}
		for i := range answered {
			a := "red"
			if i < right {
				a = "blue"
			}
			out[fmt.Sprintf("q%d", i)] = diagnostics{Answer: a}
		}
		return out
	}
	run := Run{Method: "reuse", Variant: "reuse"}
	for _, tc := range []struct {
		name               string
		right, answered    int
		score, lo, hi, tol float64
	}{
		{"all right", 40, 40, 100, 100, 100, 0},
		{"all wrong", 0, 40, 0, 0, 0, 0},
		// p = 0.5 over 40: normal approximation 50 ± 1.96·√(0.25/40)·100 = 50 ± 15.5.
		{"half", 20, 40, 50, 34.5, 65.5, 3},
		// ten unanswered count as wrong: p = 0.5 again.
		{"half, ten unanswered", 20, 30, 50, 34.5, 65.5, 3},
	} {
		row, err := scoreRun("vt", run, exs, refs, answers(tc.right, tc.answered), nil, 2026)
		if err != nil {
			t.Fatal(err)
		}
		if row.Score != tc.score || math.Abs(row.ScoreLo-tc.lo) > tc.tol || math.Abs(row.ScoreHi-tc.hi) > tc.tol {
			t.Errorf("%s: score %v [%v, %v], want %v [%v, %v] ± %v", tc.name, row.Score, row.ScoreLo, row.ScoreHi, tc.score, tc.lo, tc.hi, tc.tol)
		}
	}
}

// TestShippedConfigs: every config file under eval/ loads with no unknown
// key and passes Validate, and the sweep plans full once plus each of its
// three ratio methods at all seven ratios.
func TestShippedConfigs(t *testing.T) {
	for _, name := range []string{"default.yaml", "smollm2.yaml", "sweep.yaml"} {
		cfg := Default()
		if err := Load(filepath.Join("..", name), &cfg); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if name != "sweep.yaml" {
			continue
		}
		perVariant := map[string]int{}
		for _, r := range cfg.Plan() {
			perVariant[r.Variant]++
		}
		want := map[string]int{"full": 1, "cacheblend": 7, "cacheclip[aux_mode=fresh]": 7, "cacheclip[aux_mode=cached]": 7}
		if fmt.Sprint(perVariant) != fmt.Sprint(want) {
			t.Errorf("sweep plan runs per variant %v, want %v", perVariant, want)
		}
	}
}

// TestSeedsDrawDistinctQuestions: each seed of seeds draws its own n
// questions (no query id, chunk id or question-and-context shared between
// seeds), in seed order, each seed's score is its own questions', and a seed
// given twice is refused before any work.
func TestSeedsDrawDistinctQuestions(t *testing.T) {
	cfg := Default()
	cfg.Seeds = []uint64{7, 8, 9}
	cfg.N = 6
	for _, task := range []string{eval.TaskNIAHMultiKey, eval.TaskVT} {
		exs, err := cfg.generate(context.Background(), eval.Config{Task: task, N: cfg.N, ContextTokens: 256, ChunkTokens: 64, Count: eval.ApproxTokens})
		if err != nil {
			t.Fatal(err)
		}
		if len(exs) != 18 {
			t.Fatalf("%s: %d questions, want 3 seeds × 6", task, len(exs))
		}
		ids, chunks, prompts := map[string]bool{}, map[string]uint64{}, map[string]uint64{}
		for i, e := range exs {
			if want := cfg.Seeds[i/6]; e.Seed != want {
				t.Fatalf("%s: question %d from seed %d, want %d", task, i, e.Seed, want)
			}
			if ids[e.QueryID] {
				t.Fatalf("%s: query id %s twice", task, e.QueryID)
			}
			ids[e.QueryID] = true
			var text strings.Builder
			for _, c := range e.Chunks {
				if s, ok := chunks[c.ID]; ok && s != e.Seed {
					t.Fatalf("%s: chunk id %s in seeds %d and %d", task, c.ID, s, e.Seed)
				}
				chunks[c.ID] = e.Seed
				text.WriteString(c.Text)
			}
			p := e.Question + "\x00" + text.String()
			if s, ok := prompts[p]; ok && s != e.Seed {
				t.Fatalf("%s: one question and context in seeds %d and %d", task, s, e.Seed)
			}
			prompts[p] = e.Seed
		}
		// Each seed's score counts its own questions only.
		per := make([]float64, len(exs))
		for i := range 6 {
			per[6+i] = 1 // seed 8 all right
		}
		per[0] = 1 // one of seed 7's six
		ss := seedScores(exs, per)
		if len(ss) != 3 || ss[0].Seed != 7 || ss[1].Seed != 8 || ss[2].Seed != 9 ||
			math.Abs(ss[0].Score-100.0/6) > 1e-9 || ss[1].Score != 100 || ss[2].Score != 0 {
			t.Fatalf("%s: seed scores %+v, want 7: 16.7, 8: 100, 9: 0", task, ss)
		}
	}
	cfg.Seeds = []uint64{7, 8, 7}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "seeds") {
		t.Fatalf("seeds 7, 8, 7: Validate gave %v, want an error naming seeds", err)
	}
}

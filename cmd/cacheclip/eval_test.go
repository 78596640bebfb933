package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"cacheclip/eval/report"
	"cacheclip/eval/suite"
	"cacheclip/jobs"
	"cacheclip/model/testmodel"
)

func writeTestModels(t *testing.T, dir string) (primary, aux string) {
	t.Helper()
	specs := map[string]testmodel.Spec{}
	for _, s := range testmodel.Variants() {
		specs[s.Name] = s
	}
	primary, aux = filepath.Join(dir, "primary"), filepath.Join(dir, "aux")
	if err := testmodel.Write(primary, specs["qwen2"]); err != nil {
		t.Fatal(err)
	}
	if err := testmodel.Write(aux, specs["smollm2"]); err != nil {
		t.Fatal(err)
	}
	return primary, aux
}

// TestEvalEndToEnd runs the real job path on random test models: the answers
// are noise, but every run must complete, full must agree with itself, and
// the report must list exactly the planned runs.
func TestEvalEndToEnd(t *testing.T) {
	dir := t.TempDir()
	primary, aux := writeTestModels(t, dir)
	out := filepath.Join(dir, "out")
	var stdout, stderr bytes.Buffer
	code := cmdEval(context.Background(), []string{"--tasks", "niah_single", "--methods", "cacheclip,full,reuse,cacheclip[window=1,aux_mode=cached]", "--ratios", "0.2",
		"--model", primary, "--aux", aux, "--n", "2", "--context-tokens", "192", "--chunk-tokens", "64", "--max-new-tokens", "3",
		"--seed", "7", "--out", out, "--progress", "none", "--agreement-n", "2"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	for _, p := range []string{"data/niah_single/questions.parquet", "data/niah_single/corpus.parquet", "runs/niah_single/full",
		"runs/niah_single/reuse", "runs/niah_single/cacheclip-0.2", "runs/niah_single/cacheclip@aux_mode=cached,window=1-0.2", "runs/niah_single/full.log", "results.md", "results.csv", "results.parquet", "eval-config.yaml"} {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Errorf("missing output: %v", err)
		}
	}
	for _, p := range []string{"quality-niah_single.png", "fidelity-niah_single.png", "ttft-niah_single.png", "agreement.png"} {
		f, err := os.Open(filepath.Join(out, p))
		if err != nil {
			t.Errorf("missing plot: %v", err)
			continue
		}
		if _, err := png.Decode(f); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		f.Close()
	}
	recs := readCSV(t, filepath.Join(out, "results.csv"))
	if len(recs) != 5 || strings.Join(recs[0], ",") != strings.Join(report.CSVHeader, ",") {
		t.Fatalf("csv records %q, want the header and 4 runs", recs)
	}
	wantRuns := [][3]string{{"niah_single", "full", ""}, {"niah_single", "reuse", ""}, {"niah_single", "cacheclip", "0.2"},
		{"niah_single", "cacheclip[aux_mode=cached,window=1]", "0.2"}}
	for i, w := range wantRuns {
		r := recs[i+1]
		if r[0] != w[0] || r[1] != w[1] || r[2] != w[2] {
			t.Errorf("csv row %d = %q, want task/method/ratio %q", i+1, r, w)
		}
		if r[3] != "2" || r[4] != "2" {
			t.Errorf("csv row %d: questions/answered %s/%s, want 2/2", i+1, r[3], r[4])
		}
	}
	col := func(name string) int { return slices.Index(report.CSVHeader, name) }
	same, kl, agree := col("same_as_full_pct"), col("kl_first_token"), col("token_agree_pct")
	// full against itself: identical answers, every token agrees, KL 0.
	if recs[1][same] != "100" || recs[1][kl] != "0" || recs[1][agree] != "100" {
		t.Errorf("full's same-as-full/KL/token agreement = %q/%q/%q, want 100/0/100", recs[1][same], recs[1][kl], recs[1][agree])
	}
	// Every score lies in its 95% interval.
	for _, r := range recs[1:] {
		sc, errS := strconv.ParseFloat(r[5], 64)
		lo, errL := strconv.ParseFloat(r[6], 64)
		hi, errH := strconv.ParseFloat(r[7], 64)
		if errS != nil || errL != nil || errH != nil || lo > sc || sc > hi || lo < 0 || hi > 100 {
			t.Errorf("csv row %q: score %s not within its interval [%s, %s]", r, r[5], r[6], r[7])
		}
	}
	// Every other run has a KL and a token agreement (the random models
	// answer differently under reuse, so they are not checked for a value).
	for _, r := range recs[2:] {
		if r[kl] == "" || r[agree] == "" {
			t.Errorf("csv row %q: no KL or token agreement", r)
		}
	}
	ag, err := os.ReadFile(filepath.Join(out, "agreement.csv"))
	if err != nil {
		t.Fatal(err)
	}
	// header + one row per primary layer (the qwen2 test model has 3)
	if lines := strings.Split(strings.TrimSpace(string(ag)), "\n"); len(lines) != 4 || !strings.HasPrefix(lines[1], "niah_single,0,") ||
		!strings.HasSuffix(lines[3], ",2") {
		t.Errorf("agreement.csv:\n%s", ag)
	}
	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(md), "\n") {
		if strings.HasPrefix(l, "| niah_single | ") && strings.Count(l, "|") == len(report.CSVHeader)-1 { // the results table: the CSV columns with questions/answered and score_lo/hi merged (len-2 columns, len-1 pipes), not the agreement's
			n++
		}
	}
	if n != 4 {
		t.Errorf("results.md has %d niah_single rows, want 4:\n%s", n, md)
	}
	// The recorded settings reproduce the plan when fed back as --config.
	cfg := suite.Default()
	if err := suite.Load(filepath.Join(out, suite.ConfigFile), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Model != primary || cfg.N != 2 || cfg.Seed != 7 || cfg.MaxNewTokens != 3 || strings.Join(cfg.Methods, ",") != "cacheclip,full,reuse,cacheclip[window=1,aux_mode=cached]" {
		t.Errorf("eval-config.yaml does not record the run's settings: %+v", cfg)
	}
	if !strings.Contains(stdout.String(), "| niah_single | cacheclip | 0.2 | 2/2 |") {
		t.Errorf("stdout lacks the cacheclip row:\n%s", stdout.String())
	}
}

func TestEvalBadConfig(t *testing.T) {
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo.yaml")
	if err := os.WriteFile(typo, []byte("taks: [vt]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown task", []string{"--tasks", "nope"}, `tasks: "nope" is not one of`},
		{"unknown method", []string{"--methods", "full,magic"}, `methods: "magic"`},
		{"unknown variant key", []string{"--methods", "full,cacheclip[windw=1,reduce=max]"}, `methods: "cacheclip[windw=1,reduce=max]": method_params.windw: unknown parameter`},
		{"variant value out of range", []string{"--methods", "cacheclip[window=0]"}, "method_params.window: 0 is not an integer in [1, inf)"},
		{"ratio out of range", []string{"--ratios", "1.5"}, "ratios: 1.5 is not in [0, 1]"},
		{"ratio not a number", []string{"--ratios", "x"}, `--ratios: "x"`},
		{"no questions", []string{"--n", "0"}, "n: 0"},
		{"agreement ratio", []string{"--agreement-ratio", "0"}, "agreement_ratio"},
		{"misspelt config key", []string{"--config", typo}, "field taks not found"},
		{"missing config", []string{"--config", filepath.Join(dir, "none.yaml")}, "config:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := cmdEval(context.Background(), append(tc.args, "--out", filepath.Join(dir, "out")), &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit 2 and %q", code, stderr.String(), tc.want)
			}
		})
	}
}

// TestEvalChainLength: --chain-length reaches the generator (RULER's vt has five variables).
func TestEvalChainLength(t *testing.T) {
	dir := t.TempDir()
	primary, _ := writeTestModels(t, dir)
	out := filepath.Join(dir, "out")
	var stdout, stderr bytes.Buffer
	code := cmdEval(context.Background(), []string{"--tasks", "vt", "--methods", "full", "--model", primary, "--aux", "",
		"--n", "2", "--context-tokens", "640", "--chunk-tokens", "128", "--max-new-tokens", "2", "--chain-length", "5",
		"--out", out, "--progress", "none", "--agreement-n", "0"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	r, err := jobs.OpenQuestions(filepath.Join(out, "data", "vt", "questions.parquet"), jobs.QuestionsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	qs, err := r.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) != 2 {
		t.Fatalf("%d questions, want 2", len(qs))
	}
	for _, q := range qs {
		if len(q.Answers) != 5 {
			t.Errorf("%s: answers %v, want a chain of 5", q.QueryID, q.Answers)
		}
	}
}

func TestEvalFlagOverridesConfig(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(p, []byte("tasks: [nope]\nn: 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	// The file's bad keys are replaced by flags, so validation passes and the
	// run fails later, on the missing model (exit 1, not 2).
	code := cmdEval(context.Background(), []string{"--config", p, "--tasks", "vt", "--n", "1",
		"--model", filepath.Join(dir, "no-model"), "--out", filepath.Join(dir, "out")}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "no-model") {
		t.Fatalf("exit %d, stderr %q; want exit 1 naming the model directory", code, stderr.String())
	}
}

// TestTestbedTellsMethodsApart holds the shipped test-bed pair, through the real job path and
// on questions generated with a seed `make eval` does not use, to issue 6's bar: under full, at
// least 95 on single-needle retrieval and on variable tracking (RULER's vt, one chain) at 1,024
// tokens in 8 chunks; and reuse (no cross-chunk attention) at least 10 points below full on
// variable tracking, so that the test bed tells the methods apart.
func TestTestbedTellsMethodsApart(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	var stdout, stderr bytes.Buffer
	code := cmdEval(context.Background(), []string{"--tasks", "niah_single,vt", "--methods", "full,reuse",
		"--model", "../../testdata/testbed/primary", "--aux", "../../testdata/testbed/aux", "--n", "40",
		"--context-tokens", "1024", "--chunk-tokens", "128", "--seed", "4242", "--agreement-n", "0",
		"--out", out, "--progress", "none"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	score := map[string]float64{}
	for _, r := range readCSV(t, filepath.Join(out, "results.csv"))[1:] {
		s, err := strconv.ParseFloat(r[5], 64)
		if err != nil {
			t.Fatalf("score %q: %v", r[5], err)
		}
		score[r[0]+"/"+r[1]] = s
	}
	t.Logf("scores: %v", score)
	if score["niah_single/full"] < 95 {
		t.Errorf("niah_single: full scores %.1f, want at least 95", score["niah_single/full"])
	}
	if score["vt/full"] < 95 {
		t.Errorf("vt: full scores %.1f, want at least 95", score["vt/full"])
	}
	if score["vt/reuse"] > score["vt/full"]-10 {
		t.Errorf("vt: reuse %.1f against full %.1f; want reuse at least 10 points worse", score["vt/reuse"], score["vt/full"])
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return recs
}

// The labeling task runs every planned run as a label job over the task's
// questions in multiple-choice form: full agrees with itself on every label
// and gives its own label a probability above chance, and the report lists
// one labeling row per run.
func TestEvalLabelTask(t *testing.T) {
	dir := t.TempDir()
	primary, aux := writeTestModels(t, dir)
	out := filepath.Join(dir, "out")
	var stdout, stderr bytes.Buffer
	code := cmdEval(context.Background(), []string{"--tasks", "niah_single", "--label-tasks", "vt_distractor", "--methods", "full,reuse,cacheclip", "--ratios", "0.2",
		"--model", primary, "--aux", aux, "--n", "3", "--context-tokens", "192", "--chunk-tokens", "64", "--max-new-tokens", "2",
		"--seed", "5", "--out", out, "--progress", "none", "--agreement-n", "0"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, l := range strings.Split(string(md), "\n") {
		if strings.HasPrefix(l, "| vt_distractor | ") {
			rows = append(rows, l)
		}
	}
	if len(rows) != 3 || !strings.Contains(string(md), "## Labeling task") {
		t.Fatalf("results.md labeling rows %q:\n%s", rows, md)
	}
	f := strings.Split(rows[0], "|")
	// | task | method | ratio | choices | answered | accuracy | agree | P(full) | ttft |
	if strings.TrimSpace(f[2]) != "full" || strings.TrimSpace(f[4]) != "4" || strings.TrimSpace(f[5]) != "3/3" || strings.TrimSpace(f[7]) != "100.0" {
		t.Errorf("full's labeling row %q", rows[0])
	}
	if p, err := strconv.ParseFloat(strings.TrimSpace(f[8]), 64); err != nil || !(p > 0.25 && p <= 1) {
		t.Errorf("full gives its own label probability %q, want above chance (0.25)", f[8])
	}
	if !strings.Contains(rows[2], "| cacheclip | 0.2 |") || !strings.Contains(stdout.String(), "## Labeling task") {
		t.Errorf("cacheclip row %q or stdout table missing", rows[2])
	}
}

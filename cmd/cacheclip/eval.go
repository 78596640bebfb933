package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"cacheclip/eval"
	"cacheclip/eval/agree"
	"cacheclip/eval/report"
	"cacheclip/jobs"
	"cacheclip/loader"
	"cacheclip/prefill"
	"cacheclip/prefill/auxscore"
	"cacheclip/progress"
)

// evalConfig is the --config file; flags given on the command line override it.
type evalConfig struct {
	Tasks         []string  `yaml:"tasks"`
	Methods       []string  `yaml:"methods"`
	Ratios        []float64 `yaml:"ratios"`
	Model         string    `yaml:"model"`
	Aux           string    `yaml:"aux"`
	Device        string    `yaml:"device"` // --device of every run: auto, cpu, cuda, cuda:N
	N             int       `yaml:"n"`
	ContextTokens int       `yaml:"context_tokens"`
	ChunkTokens   int       `yaml:"chunk_tokens"`
	MaxNewTokens  int       `yaml:"max_new_tokens"`
	// ChainLength: variables per chain of vt and vt_distractor (0: the generator's 4;
	// RULER's num_hops 4 is 5 variables).
	ChainLength int    `yaml:"chain_length"`
	Seed        uint64 `yaml:"seed"`
	Out         string `yaml:"out"`
	// Haystack: noise (default), needle, or text: sentences of the real
	// documents TextSources (files; relative paths from the working directory).
	Haystack    string   `yaml:"haystack"`
	TextSources []string `yaml:"text_sources"`
	// AgreementN questions per task go into the attention-agreement analysis
	// (0: none); AgreementRatio sets its top-k.
	AgreementN     int     `yaml:"agreement_n"`
	AgreementRatio float64 `yaml:"agreement_ratio"`
	// LabelTasks are run again in multiple-choice form as label jobs with
	// LabelChoices choices each (evalLabelTask).
	LabelTasks   []string `yaml:"label_tasks"`
	LabelChoices int      `yaml:"label_choices"`
}

// ratioFree methods do not take a recompute ratio, so they run once per task.
var ratioFree = map[string]bool{"full": true, "reuse": true, "ape": true}

var evalMethods = []string{"full", "reuse", "ape", "cacheblend", "cacheclip"}

func defaultEvalConfig() evalConfig {
	return evalConfig{
		Tasks:          []string{eval.TaskNIAHSingle, eval.TaskVT},
		Methods:        slices.Clone(evalMethods),
		Ratios:         []float64{0.1, 0.2, 0.4},
		Model:          "testdata/testbed/primary",
		Aux:            "testdata/testbed/aux",
		Device:         "auto",
		N:              16,
		ContextTokens:  1024,
		ChunkTokens:    128,
		Seed:           2026,
		Out:            "out/eval",
		AgreementN:     16,
		AgreementRatio: 0.2,
		LabelChoices:   4,
	}
}

func loadEvalConfig(path string, c *evalConfig) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // a misspelt key must not silently fall back to a default
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

func (c *evalConfig) validate() error {
	if len(c.Tasks) == 0 {
		return errors.New("tasks: none given")
	}
	for _, t := range c.Tasks {
		if !slices.Contains(eval.Tasks, t) {
			return fmt.Errorf("tasks: %q is not one of %s", t, strings.Join(eval.Tasks, ", "))
		}
	}
	for _, t := range c.LabelTasks {
		if !slices.Contains(eval.Tasks, t) {
			return fmt.Errorf("label_tasks: %q is not one of %s", t, strings.Join(eval.Tasks, ", "))
		}
	}
	if len(c.LabelTasks) > 0 && c.LabelChoices < 2 {
		return fmt.Errorf("label_choices: %d, want at least 2", c.LabelChoices)
	}
	if len(c.Methods) == 0 {
		return errors.New("methods: none given")
	}
	needRatio := false
	for _, m := range c.Methods {
		if !slices.Contains(evalMethods, m) {
			return fmt.Errorf("methods: %q is not one of %s", m, strings.Join(evalMethods, ", "))
		}
		needRatio = needRatio || !ratioFree[m]
	}
	if needRatio && len(c.Ratios) == 0 {
		return errors.New("ratios: none given for a method that takes one")
	}
	for _, r := range c.Ratios {
		if !(r >= 0 && r <= 1) {
			return fmt.Errorf("ratios: %v is not in [0,1]", r)
		}
	}
	switch {
	case c.N < 1:
		return fmt.Errorf("n: %d, want at least 1", c.N)
	case c.ContextTokens < 1 || c.ChunkTokens < 1:
		return fmt.Errorf("context_tokens %d / chunk_tokens %d: both must be positive", c.ContextTokens, c.ChunkTokens)
	case c.AgreementN < 0 || c.AgreementN > 0 && !(c.AgreementRatio > 0 && c.AgreementRatio <= 1):
		return fmt.Errorf("agreement_n %d / agreement_ratio %v: want n >= 0 and a ratio in (0,1]", c.AgreementN, c.AgreementRatio)
	case c.AgreementN > 0 && c.Aux == "":
		return errors.New("aux: required by the attention-agreement analysis (set agreement_n: 0 to skip it)")
	case c.MaxNewTokens < 0:
		return fmt.Errorf("max_new_tokens: %d is negative", c.MaxNewTokens)
	case c.ChainLength < 0 || c.ChainLength == 1:
		return fmt.Errorf("chain_length: %d, want 0 (the default) or at least 2", c.ChainLength)
	case c.Model == "" || c.Out == "":
		return errors.New("model and out are required")
	case c.Aux == "" && slices.Contains(c.Methods, "cacheclip"):
		return errors.New("aux: required by method cacheclip")
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// evalRun is one job of the plan.
type evalRun struct {
	method string
	ratio  float64
}

func (r evalRun) name() string {
	if ratioFree[r.method] {
		return r.method
	}
	return r.method + "-" + strconv.FormatFloat(r.ratio, 'f', -1, 64)
}

func evalPlan(c evalConfig) []evalRun {
	var runs []evalRun
	// full first: fidelity of every other run is measured against its answers.
	methods := slices.Clone(c.Methods)
	slices.SortStableFunc(methods, func(a, b string) int {
		return boolInt(b == "full") - boolInt(a == "full")
	})
	for _, m := range methods {
		if ratioFree[m] {
			runs = append(runs, evalRun{method: m})
			continue
		}
		for _, r := range c.Ratios {
			runs = append(runs, evalRun{method: m, ratio: r})
		}
	}
	return runs
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// cmdEval is `cacheclip eval`: for each task, generate a dataset, build its
// shards once, run every method × ratio through the real job path, score the
// answers and write the report (docs/EVALUATION.md).
func cmdEval(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := defaultEvalConfig()
	configPath := fs.String("config", "", "YAML file with the keys below (tasks, methods, ratios, model, aux, device, n, context_tokens, chunk_tokens, max_new_tokens, chain_length, seed, out, agreement_n, agreement_ratio, label_tasks, label_choices); flags override it")
	tasksFlag := fs.String("tasks", strings.Join(d.Tasks, ","), "comma-separated tasks: "+strings.Join(eval.Tasks, ", "))
	methodsFlag := fs.String("methods", strings.Join(d.Methods, ","), "comma-separated methods: "+strings.Join(evalMethods, ", "))
	ratiosFlag := fs.String("ratios", "0.1,0.2,0.4", "comma-separated recompute ratios for cacheblend and cacheclip")
	modelFlag := fs.String("model", d.Model, "primary model directory")
	auxFlag := fs.String("aux", d.Aux, "auxiliary model directory (cacheclip)")
	deviceFlag := fs.String("device", d.Device, "where every run's primary model runs: auto, cpu, cuda or cuda:N")
	nFlag := fs.Int("n", d.N, "questions per task")
	ctxFlag := fs.Int("context-tokens", d.ContextTokens, "target context length per question, in the primary's tokens")
	chunkFlag := fs.Int("chunk-tokens", d.ChunkTokens, "target tokens per chunk")
	maxNewFlag := fs.Int("max-new-tokens", 0, "answer token limit (0: the task's default)")
	chainFlag := fs.Int("chain-length", 0, "variables per variable-tracking chain (0: 4; RULER's default is 5)")
	seedFlag := fs.Uint64("seed", d.Seed, "generator seed")
	outFlag := fs.String("out", d.Out, "output directory (data, shards, runs, report)")
	agreeNFlag := fs.Int("agreement-n", d.AgreementN, "questions per task in the attention-agreement analysis (0: skip it)")
	labelTasksFlag := fs.String("label-tasks", "", "comma-separated tasks also run in multiple-choice form as label jobs")
	agreeRatioFlag := fs.Float64("agreement-ratio", d.AgreementRatio, "top-k share of context tokens for the agreement's Jaccard")
	progressMode := fs.String("progress", "auto", "progress display: auto, bar, log or none")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(code int, err error) int { fmt.Fprintf(stderr, "cacheclip eval: %v\n", err); return code }
	if fs.NArg() > 0 {
		return fail(2, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	cfg := d
	if *configPath != "" {
		if err := loadEvalConfig(*configPath, &cfg); err != nil {
			return fail(2, err)
		}
	}
	var perr error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "tasks":
			cfg.Tasks = splitList(*tasksFlag)
		case "methods":
			cfg.Methods = splitList(*methodsFlag)
		case "ratios":
			cfg.Ratios = nil
			for _, s := range splitList(*ratiosFlag) {
				r, err := strconv.ParseFloat(s, 64)
				if err != nil {
					perr = fmt.Errorf("--ratios: %q: %w", s, err)
					return
				}
				cfg.Ratios = append(cfg.Ratios, r)
			}
		case "model":
			cfg.Model = *modelFlag
		case "aux":
			cfg.Aux = *auxFlag
		case "device":
			cfg.Device = *deviceFlag
		case "n":
			cfg.N = *nFlag
		case "context-tokens":
			cfg.ContextTokens = *ctxFlag
		case "chunk-tokens":
			cfg.ChunkTokens = *chunkFlag
		case "max-new-tokens":
			cfg.MaxNewTokens = *maxNewFlag
		case "chain-length":
			cfg.ChainLength = *chainFlag
		case "seed":
			cfg.Seed = *seedFlag
		case "out":
			cfg.Out = *outFlag
		case "agreement-n":
			cfg.AgreementN = *agreeNFlag
		case "agreement-ratio":
			cfg.AgreementRatio = *agreeRatioFlag
		case "label-tasks":
			cfg.LabelTasks = splitList(*labelTasksFlag)
		}
	})
	if perr != nil {
		return fail(2, perr)
	}
	if err := cfg.validate(); err != nil {
		return fail(2, err)
	}
	mode, err := progress.ParseMode(*progressMode)
	if err != nil {
		return fail(2, err)
	}
	if err := writeEvalConfig(cfg); err != nil {
		return fail(1, err)
	}
	res, err := runEval(ctx, cfg, mode, stderr)
	if err != nil {
		return fail(1, err)
	}
	res.Title = fmt.Sprintf("cacheclip eval: %s (aux %s), %d questions per task, %d-token contexts in %d-token chunks, seed %d",
		cfg.Model, cfg.Aux, cfg.N, cfg.ContextTokens, cfg.ChunkTokens, cfg.Seed)
	files, err := report.Write(ctx, cfg.Out, res)
	if err != nil {
		return fail(1, err)
	}
	if err := report.Markdown(stdout, "", report.Sorted(res.Rows)); err != nil {
		return fail(1, err)
	}
	if err := report.LabelMarkdown(stdout, res.Labels); err != nil {
		return fail(1, err)
	}
	if err := report.AgreementMarkdown(stdout, res.Agreement, res.TopK); err != nil {
		return fail(1, err)
	}
	fmt.Fprintf(stdout, "\nreport: %s, %s, %s and %d plots in %s\n", files.Markdown, files.CSV, files.Parquet, len(files.Plots), cfg.Out)
	return 0
}

// writeEvalConfig records the effective settings next to the report, so a
// table can be traced to the exact run (`--config OUT/eval-config.yaml` repeats it).
func writeEvalConfig(cfg evalConfig) error {
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("effective config: %w", err)
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	path := filepath.Join(cfg.Out, "eval-config.yaml")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("effective config %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("effective config %s: %w", path, err)
	}
	return nil
}

// runEval runs the whole plan: one report row per (task, run), then the
// attention-agreement analysis of the pair on each task's first questions.
func runEval(ctx context.Context, cfg evalConfig, mode progress.Mode, stderr io.Writer) (report.Results, error) {
	var res report.Results
	count, err := tokenCounter(cfg.Model)
	if err != nil {
		return res, err
	}
	plan := evalPlan(cfg)
	total := len(plan) * (len(cfg.Tasks) + len(cfg.LabelTasks))
	if cfg.AgreementN > 0 {
		total += len(cfg.Tasks)
	}
	bar := progress.New(progress.Options{Mode: mode, Description: "eval runs", Unit: "runs",
		Total: int64(total), Out: stderr, Logger: progress.NewLogger(stderr, "text", slog.LevelInfo)})
	defer bar.Done()
	examples := map[string][]eval.Example{}
	for _, task := range cfg.Tasks {
		tr, exs, err := evalTask(ctx, cfg, task, plan, count, bar)
		if err != nil {
			return res, fmt.Errorf("task %s: %w", task, err)
		}
		res.Rows = append(res.Rows, tr...)
		examples[task] = exs
	}
	for _, task := range cfg.LabelTasks {
		lr, err := evalLabelTask(ctx, cfg, task, plan, count, bar)
		if err != nil {
			return res, fmt.Errorf("label task %s: %w", task, err)
		}
		res.Labels = append(res.Labels, lr...)
	}
	if cfg.AgreementN == 0 {
		return res, nil
	}
	res.TopK = fmt.Sprintf("top %g%%", 100*cfg.AgreementRatio)
	p, err := loader.Open(cfg.Model, "")
	if err != nil {
		return res, fmt.Errorf("model %s: %w", cfg.Model, err)
	}
	defer p.Close()
	a, err := loader.Open(cfg.Aux, "")
	if err != nil {
		return res, fmt.Errorf("aux %s: %w", cfg.Aux, err)
	}
	defer a.Close()
	for _, task := range cfg.Tasks {
		ag, err := evalAgreement(ctx, cfg, p, a, task, examples[task])
		if err != nil {
			return res, fmt.Errorf("task %s: attention agreement: %w", task, err)
		}
		res.Agreement = append(res.Agreement, ag...)
		bar.Add(1)
	}
	return res, nil
}

// evalAgreement compares the auxiliary's last-layer attention with each
// primary layer's on the task's first AgreementN questions.
func evalAgreement(ctx context.Context, cfg evalConfig, p, a *loader.Bundle, task string, exs []eval.Example) ([]report.Agreement, error) {
	scorer := &auxscore.Scorer{Model: a.Model, Layouter: a}
	qs := make([]prefill.Query, 0, cfg.AgreementN)
	for _, ex := range exs[:min(len(exs), cfg.AgreementN)] {
		q := prefill.Query{Question: ex.Question}
		for _, c := range ex.Chunks {
			q.Chunks = append(q.Chunks, c.Text)
		}
		qs = append(qs, q)
	}
	means, err := agree.Average(ctx, p.Model, p, scorer, qs, cfg.AgreementRatio)
	if err != nil {
		return nil, err
	}
	out := make([]report.Agreement, len(means))
	for i, m := range means {
		out[i] = report.Agreement{Task: task, Layer: m.Layer, Jaccard: m.Jaccard, Spearman: m.Spearman, Questions: m.Questions}
	}
	return out, nil
}

// tokenCounter counts with the primary's tokenizer, so that context and chunk
// targets are in the tokens the engine will see.
func tokenCounter(modelDir string) (eval.TokenCounter, error) {
	b, err := loader.Open(modelDir, "")
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", modelDir, err)
	}
	// The tokenizer outlives the bundle's weights: only it is kept.
	b.Close()
	return b.CountTokens, nil
}

func evalTask(ctx context.Context, cfg evalConfig, task string, plan []evalRun, count eval.TokenCounter, bar progress.Reporter) ([]report.Row, []eval.Example, error) {
	var text []string
	if len(cfg.TextSources) > 0 {
		var err error
		if text, err = eval.ReadTextSources(cfg.TextSources); err != nil {
			return nil, nil, err
		}
	}
	exs, err := eval.Generate(ctx, eval.Config{Task: task, N: cfg.N, Seed: cfg.Seed, ContextTokens: cfg.ContextTokens,
		ChunkTokens: cfg.ChunkTokens, MaxNewTokens: cfg.MaxNewTokens, ChainLength: cfg.ChainLength, Count: count,
		Haystack: cfg.Haystack, Text: text})
	if err != nil {
		return nil, nil, err
	}
	data := filepath.Join(cfg.Out, "data", task)
	// Recreated: shards and answers of an earlier eval with other settings
	// must not be mistaken for this one's.
	for _, dir := range []string{data, filepath.Join(cfg.Out, "runs", task)} {
		if err := os.RemoveAll(dir); err != nil {
			return nil, nil, err
		}
	}
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, nil, err
	}
	q, c := filepath.Join(data, "questions.parquet"), filepath.Join(data, "corpus.parquet")
	if err := eval.WriteDataset(ctx, q, c, exs); err != nil {
		return nil, nil, err
	}
	store := filepath.Join(data, "shards")
	var shardLog bytes.Buffer
	if code := cmdShards(ctx, []string{"build", "--store", store, "--corpus", c, "--model", cfg.Model}, &shardLog, &shardLog); code != 0 {
		return nil, nil, fmt.Errorf("building shards exited %d: %s", code, lastLines(shardLog.String(), 5))
	}
	refs := map[string][]string{}
	for _, e := range exs {
		refs[e.QueryID] = e.Answers
	}
	var rows []report.Row
	var full map[string]diagnostics
	for _, r := range plan {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		out := filepath.Join(cfg.Out, "runs", task, r.name())
		logPath := out + ".log"
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return nil, nil, err
		}
		logf, err := os.Create(logPath)
		if err != nil {
			return nil, nil, err
		}
		start := time.Now()
		code := cmdRun(ctx, []string{"--questions", q, "--corpus", c, "--store", store, "--model", cfg.Model, "--aux", cfg.Aux,
			"--method", r.method, "--ratio", strconv.FormatFloat(r.ratio, 'f', -1, 64), "--out", out,
			"--device", cfg.Device, "--progress", "none", "--log-format", "json", "--diagnostics"}, logf, logf)
		fmt.Fprintf(logf, "{\"eval_wall_s\":%.3f}\n", time.Since(start).Seconds())
		logf.Close()
		if code != 0 && code != int(jobs.ExitPartial) {
			return nil, nil, fmt.Errorf("run %s exited %d (log: %s)", r.name(), code, logPath)
		}
		ds, err := jobs.MergeStats(out)
		if err != nil {
			return nil, nil, fmt.Errorf("run %s: %w", r.name(), err)
		}
		ans, err := readDiagnostics(out)
		if err != nil {
			return nil, nil, fmt.Errorf("run %s: %w", r.name(), err)
		}
		if r.method == "full" {
			full = ans
		}
		row := report.Row{Task: task, Method: r.method, Ratio: r.ratio, RatioFree: ratioFree[r.method],
			Questions: len(exs), Answered: len(ans), SameAsFull: math.NaN(), KLFirst: math.NaN(), TokenAgree: math.NaN(),
			TTFTP50ms: ds.Stats.TTFT.P50}
		var score, same, agreeSum, klSum float64
		klN := 0
		for _, e := range exs {
			// An unanswered question scores 0 (and agrees with nothing) rather
			// than being left out, so a method cannot gain by failing rows.
			a, ok := ans[e.QueryID]
			if ok {
				score += eval.MatchAll(a.Answer, refs[e.QueryID])
			}
			f, fok := full[e.QueryID]
			if !ok || !fok {
				continue
			}
			if a.Answer == f.Answer {
				same++
			}
			agreeSum += tokenAgreement(a.IDs, f.IDs)
			if len(a.LogProbs) > 0 && len(f.LogProbs) > 0 {
				kl, err := eval.KLFromLogits(f.LogProbs, a.LogProbs)
				if err != nil {
					return nil, nil, fmt.Errorf("run %s: question %s: %w", r.name(), e.QueryID, err)
				}
				klSum += kl
				klN++
			}
		}
		row.Score = 100 * score / float64(len(exs))
		if full != nil {
			row.SameAsFull = 100 * same / float64(len(exs))
			row.TokenAgree = 100 * agreeSum / float64(len(exs))
			if klN > 0 {
				row.KLFirst = klSum / float64(klN)
			}
		}
		rows = append(rows, row)
		bar.Add(1)
	}
	return rows, exs, nil
}

// diagnostics is one answered question of a run written with --diagnostics.
type diagnostics struct {
	Answer   string
	IDs      []int32
	LogProbs []float32
}

// readDiagnostics reads a run's answers with their diagnostic columns (the
// greedy token ids and the first answer token's log-probabilities).
func readDiagnostics(dir string) (map[string]diagnostics, error) {
	type row struct {
		QueryID  string    `parquet:"query_id"`
		Answer   *string   `parquet:"answer,optional"`
		IDs      []int32   `parquet:"answer_token_ids"`
		LogProbs []float32 `parquet:"first_token_logprobs"`
	}
	rows, err := readParts[row](dir)
	if err != nil {
		return nil, err
	}
	out := map[string]diagnostics{}
	for _, x := range rows {
		if x.Answer != nil {
			out[x.QueryID] = diagnostics{Answer: *x.Answer, IDs: x.IDs, LogProbs: x.LogProbs}
		}
	}
	return out, nil
}

// tokenAgreement is the share of positions at which two greedy answers hold
// the same token, over the longer answer: 1 for two empty answers.
func tokenAgreement(a, ref []int32) float64 {
	n := max(len(a), len(ref))
	if n == 0 {
		return 1
	}
	same := 0
	for i := range min(len(a), len(ref)) {
		if a[i] == ref[i] {
			same++
		}
	}
	return float64(same) / float64(n)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Package suite runs `cacheclip eval`: every task × method × ratio through the
// real job path (runner, with a jobs.Spec), the answers scored by package eval,
// and the attention agreement; the command only parses flags. It is apart
// from package eval so that eval's generators and scorers stay free of the
// job runner (whose tests use them).
package suite

import (
	"bytes"
	"context"
	"errors"
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
	"cacheclip/eval/bootstrap"
	"cacheclip/eval/report"
	"cacheclip/internal/atomicfile"
	"cacheclip/jobs"
	"cacheclip/kvshards"
	"cacheclip/loader"
	"cacheclip/methods"
	"cacheclip/prefill"
	"cacheclip/prefill/auxscore"
	"cacheclip/progress"
	"cacheclip/runner"
)

// Config is one `cacheclip eval`: every task × method × ratio through the real
// job path, plus the attention-agreement analysis. It is also the --config file
// (YAML keys below); the command's flags override it.
type Config struct {
	Tasks         []string  `yaml:"tasks"`
	Methods       []string  `yaml:"methods"`
	Ratios        []float64 `yaml:"ratios"`
	Model         string    `yaml:"model"`
	Aux           string    `yaml:"aux"`
	Device        string    `yaml:"device"` // every run's --device: auto, cpu, cuda, cuda:N
	N             int       `yaml:"n"`
	ContextTokens int       `yaml:"context_tokens"`
	ChunkTokens   int       `yaml:"chunk_tokens"`
	MaxNewTokens  int       `yaml:"max_new_tokens"`
	// ChainLength: variables per chain of vt and vt_distractor (0: the generator's 4;
	// RULER's num_hops 4 is 5 variables).
	ChainLength int `yaml:"chain_length"`
	// Seed seeds the generator when Seeds is empty, and always the bootstrap.
	Seed uint64 `yaml:"seed"`
	// Seeds, when set, are the generator's seeds: each draws its own N
	// held-out questions per task, and a task's runs answer all of them (N
	// per seed); scores and intervals are over the pooled questions, with
	// each seed's score beside them.
	Seeds []uint64 `yaml:"seeds"`
	Out   string   `yaml:"out"`
	// Haystack: noise (default), needle, or text: sentences of the real
	// documents TextSources (files; relative paths from the working directory).
	Haystack    string   `yaml:"haystack"`
	TextSources []string `yaml:"text_sources"`
	// AgreementN questions per task go into the attention-agreement analysis
	// (0: none); AgreementRatio sets its top-k.
	AgreementN     int     `yaml:"agreement_n"`
	AgreementRatio float64 `yaml:"agreement_ratio"`
	// LabelTasks are run again in multiple-choice form as label jobs with
	// LabelChoices choices each (runLabelTask).
	LabelTasks   []string `yaml:"label_tasks"`
	LabelChoices int      `yaml:"label_choices"`
}

// ConfigFile is the effective Config written next to the report, so a
// table can be traced to the exact run (`--config OUT/eval-config.yaml` repeats it).
const ConfigFile = "eval-config.yaml"

// Default is the configuration before a config file and flags apply.
func Default() Config {
	return Config{
		Tasks:          []string{eval.TaskNIAHSingle, eval.TaskVT},
		Methods:        methods.Default().Names(),
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

// Load reads a YAML suite file over s. Unknown keys are errors: a
// misspelt key must not silently fall back to a default.
func Load(path string, s *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(s); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// Validate checks the suite against the task list and the method registry.
func (s *Config) Validate() error {
	if len(s.Tasks) == 0 {
		return errors.New("tasks: none given")
	}
	for _, t := range s.Tasks {
		if !slices.Contains(eval.Tasks, t) {
			return fmt.Errorf("tasks: %q is not one of %s", t, strings.Join(eval.Tasks, ", "))
		}
	}
	for _, t := range s.LabelTasks {
		if !slices.Contains(eval.Tasks, t) {
			return fmt.Errorf("label_tasks: %q is not one of %s", t, strings.Join(eval.Tasks, ", "))
		}
	}
	if len(s.LabelTasks) > 0 && s.LabelChoices < 2 {
		return fmt.Errorf("label_choices: %d, want at least 2", s.LabelChoices)
	}
	if len(s.Methods) == 0 {
		return errors.New("methods: none given")
	}
	reg := methods.Default()
	needRatio, needAux := false, false
	seen := map[string]string{}
	for _, m := range s.Methods {
		v, e, err := reg.ResolveVariant(m)
		if err != nil {
			return fmt.Errorf("methods: %q: %w", m, err)
		}
		// Two spellings of one variant would run it twice under one name.
		if prev, dup := seen[v.String()]; dup {
			return fmt.Errorf("methods: %q and %q are the same variant %s", prev, m, v)
		}
		seen[v.String()] = m
		needRatio = needRatio || e.TakesRatio
		needAux = needAux || e.NeedsAux
	}
	if needRatio && len(s.Ratios) == 0 {
		return errors.New("ratios: none given for a method that takes one")
	}
	for _, r := range s.Ratios {
		if methods.CheckRatio(r) != nil {
			return fmt.Errorf("ratios: %v is not in [0, 1]", r)
		}
	}
	switch {
	case s.N < 1:
		return fmt.Errorf("n: %d, want at least 1", s.N)
	case len(s.Seeds) != len(slices.Compact(slices.Sorted(slices.Values(s.Seeds)))):
		return fmt.Errorf("seeds: %v names a seed twice (the same questions twice)", s.Seeds)
	case s.ContextTokens < 1 || s.ChunkTokens < 1:
		return fmt.Errorf("context_tokens %d / chunk_tokens %d: both must be positive", s.ContextTokens, s.ChunkTokens)
	case s.AgreementN < 0 || s.AgreementN > 0 && !(s.AgreementRatio > 0 && s.AgreementRatio <= 1):
		return fmt.Errorf("agreement_n %d / agreement_ratio %v: want n >= 0 and a ratio in (0,1]", s.AgreementN, s.AgreementRatio)
	case s.AgreementN > 0 && s.Aux == "":
		return errors.New("aux: required by the attention-agreement analysis (set agreement_n: 0 to skip it)")
	case s.MaxNewTokens < 0:
		return fmt.Errorf("max_new_tokens: %d is negative", s.MaxNewTokens)
	case s.ChainLength < 0 || s.ChainLength == 1:
		return fmt.Errorf("chain_length: %d, want 0 (the default) or at least 2", s.ChainLength)
	case s.Model == "" || s.Out == "":
		return errors.New("model and out are required")
	case s.Aux == "" && needAux:
		return errors.New("aux: required by a method that needs an auxiliary model")
	}
	return nil
}

// SeedList is the generator's seeds: Seeds, or Seed alone.
func (s *Config) SeedList() []uint64 {
	if len(s.Seeds) > 0 {
		return s.Seeds
	}
	return []uint64{s.Seed}
}

// generate draws the task's questions: N per seed of SeedList, in seed
// order. Query ids hold the seed, so the sets never share a question or a
// chunk.
func (s *Config) generate(ctx context.Context, c eval.Config) ([]eval.Example, error) {
	var out []eval.Example
	for _, seed := range s.SeedList() {
		c.Seed = seed
		exs, err := eval.Generate(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("seed %d: %w", seed, err)
		}
		out = append(out, exs...)
	}
	return out, nil
}

// WriteConfig writes the suite as ConfigFile into its output directory, atomically.
func (s *Config) WriteConfig() error {
	data, err := yaml.Marshal(s)
	if err != nil {
		return fmt.Errorf("effective config: %w", err)
	}
	if err := os.MkdirAll(s.Out, 0o755); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	path := filepath.Join(s.Out, ConfigFile)
	if err := atomicfile.WriteFile(path, data); err != nil {
		return fmt.Errorf("effective config: %w", err)
	}
	return nil
}

// Run is one job of a suite: a method variant at a ratio (0 for a method
// without one).
type Run struct {
	// Method is the registry name; Params the variant's parameters (nil: the
	// method's defaults) and Variant its canonical name
	// (methods.Variant.String), which names the run's row in the report.
	Method  string
	Params  map[string]string
	Variant string
	Ratio   float64
}

// Name is the run's directory name: the variant, with its ratio when the
// method takes one. A variant's brackets become "@" ("cacheclip@window=1-0.2"):
// a directory name with brackets would be read as a glob pattern by every
// tool that lists its part files.
func (r Run) Name() string {
	name := strings.NewReplacer("[", "@", "]", "").Replace(r.Variant)
	if !takesRatio(r.Method) {
		return name
	}
	return name + "-" + strconv.FormatFloat(r.Ratio, 'f', -1, 64)
}

func takesRatio(method string) bool {
	e, err := methods.Default().Lookup(method)
	return err == nil && e.TakesRatio
}

// Plan lists the suite's runs: full first (fidelity of every other run is
// measured against its answers), then each method variant once, or once per
// ratio when it takes one. Methods must have passed Validate.
func (s *Config) Plan() []Run {
	var vs []methods.Variant
	for _, m := range s.Methods {
		v, err := methods.ParseVariant(m)
		if err != nil {
			continue // Validate reports it
		}
		vs = append(vs, v)
	}
	slices.SortStableFunc(vs, func(a, b methods.Variant) int {
		return boolInt(b.String() == report.Baseline) - boolInt(a.String() == report.Baseline)
	})
	var runs []Run
	for _, v := range vs {
		run := Run{Method: v.Method, Params: v.Params, Variant: v.String()}
		if !takesRatio(v.Method) {
			runs = append(runs, run)
			continue
		}
		for _, r := range s.Ratios {
			run.Ratio = r
			runs = append(runs, run)
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

// Evaluate runs the whole plan: one report row per (task, run), then the
// attention-agreement analysis of the pair on each task's first questions.
// Progress goes to stderr in the given mode; each run's log to OUT/runs/TASK/RUN.log.
func Evaluate(ctx context.Context, s Config, mode progress.Mode, stderr io.Writer) (report.Results, error) {
	res := report.Results{Seed: s.Seed, Families: eval.RULERFamilies}
	count, err := tokenCounter(s.Model)
	if err != nil {
		return res, err
	}
	plan := s.Plan()
	total := len(plan) * (len(s.Tasks) + len(s.LabelTasks))
	if s.AgreementN > 0 {
		total += len(s.Tasks)
	}
	bar := progress.New(progress.Options{Mode: mode, Description: "eval runs", Unit: "runs",
		Total: int64(total), Out: stderr, Logger: progress.NewLogger(stderr, "text", slog.LevelInfo)})
	defer bar.Done()
	examples := map[string][]eval.Example{}
	for _, task := range s.Tasks {
		tr, exs, err := s.runTask(ctx, task, plan, count, bar)
		if err != nil {
			return res, fmt.Errorf("task %s: %w", task, err)
		}
		res.Rows = append(res.Rows, tr...)
		examples[task] = exs
	}
	for _, task := range s.LabelTasks {
		lr, err := s.runLabelTask(ctx, task, plan, count, bar)
		if err != nil {
			return res, fmt.Errorf("label task %s: %w", task, err)
		}
		res.Labels = append(res.Labels, lr...)
	}
	if s.AgreementN == 0 {
		return res, nil
	}
	res.TopK = fmt.Sprintf("top %g%%", 100*s.AgreementRatio)
	p, err := loader.Open(s.Model, "")
	if err != nil {
		return res, fmt.Errorf("model %s: %w", s.Model, err)
	}
	defer p.Close()
	a, err := loader.Open(s.Aux, "")
	if err != nil {
		return res, fmt.Errorf("aux %s: %w", s.Aux, err)
	}
	defer a.Close()
	for _, task := range s.Tasks {
		ag, err := s.agreement(ctx, p, a, task, examples[task])
		if err != nil {
			return res, fmt.Errorf("task %s: attention agreement: %w", task, err)
		}
		res.Agreement = append(res.Agreement, ag...)
		bar.Add(1)
	}
	return res, nil
}

// agreement compares the auxiliary's last-layer attention with each primary
// layer's on the task's first AgreementN questions.
func (s *Config) agreement(ctx context.Context, p, a *loader.Bundle, task string, exs []eval.Example) ([]report.Agreement, error) {
	scorer := &auxscore.Scorer{Model: a.Model, Layouter: a}
	qs := make([]prefill.Query, 0, s.AgreementN)
	for _, ex := range exs[:min(len(exs), s.AgreementN)] {
		q := prefill.Query{Question: ex.Question}
		for _, c := range ex.Chunks {
			q.Chunks = append(q.Chunks, c.Text)
		}
		qs = append(qs, q)
	}
	means, err := agree.Average(ctx, p.Model, p, scorer, qs, s.AgreementRatio)
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

// Dataset is a generated task written as a job's inputs, with its shards built.
type Dataset struct {
	Questions, Corpus, Store string
}

// PrepareDataset writes a job's questions and corpus Parquet files in dir
// (write gets their paths, e.g. eval.WriteDataset) and builds their KV shards
// with the model, so that every run reads the same shards and none pays for
// building them.
func PrepareDataset(ctx context.Context, dir, modelDir string, write func(questions, corpus string) error, shardLog io.Writer) (Dataset, error) {
	d := Dataset{Questions: filepath.Join(dir, "questions.parquet"), Corpus: filepath.Join(dir, "corpus.parquet"), Store: filepath.Join(dir, "shards")}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return d, err
	}
	if err := write(d.Questions, d.Corpus); err != nil {
		return d, err
	}
	opts := kvshards.DefaultOptions()
	log := progress.NewLogger(shardLog, "text", slog.LevelInfo)
	opts.Logger = log
	st, err := kvshards.OpenStore(d.Store, opts)
	if err != nil {
		return d, fmt.Errorf("shard store: %w", err)
	}
	defer st.Close()
	if _, err := runner.BuildShards(ctx, runner.ShardBuild{Store: st, Corpus: d.Corpus, Model: modelDir,
		Progress: progress.None, Stderr: shardLog, Out: shardLog, Logger: log}); err != nil {
		return d, fmt.Errorf("building shards: %w", err)
	}
	return d, nil
}

// RunJob runs one job of the real job path on a spec (the job's log lines
// go to logw) and returns its merged stats. A job that ends partial (some rows
// failed within the error budget) is not an error: its rows say why.
func RunJob(ctx context.Context, spec jobs.Spec, logw io.Writer) (*jobs.DatasetStats, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	log := progress.NewLogger(logw, spec.LogFormat, slog.LevelInfo)
	if _, err := spec.WriteEffective(); err != nil {
		return nil, err
	}
	st, err := runner.RunSpec(ctx, runner.Options{Spec: spec, Logger: log})
	if code := jobs.ExitCodeOf(err, ctx.Err() != nil, &st, spec.MaxErrors); code != jobs.ExitOK && code != jobs.ExitPartial {
		if err == nil {
			err = errors.New(code.String())
		}
		return nil, fmt.Errorf("job exited %d: %w", int(code), err)
	}
	return jobs.MergeStats(spec.Out)
}

// runTask generates the task's dataset, builds its shards once and runs every
// method of the plan on it through the job path, scoring each run's answers.
func (s *Config) runTask(ctx context.Context, task string, plan []Run, count eval.TokenCounter, bar progress.Reporter) ([]report.Row, []eval.Example, error) {
	var text []string
	if len(s.TextSources) > 0 {
		var err error
		if text, err = eval.ReadTextSources(s.TextSources); err != nil {
			return nil, nil, err
		}
	}
	exs, err := s.generate(ctx, eval.Config{Task: task, N: s.N, ContextTokens: s.ContextTokens,
		ChunkTokens: s.ChunkTokens, MaxNewTokens: s.MaxNewTokens, ChainLength: s.ChainLength, Count: count,
		Haystack: s.Haystack, Text: text})
	if err != nil {
		return nil, nil, err
	}
	dataDir := filepath.Join(s.Out, "data", task)
	// Recreated: shards and answers of an earlier eval with other settings
	// must not be mistaken for this one's.
	for _, dir := range []string{dataDir, filepath.Join(s.Out, "runs", task)} {
		if err := os.RemoveAll(dir); err != nil {
			return nil, nil, err
		}
	}
	var shardLog bytes.Buffer
	data, err := PrepareDataset(ctx, dataDir, s.Model, func(q, c string) error { return eval.WriteDataset(ctx, q, c, exs) }, &shardLog)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s", err, lastLines(shardLog.String(), 5))
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
		out := filepath.Join(s.Out, "runs", task, r.Name())
		logPath := out + ".log"
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return nil, nil, err
		}
		logf, err := os.Create(logPath)
		if err != nil {
			return nil, nil, err
		}
		spec := jobs.DefaultSpec()
		spec.Questions, spec.Corpus, spec.Store, spec.Out = data.Questions, data.Corpus, data.Store, out
		spec.Model, spec.Aux, spec.Method, spec.Ratio = s.Model, s.Aux, r.Method, r.Ratio
		spec.MethodParams = r.Params
		spec.LogFormat, spec.Diagnostics, spec.Device = "json", true, s.Device
		start := time.Now()
		ds, err := RunJob(ctx, spec, logf)
		fmt.Fprintf(logf, "{\"eval_wall_s\":%.3f}\n", time.Since(start).Seconds())
		logf.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("run %s: %w (log: %s)", r.Name(), err, logPath)
		}
		ans, err := readDiagnostics(out)
		if err != nil {
			return nil, nil, fmt.Errorf("run %s: %w", r.Name(), err)
		}
		if r.Variant == report.Baseline {
			full = ans
		}
		row, err := scoreRun(task, r, exs, refs, ans, full, s.Seed)
		if err != nil {
			return nil, nil, err
		}
		row.TTFTP50ms = ds.Stats.TTFT.P50
		row.Recomputed = ds.Stats.Recomputed
		row.AuxP50ms = median(auxMS(ans))
		rows = append(rows, row)
		bar.Add(1)
	}
	return rows, exs, nil
}

// scoreRun is a run's report row: its score against the references, and its
// fidelity to full's answers when full ran.
// The score's 95% interval is bootstrapped over the questions with seed, the
// same for every run of a task, so the runs' resamples are paired.
func scoreRun(task string, r Run, exs []eval.Example, refs map[string][]string, ans, full map[string]diagnostics, seed uint64) (report.Row, error) {
	row := report.Row{Task: task, Method: r.Variant, Ratio: r.Ratio, RatioFree: !takesRatio(r.Method),
		Questions: len(exs), Answered: len(ans), SameAsFull: math.NaN(), KLFirst: math.NaN(), TokenAgree: math.NaN()}
	var score, same, agreeSum, klSum float64
	klN := 0
	perQuestion := make([]float64, len(exs))
	for i, e := range exs {
		// An unanswered question scores 0 (and agrees with nothing) rather
		// than being left out, so a method cannot gain by failing rows.
		a, ok := ans[e.QueryID]
		if ok {
			perQuestion[i] = eval.MatchAll(a.Answer, refs[e.QueryID])
			score += perQuestion[i]
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
				return row, fmt.Errorf("run %s: question %s: %w", r.Name(), e.QueryID, err)
			}
			klSum += kl
			klN++
		}
	}
	row.Score = 100 * score / float64(len(exs))
	row.SeedScores = seedScores(exs, perQuestion)
	lo, hi := bootstrap.Interval(perQuestion, 0.95, bootstrap.Resamples, seed)
	row.ScoreLo, row.ScoreHi = 100*lo, 100*hi
	row.PerQuestion = perQuestion
	if full != nil {
		row.SameAsFull = 100 * same / float64(len(exs))
		row.TokenAgree = 100 * agreeSum / float64(len(exs))
		if klN > 0 {
			row.KLFirst = klSum / float64(klN)
		}
	}
	return row, nil
}

// seedScores is the score (×100) of each seed's questions, in the order the
// seeds first appear in exs.
func seedScores(exs []eval.Example, perQuestion []float64) []report.SeedScore {
	var out []report.SeedScore
	at := map[uint64]int{}
	n := map[uint64]int{}
	for i, e := range exs {
		j, ok := at[e.Seed]
		if !ok {
			j = len(out)
			at[e.Seed] = j
			out = append(out, report.SeedScore{Seed: e.Seed})
		}
		out[j].Score += perQuestion[i]
		n[e.Seed]++
	}
	for j := range out {
		out[j].Score = 100 * out[j].Score / float64(n[out[j].Seed])
	}
	return out
}

func auxMS(ans map[string]diagnostics) []float64 {
	out := make([]float64, 0, len(ans))
	for _, a := range ans {
		out = append(out, a.AuxMS)
	}
	return out
}

// median of xs (NaN for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	xs = slices.Sorted(slices.Values(xs))
	m := len(xs) / 2
	if len(xs)%2 == 1 {
		return xs[m]
	}
	return (xs[m-1] + xs[m]) / 2
}

// diagnostics is one answered question of a run written with diagnostics.
type diagnostics struct {
	Answer   string
	IDs      []int32
	LogProbs []float32
	AuxMS    float64 // the auxiliary stage's time for the question
}

// readDiagnostics reads a run's answers with their diagnostic columns (the
// greedy token ids and the first answer token's log-probabilities).
func readDiagnostics(dir string) (map[string]diagnostics, error) {
	type row struct {
		QueryID  string    `parquet:"query_id"`
		Answer   *string   `parquet:"answer,optional"`
		IDs      []int32   `parquet:"answer_token_ids"`
		LogProbs []float32 `parquet:"first_token_logprobs"`
		AuxMS    float64   `parquet:"aux_ms"`
	}
	rows, err := eval.ReadParts[row](dir)
	if err != nil {
		return nil, err
	}
	out := map[string]diagnostics{}
	for _, x := range rows {
		if x.Answer != nil {
			out[x.QueryID] = diagnostics{Answer: *x.Answer, IDs: x.IDs, LogProbs: x.LogProbs, AuxMS: x.AuxMS}
		}
	}
	return out, nil
}

// ReadAnswers reads a job's answers by query_id (error rows left out).
func ReadAnswers(dir string) (map[string]string, error) {
	type r struct {
		QueryID string  `parquet:"query_id"`
		Answer  *string `parquet:"answer,optional"`
	}
	rows, err := eval.ReadParts[r](dir)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, x := range rows {
		if x.Answer != nil {
			out[x.QueryID] = *x.Answer
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

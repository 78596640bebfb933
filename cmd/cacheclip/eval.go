package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"cacheclip/eval"
	"cacheclip/eval/report"
	"cacheclip/eval/suite"
	"cacheclip/methods"
	"cacheclip/progress"
)

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// cmdEval is `cacheclip eval`: it parses the flags over the --config file into
// an eval.Suite, which generates each task's dataset, builds its shards once,
// runs every method × ratio through the real job path and scores the answers;
// then it writes the report (docs/EVALUATION.md).
func cmdEval(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := suite.Default()
	configPath := fs.String("config", "", "YAML file with the keys below (tasks, methods, ratios, model, aux, device, n, context_tokens, chunk_tokens, max_new_tokens, chain_length, seed, out, agreement_n, agreement_ratio, label_tasks, label_choices); flags override it")
	tasksFlag := fs.String("tasks", strings.Join(d.Tasks, ","), "comma-separated tasks: "+strings.Join(eval.Tasks, ", "))
	methodsFlag := fs.String("methods", strings.Join(d.Methods, ","), "comma-separated methods: "+strings.Join(methods.Default().Names(), ", ")+
		"; a variant sets parameters in brackets, e.g. cacheclip[aux_mode=cached] or cacheclip[window=1,reduce=max] (docs/METHODS.md)")
	ratiosFlag := fs.String("ratios", "0.1,0.2,0.4", "comma-separated recompute ratios for the methods that take one")
	modelFlag := fs.String("model", d.Model, "primary model directory")
	auxFlag := fs.String("aux", d.Aux, "auxiliary model directory (cacheclip)")
	deviceFlag := fs.String("device", d.Device, "where every run's primary model runs: auto, cpu, cuda or cuda:N")
	nFlag := fs.Int("n", d.N, "questions per task")
	ctxFlag := fs.Int("context-tokens", d.ContextTokens, "target context length per question, in the primary's tokens")
	chunkFlag := fs.Int("chunk-tokens", d.ChunkTokens, "target tokens per chunk")
	maxNewFlag := fs.Int("max-new-tokens", 0, "answer token limit (0: the task's default)")
	chainFlag := fs.Int("chain-length", 0, "variables per variable-tracking chain (0: 4; RULER's default is 5)")
	seedFlag := fs.Uint64("seed", d.Seed, "generator seed (without --seeds) and the bootstrap's seed")
	seedsFlag := fs.String("seeds", "", "comma-separated generator seeds: n questions per seed and task, pooled")
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
		if err := suite.Load(*configPath, &cfg); err != nil {
			return fail(2, err)
		}
	}
	var perr error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "tasks":
			cfg.Tasks = splitList(*tasksFlag)
		case "methods":
			cfg.Methods = methods.SplitVariants(*methodsFlag)
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
		case "seeds":
			cfg.Seeds = nil
			for _, s := range splitList(*seedsFlag) {
				v, err := strconv.ParseUint(s, 10, 64)
				if err != nil {
					perr = fmt.Errorf("--seeds: %q: %w", s, err)
					return
				}
				cfg.Seeds = append(cfg.Seeds, v)
			}
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
	if err := cfg.Validate(); err != nil {
		return fail(2, err)
	}
	mode, err := progress.ParseMode(*progressMode)
	if err != nil {
		return fail(2, err)
	}
	if err := cfg.WriteConfig(); err != nil {
		return fail(1, err)
	}
	res, err := suite.Evaluate(ctx, cfg, mode, stderr)
	if err != nil {
		return fail(1, err)
	}
	seeds := make([]string, 0, len(cfg.SeedList()))
	for _, s := range cfg.SeedList() {
		seeds = append(seeds, strconv.FormatUint(s, 10))
	}
	res.Title = fmt.Sprintf("cacheclip eval: %s (aux %s), %d questions per task and seed, %d-token contexts in %d-token chunks, seeds %s",
		cfg.Model, cfg.Aux, cfg.N, cfg.ContextTokens, cfg.ChunkTokens, strings.Join(seeds, ", "))
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

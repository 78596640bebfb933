package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"cacheclip/eval"
	"cacheclip/eval/report"
	"cacheclip/jobs"
	"cacheclip/progress"
)

// labelPrompt shows the choices after the task's own question.
const labelPrompt = "{question}\nChoices: {choices}"

// evalLabelTask is the labeling task on one generator: its questions in
// multiple-choice form (eval.MultipleChoice), each run of the plan as a label
// job through the real job path, scored by accuracy and against full's labels.
func evalLabelTask(ctx context.Context, cfg evalConfig, task string, plan []evalRun, count eval.TokenCounter, bar progress.Reporter) ([]report.LabelRow, error) {
	exs, err := eval.Generate(ctx, eval.Config{Task: task, N: cfg.N, Seed: cfg.Seed, ContextTokens: cfg.ContextTokens,
		ChunkTokens: cfg.ChunkTokens, ChainLength: cfg.ChainLength, Count: count, IDPrefix: "label-" + task})
	if err != nil {
		return nil, err
	}
	ces, err := eval.MultipleChoice(exs, cfg.LabelChoices, cfg.Seed)
	if err != nil {
		return nil, err
	}
	name := "label-" + task
	data := filepath.Join(cfg.Out, "data", name)
	for _, dir := range []string{data, filepath.Join(cfg.Out, "runs", name)} {
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(cfg.Out, "runs", name), 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	q, c := filepath.Join(data, "questions.parquet"), filepath.Join(data, "corpus.parquet")
	if err := eval.WriteChoiceDataset(ctx, q, c, ces); err != nil {
		return nil, err
	}
	store := filepath.Join(data, "shards")
	var shardLog bytes.Buffer
	if code := cmdShards(ctx, []string{"build", "--store", store, "--corpus", c, "--model", cfg.Model}, &shardLog, &shardLog); code != 0 {
		return nil, fmt.Errorf("building shards exited %d: %s", code, lastLines(shardLog.String(), 5))
	}
	var rows []report.LabelRow
	var full map[string]eval.LabelAnswer
	for _, r := range plan {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out := filepath.Join(cfg.Out, "runs", name, r.name())
		logPath := out + ".log"
		logf, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		code := cmdRun(ctx, []string{"--questions", q, "--corpus", c, "--store", store, "--model", cfg.Model, "--aux", cfg.Aux,
			"--method", r.method, "--ratio", strconv.FormatFloat(r.ratio, 'f', -1, 64), "--out", out,
			"--task", "label", "--label-prompt", labelPrompt, "--progress", "none", "--log-format", "json"}, logf, logf)
		fmt.Fprintf(logf, "{\"eval_wall_s\":%.3f}\n", time.Since(start).Seconds())
		logf.Close()
		if code != 0 && code != int(jobs.ExitPartial) {
			return nil, fmt.Errorf("label run %s exited %d (log: %s)", r.name(), code, logPath)
		}
		ds, err := jobs.MergeStats(out)
		if err != nil {
			return nil, fmt.Errorf("label run %s: %w", r.name(), err)
		}
		ans, err := eval.ReadLabelRun(out)
		if err != nil {
			return nil, err
		}
		if r.method == "full" {
			full = ans
		}
		s := eval.ScoreLabelRun(ces, ans, full)
		rows = append(rows, report.LabelRow{Task: task, Method: r.method, Ratio: r.ratio, RatioFree: ratioFree[r.method],
			Choices: cfg.LabelChoices, Questions: len(ces), Answered: s.Answered, Accuracy: s.Accuracy,
			AgreeFull: s.AgreeFull, ProbFull: s.ProbFull, TTFTP50ms: ds.Stats.TTFT.P50})
		bar.Add(1)
	}
	return rows, nil
}

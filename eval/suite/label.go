package suite

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"cacheclip/eval"
	"cacheclip/eval/report"
	"cacheclip/jobs"
	"cacheclip/progress"
)

// runLabelTask is the labeling task on one generator: its questions in
// multiple-choice form (eval.MultipleChoice), each run of the plan as a label
// job through the real job path, scored by accuracy and against full's labels.
func (s *Config) runLabelTask(ctx context.Context, task string, plan []Run, count eval.TokenCounter, bar progress.Reporter) ([]report.LabelRow, error) {
	exs, err := s.generate(ctx, eval.Config{Task: task, N: s.N, ContextTokens: s.ContextTokens,
		ChunkTokens: s.ChunkTokens, ChainLength: s.ChainLength, Count: count, IDPrefix: "label-" + task})
	if err != nil {
		return nil, err
	}
	ces, err := eval.MultipleChoice(exs, s.LabelChoices, s.Seed)
	if err != nil {
		return nil, err
	}
	name := "label-" + task
	dataDir := filepath.Join(s.Out, "data", name)
	for _, dir := range []string{dataDir, filepath.Join(s.Out, "runs", name)} {
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(s.Out, "runs", name), 0o755); err != nil {
		return nil, err
	}
	var shardLog bytes.Buffer
	data, err := PrepareDataset(ctx, dataDir, s.Model, func(q, c string) error { return eval.WriteChoiceDataset(ctx, q, c, ces) }, &shardLog)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, lastLines(shardLog.String(), 5))
	}
	var rows []report.LabelRow
	var full map[string]eval.LabelAnswer
	for _, r := range plan {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out := filepath.Join(s.Out, "runs", name, r.Name())
		logPath := out + ".log"
		logf, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		spec := jobs.DefaultSpec()
		spec.Questions, spec.Corpus, spec.Store, spec.Out = data.Questions, data.Corpus, data.Store, out
		spec.Model, spec.Aux, spec.Method, spec.Ratio = s.Model, s.Aux, r.Method, r.Ratio
		spec.MethodParams = r.Params
		spec.Task, spec.LabelPrompt, spec.LogFormat, spec.Device = jobs.TaskLabel, jobs.DefaultLabelPrompt, "json", s.Device
		start := time.Now()
		ds, err := RunJob(ctx, spec, logf)
		fmt.Fprintf(logf, "{\"eval_wall_s\":%.3f}\n", time.Since(start).Seconds())
		logf.Close()
		if err != nil {
			return nil, fmt.Errorf("label run %s: %w (log: %s)", r.Name(), err, logPath)
		}
		ans, err := eval.ReadLabelRun(out)
		if err != nil {
			return nil, err
		}
		if r.Variant == report.Baseline {
			full = ans
		}
		sc := eval.ScoreLabelRun(ces, ans, full)
		rows = append(rows, report.LabelRow{Task: task, Method: r.Variant, Ratio: r.Ratio, RatioFree: !takesRatio(r.Method),
			Choices: s.LabelChoices, Questions: len(ces), Answered: sc.Answered, Accuracy: sc.Accuracy,
			AgreeFull: sc.AgreeFull, ProbFull: sc.ProbFull, TTFTP50ms: ds.Stats.TTFT.P50})
		bar.Add(1)
	}
	return rows, nil
}

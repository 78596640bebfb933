package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/parquet-go/parquet-go"

	"cacheclip/eval"
	"cacheclip/jobs"
	"cacheclip/loader"
	"cacheclip/model/testmodel"
)

// cmdDemo is `make demo`: a small retrieval task, shards built, the job run with
// full prefill and with CacheClip, and a summary of quality and speed. It runs
// offline on the shipped test-bed models (or generated ones when they are absent).
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	work := fs.String("workdir", "out/demo", "directory for the demo's data, shards and outputs (recreated)")
	primary := fs.String("model", "testdata/testbed/primary", "primary model directory")
	aux := fs.String("aux", "testdata/testbed/aux", "auxiliary model directory")
	n := fs.Int("questions", 24, "questions to generate")
	ratio := fs.Float64("ratio", 0.2, "CacheClip recompute ratio")
	device := fs.String("device", "auto", "where the primary model runs: auto, cpu, cuda or cuda:N")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int { fmt.Fprintf(stderr, "cacheclip demo: %v\n", err); return 1 }
	if err := os.RemoveAll(*work); err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(*work, 0o755); err != nil {
		return fail(err)
	}
	if _, err := os.Stat(filepath.Join(*primary, "config.json")); err != nil {
		fmt.Fprintf(stdout, "no model at %s: using generated random models (answers will be noise)\n", *primary)
		*primary, *aux = filepath.Join(*work, "primary"), filepath.Join(*work, "aux")
		for _, s := range testmodel.Variants() {
			dir := map[string]string{"qwen2": *primary, "smollm2": *aux}[s.Name]
			if dir != "" {
				if err := testmodel.Write(dir, s); err != nil {
					return fail(err)
				}
			}
		}
	}
	b, err := loader.Open(*primary, "")
	if err != nil {
		return fail(err)
	}
	exs, err := eval.Generate(ctx, eval.Config{Task: eval.TaskNIAHSingle, N: *n, Seed: 2026, ContextTokens: 512, ChunkTokens: 64, MaxNewTokens: 8, Count: b.CountTokens})
	b.Close()
	if err != nil {
		return fail(err)
	}
	q, c := filepath.Join(*work, "questions.parquet"), filepath.Join(*work, "corpus.parquet")
	if err := eval.WriteDataset(ctx, q, c, exs); err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "generated %d niah_single questions over %d-token contexts in %s\n", len(exs), 512, *work)
	store := filepath.Join(*work, "shards")
	start := time.Now()
	if code := cmdShards(ctx, []string{"build", "--store", store, "--corpus", c, "--model", *primary}, stdout, stderr); code != 0 {
		return code
	}
	fmt.Fprintf(stdout, "shards built in %v\n\n", time.Since(start).Round(time.Millisecond))
	type row struct {
		method  string
		stats   jobs.Stats
		answers map[string]string
	}
	var rows []row
	for _, m := range []string{"full", "reuse", "cacheclip"} {
		out := filepath.Join(*work, "answers-"+m)
		var runErr bytes.Buffer
		code := cmdRun(ctx, []string{"--questions", q, "--corpus", c, "--store", store, "--model", *primary, "--aux", *aux,
			"--method", m, "--ratio", fmt.Sprint(*ratio), "--out", out, "--device", *device, "--progress", "none", "--log-format", "json"}, io.Discard, &runErr)
		if code != 0 && code != int(jobs.ExitPartial) {
			// The job's own last line says why (a missing CUDA library, a bad setting).
			lines := strings.Split(strings.TrimSpace(runErr.String()), "\n")
			return fail(fmt.Errorf("job with method %s exited %d: %s (rerun: cacheclip run ... --out %s)", m, code, lines[len(lines)-1], out))
		}
		ds, err := jobs.MergeStats(out)
		if err != nil {
			return fail(err)
		}
		ans, err := readAnswers(out)
		if err != nil {
			return fail(err)
		}
		rows = append(rows, row{m, ds.Stats, ans})
	}
	refs := map[string][]string{}
	for _, e := range exs {
		refs[e.QueryID] = e.Answers
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "method\tratio\trows ok\tstring_match_all\tsame answer as full\tttft p50 ms\tquestions/s\t")
	for _, r := range rows {
		var score, same float64
		for id, a := range r.answers {
			score += eval.MatchAll(a, refs[id])
			if a == rows[0].answers[id] {
				same++
			}
		}
		k := float64(max(1, len(r.answers)))
		ratioShown := *ratio
		switch r.method {
		case "full":
			ratioShown = 1
		case "reuse":
			ratioShown = 0
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%d\t%.1f\t%.0f%%\t%.1f\t%.2f\t\n", r.method, ratioShown, r.stats.OK, score/k, 100*same/k, r.stats.TTFT.P50, r.stats.QuestionsPerSec)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\noutputs: %s/answers-*/ (Parquet datasets with stats.json)\n", *work)
	return 0
}

func readAnswers(dir string) (map[string]string, error) {
	type r struct {
		QueryID string  `parquet:"query_id"`
		Answer  *string `parquet:"answer,optional"`
	}
	rows, err := readParts[r](dir)
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

// readParts reads the rows of every part file of an output directory.
func readParts[T any](dir string) ([]T, error) {
	files, err := filepath.Glob(filepath.Join(dir, "part-*.parquet"))
	if err != nil {
		return nil, err
	}
	var out []T
	for _, f := range files {
		rows, err := parquet.ReadFile[T](f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, rows...)
	}
	return out, nil
}

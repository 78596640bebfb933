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
	"cacheclip/internal/realmodel"
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
	primary := fs.String("model", "", "primary model directory or .gguf file (default: SmolLM2-135M-Instruct when fetched, else the test-bed primary)")
	aux := fs.String("aux", "testdata/testbed/aux", "auxiliary model directory")
	n := fs.Int("questions", 0, "questions to generate (default 24 on the test bed, 8 on SmolLM2)")
	ratio := fs.Float64("ratio", 0.2, "CacheClip recompute ratio")
	device := fs.String("device", "auto", "where the primary model runs: auto, cpu, cuda or cuda:N")
	textDir := fs.String("text", "testdata/realtext", "directory of real documents for the real model's haystack")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int { fmt.Fprintf(stderr, "cacheclip demo: %v\n", err); return 1 }
	// A real model when one was fetched (scripts/fetch-smollm2.sh): questions
	// over real text. Otherwise the test-bed pair on its synthetic task.
	task := eval.Config{Task: eval.TaskNIAHSingle, N: 24, Seed: 2026, ContextTokens: 512, ChunkTokens: 64, MaxNewTokens: 8, Haystack: eval.HaystackNoise}
	if *primary == "" {
		if p, ok := realmodel.Find(); ok {
			*primary = p
			text, err := eval.ReadTextSources(textFiles(*textDir))
			if err != nil {
				return fail(err)
			}
			task = eval.Config{Task: eval.TaskNIAHSingle, N: 8, Seed: 2026, ContextTokens: 512, ChunkTokens: 128, MaxNewTokens: 32,
				Haystack: eval.HaystackText, Text: text}
			fmt.Fprintf(stdout, "primary: SmolLM2-135M-Instruct (%s); haystack: real text from %s\n", p, *textDir)
		} else {
			*primary = "testdata/testbed/primary"
			fmt.Fprintf(stdout, "SmolLM2 GGUF not found at %s (scripts/fetch-smollm2.sh fetches it): running the test-bed pair\n", p)
		}
	}
	if *n > 0 {
		task.N = *n
	}
	if err := os.RemoveAll(*work); err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(*work, 0o755); err != nil {
		return fail(err)
	}
	if _, err := os.Stat(filepath.Join(*primary, "config.json")); err != nil && !loader.IsGGUF(*primary) {
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
	task.Count = b.CountTokens
	exs, err := eval.Generate(ctx, task)
	b.Close()
	if err != nil {
		return fail(err)
	}
	q, c := filepath.Join(*work, "questions.parquet"), filepath.Join(*work, "corpus.parquet")
	if err := eval.WriteDataset(ctx, q, c, exs); err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "generated %d niah_single questions (%s haystack) over %d-token contexts in %s\n", len(exs), task.Haystack, task.ContextTokens, *work)
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

// textFiles lists the regular files of dir (the real-text haystack's sources;
// a PROVENANCE.md or README.md beside them is not text to read).
func textFiles(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return []string{dir} // ReadTextSources reports the error
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() && !strings.HasSuffix(e.Name(), ".md") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

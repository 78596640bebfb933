package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"

	"cacheclip/eval"
	"cacheclip/eval/agree"
	"cacheclip/internal/atomicfile"
	"cacheclip/loader"
	"cacheclip/prefill"
	"cacheclip/prefill/auxscore"
)

// cmdAgreement measures CacheClip's premise on a model pair: per primary layer,
// how the auxiliary's last-layer question-to-context attention agrees with the
// primary's (Jaccard of the top ⌈r·N⌉ tokens, Spearman rank correlation), averaged
// over generated questions.
func cmdAgreement(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agreement", flag.ContinueOnError)
	fs.SetOutput(stderr)
	primary := fs.String("model", "testdata/testbed/primary", "primary model directory")
	auxDir := fs.String("aux", "testdata/testbed/aux", "auxiliary model directory")
	task := fs.String("task", eval.TaskNIAHSingle, "generated task the questions come from")
	n := fs.Int("n", 16, "questions")
	ctxTokens := fs.Int("context-tokens", 1024, "context length in primary tokens")
	chunkTokens := fs.Int("chunk-tokens", 128, "tokens per chunk")
	ratio := fs.Float64("ratio", 0.2, "top-k share of context tokens for the Jaccard overlap")
	seed := fs.Uint64("seed", 7, "generator seed")
	out := fs.String("out", "", "write the per-layer table as CSV to this file too")
	auxMode := fs.String("aux-mode", "fresh", "fresh: the auxiliary prefills the whole prompt; cached: it reuses its own per-chunk caches (method_params aux_mode)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int { fmt.Fprintf(stderr, "cacheclip agreement: %v\n", err); return 1 }
	if *auxMode != "fresh" && *auxMode != "cached" {
		fmt.Fprintf(stderr, "cacheclip agreement: --aux-mode %q, want fresh or cached\n", *auxMode)
		return 2
	}
	p, err := loader.Open(*primary, "")
	if err != nil {
		return fail(err)
	}
	defer p.Close()
	a, err := loader.Open(*auxDir, "")
	if err != nil {
		return fail(err)
	}
	defer a.Close()
	exs, err := eval.Generate(ctx, eval.Config{Task: *task, N: *n, Seed: *seed, ContextTokens: *ctxTokens, ChunkTokens: *chunkTokens, Count: p.CountTokens})
	if err != nil {
		return fail(err)
	}
	scorer := &auxscore.Scorer{Model: a.Model, Layouter: a}
	if *auxMode == "cached" {
		// As a job's aux_mode=cached without a store: each chunk's auxiliary
		// cache computed once on its own and reused.
		scorer.Source = prefill.NewMemorySource(&prefill.Computer{Model: a.Model})
	}
	qs := make([]prefill.Query, len(exs))
	for i, ex := range exs {
		qs[i] = prefill.Query{Question: ex.Question}
		for _, c := range ex.Chunks {
			qs[i].Chunks = append(qs[i].Chunks, c.Text)
		}
	}
	sum, err := agree.Average(ctx, p.Model, p, scorer, qs, *ratio)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "auxiliary %s (last layer, %s) against primary %s, %d %s questions, %d-token contexts, top %.0f%%\n\n",
		filepath.Base(*auxDir), *auxMode, filepath.Base(*primary), len(exs), *task, *ctxTokens, 100**ratio)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "primary layer\tJaccard top-k\tSpearman\t")
	csv := "primary_layer,jaccard_topk,spearman\n"
	for _, l := range sum {
		fmt.Fprintf(tw, "%d\t%.3f\t%.3f\t\n", l.Layer, l.Jaccard, l.Spearman)
		csv += fmt.Sprintf("%d,%.6f,%.6f\n", l.Layer, l.Jaccard, l.Spearman) // NaN: a constant score vector
	}
	tw.Flush()
	if *out != "" {
		if err := atomicfile.WriteFile(*out, []byte(csv)); err != nil {
			return fail(err)
		}
	}
	return 0
}

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"cacheclip/jobs"
)

// cmdStats merges the statistics of every shard of an output dataset and
// prints a summary; once every shard is complete it writes stats.json (and
// _SUCCESS when no shard is over its error budget). Exit codes: 6 while shards
// are missing, 4 when a shard is over its budget, 3 with error rows, else 0.
func cmdStats(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the merged statistics as JSON")
	if err := fs.Parse(args); err != nil {
		return int(jobs.ExitBadConfig)
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: cacheclip stats [--json] OUTPUT_DIR")
		return int(jobs.ExitBadConfig)
	}
	ds, err := jobs.FinalizeDataset(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "cacheclip stats: %v\n", err)
		return int(jobs.ExitBadConfig)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(ds)
	} else {
		printStats(stdout, &ds.Stats)
		fmt.Fprintf(stdout, "shards complete  %d of %d\n", ds.PartitionsComplete, ds.PartitionCount)
		if len(ds.Missing) > 0 {
			fmt.Fprintf(stdout, "missing shards   %s\n", strings.Join(ds.Missing, " "))
		}
		if len(ds.OverBudget) > 0 {
			fmt.Fprintf(stdout, "over budget      %s (no _SUCCESS)\n", strings.Join(ds.OverBudget, " "))
		}
	}
	switch {
	case !ds.Complete:
		return int(jobs.ExitIncomplete)
	case len(ds.OverBudget) > 0:
		return int(jobs.ExitBudgetExceeded)
	case ds.Errors+ds.Duplicates > 0:
		return int(jobs.ExitPartial)
	}
	return int(jobs.ExitOK)
}

func printStats(w io.Writer, s *jobs.Stats) {
	fmt.Fprintf(w, "rows             %d (ok %d, errors %d, duplicates %d)\n", s.Rows, s.OK, s.Errors, s.Duplicates)
	fmt.Fprintf(w, "questions/s      %.2f\n", s.QuestionsPerSec)
	fmt.Fprintf(w, "generated tok/s  %.1f\n", s.TokensPerSec)
	fmt.Fprintf(w, "context tokens   %d (recomputed %d)\n", s.ContextTokens, s.Recomputed)
	fmt.Fprintf(w, "ttft ms          p50 %.1f  p95 %.1f  p99 %.1f\n", s.TTFT.P50, s.TTFT.P95, s.TTFT.P99)
	fmt.Fprintf(w, "total ms         p50 %.1f  p95 %.1f  p99 %.1f\n", s.Total.P50, s.Total.P95, s.Total.P99)
	for k, v := range s.Counters {
		fmt.Fprintf(w, "%-16s %d\n", k, v)
	}
}

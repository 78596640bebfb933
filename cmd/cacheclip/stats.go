package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"cacheclip/jobs"
)

// cmdStats merges the statistics of every shard of an output dataset, writes
// stats.json (and _SUCCESS when every shard is complete) and prints a summary.
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
	}
	if !ds.Complete {
		return int(jobs.ExitPartial)
	}
	return 0
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

// Command cacheclip answers large batches of retrieval-augmented questions by
// reusing per-chunk KV caches and recomputing only the tokens that matter.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"demo", "generate a small task, build shards, run full/reuse/cacheclip, print a summary", cmdDemo},
		{"eval", "run tasks × methods × ratios through the job path and write a report", cmdEval},
		{"agreement", "per primary layer, how the auxiliary's attention agrees with the primary's", cmdAgreement},
		{"run", "run a batch job: questions Parquet in, answers dataset out", cmdRun},
		{"stats", "merge the statistics of an output dataset's shards", cmdStats},
		{"shards", "build, verify, inspect or gc a KV shard store", cmdShards},
		{"answer", "answer one question over chunk files by hand", cmdAnswer},
		{"generate", "generate text from a model directory (plain or chat prompt)", cmdGenerate},
		{"convert", "write a GGUF file out as a Hugging Face model directory", cmdConvert},
		{"testmodel", "write a generated random test model as a Hugging Face directory", cmdTestModel},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: cacheclip COMMAND [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'cacheclip COMMAND -h' for a command's flags.")
}

func main() {
	os.Exit(mainCode(os.Args[1:], os.Stdout, os.Stderr))
}

func mainCode(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "cacheclip: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"cacheclip/jobs"
	"cacheclip/prefill"
	"cacheclip/progress"
	"cacheclip/runner"
)

// splitChunks takes the files after --chunks (up to the next flag) out of args,
// since the flag package gives a flag one value.
func splitChunks(args []string) (rest, files []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--chunks" || a == "-chunks" {
			for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
				files = append(files, args[i])
			}
			continue
		}
		if v, ok := strings.CutPrefix(a, "--chunks="); ok {
			files = append(files, v)
			continue
		}
		rest = append(rest, a)
	}
	return rest, files
}

func cmdAnswer(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	rest, chunkFiles := splitChunks(args)
	fs := flag.NewFlagSet("answer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: cacheclip answer --model DIR [--aux DIR] [--method cacheclip] [--ratio 0.2] [--method-param key=value]… [--store DIR] --chunks a.txt b.txt … --question \"…\"")
		fmt.Fprintln(stderr, "The engine flags are those of cacheclip run (docs/JOBS.md).")
		fs.PrintDefaults()
	}
	sf := jobs.RegisterEngineFlags(fs)
	question := fs.String("question", "", "the question (required)")
	if err := fs.Parse(rest); err != nil {
		return int(jobs.ExitBadConfig)
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "cacheclip answer: "+format+"\n", a...)
		return int(jobs.ExitBadConfig)
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected arguments %q (chunk files go after --chunks)", fs.Args())
	}
	spec, err := sf.ResolveEngine()
	if err != nil {
		return usageErr("%v", err)
	}
	if strings.TrimSpace(*question) == "" {
		return usageErr("--question is required")
	}
	q := prefill.Query{Question: *question}
	for _, f := range chunkFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(stderr, "cacheclip answer: chunk: %v\n", err)
			return 1
		}
		q.Chunks = append(q.Chunks, string(b))
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "cacheclip answer: %v\n", err)
		return 1
	}
	eng, err := runner.NewEngine(ctx, spec, progress.NewLogger(stderr, spec.LogFormat, slog.LevelWarn))
	if err != nil {
		return usageErr("%v", err)
	}
	defer eng.Close()
	start := time.Now()
	ans, err := eng.Query(ctx, q)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return 130
		}
		return fail(err)
	}
	st := ans.Stats
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	fmt.Fprintln(stdout, strings.TrimSpace(ans.Text))
	fmt.Fprintf(stdout, "\nmethod %s, ratio %.3g\n", st.Method, st.Ratio)
	fmt.Fprintf(stdout, "tokens: prefix %d, context %d, question %d; recomputed %d context tokens; generated %d (%s)\n",
		st.PrefixTokens, st.ContextTokens, st.QuestionTokens, st.RecomputedTokens, len(ans.IDs), ans.Reason)
	fmt.Fprintf(stdout, "answer ids: %v\n", ans.IDs)
	if len(ans.Selected) > 0 && len(ans.Selected) <= 64 {
		fmt.Fprintf(stdout, "recomputed context tokens: %v\n", ans.Selected)
	}
	fmt.Fprintf(stdout, "time: load %s, assembly %s, aux %s, recompute %s, ttft %s, decode %s, total %s\n",
		ms(st.Load), ms(st.Assembly), ms(st.Aux), ms(st.Recompute), ms(st.TTFT), ms(ans.Decode), ms(time.Since(start)))
	return 0
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"cacheclip/jobs"
	"cacheclip/kvshards/s3store"
	"cacheclip/progress"
	"cacheclip/runner"
)

// cmdRun runs a batch job: `cacheclip run --questions … --out …` or `--job job.yaml`.
// The exit code tells schedulers how it ended (docs/JOBS.md).
func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sf := jobs.RegisterFlags(fs)
	progressMode := fs.String("progress", "auto", "progress display: auto, bar, log or none")
	if err := fs.Parse(args); err != nil {
		return int(jobs.ExitBadConfig)
	}
	spec, err := sf.Resolve()
	if err != nil {
		fmt.Fprintf(stderr, "cacheclip run: %v\n", err)
		return int(jobs.ExitBadConfig)
	}
	log := progress.NewLogger(stderr, spec.LogFormat, slog.LevelInfo)
	mode, err := progress.ParseMode(*progressMode)
	if err != nil {
		fmt.Fprintf(stderr, "cacheclip run: %v\n", err)
		return int(jobs.ExitBadConfig)
	}
	if err := os.MkdirAll(spec.Out, 0o755); err != nil {
		fmt.Fprintf(stderr, "cacheclip run: output directory: %v\n", err)
		return int(jobs.ExitBadConfig)
	}
	if path, err := spec.WriteEffective(); err != nil {
		fmt.Fprintf(stderr, "cacheclip run: %v\n", err)
		return int(jobs.ExitInternal)
	} else {
		log.Info("effective configuration written", "path", path)
	}
	st, err := runJob(ctx, spec, sf.Given("max-errors"), log, mode, stderr)
	code := jobs.ExitCodeOf(err, ctx.Err() != nil, &st, spec.MaxErrors)
	if err != nil {
		log.Error("job ended", "error", err, "exit_code", int(code), "meaning", code.String())
	} else if code != jobs.ExitOK {
		log.Warn("job ended", "exit_code", int(code), "meaning", code.String(), "errors", st.Errors)
	}
	if err == nil || errors.Is(err, context.Canceled) {
		printStats(stdout, &st)
	}
	return int(code)
}

func runJob(ctx context.Context, spec jobs.Spec, budgetGiven bool, log *slog.Logger, mode progress.Mode, stderr io.Writer) (jobs.Stats, error) {
	var texts runner.ChunkTexts
	if spec.Corpus != "" {
		c, err := jobs.LoadCorpus(ctx, spec.Corpus, jobs.CorpusOptions{})
		if err != nil {
			return jobs.Stats{}, &jobs.ConfigError{Err: err}
		}
		texts = c
	}
	eng, err := runner.NewEngine(ctx, spec, log)
	if errors.Is(err, s3store.ErrUnreachable) {
		return jobs.Stats{}, err // an outage, not a bad setting: exit 1, retried by schedulers
	}
	if err != nil {
		return jobs.Stats{}, &jobs.ConfigError{Err: err}
	}
	defer eng.Close()
	return runner.Run(ctx, runner.Options{Spec: spec, Stages: eng, Corpus: texts, Logger: log, MaxErrorsGiven: budgetGiven,
		Progress: func(total int64) progress.Reporter {
			return progress.New(progress.Options{Mode: mode, Description: "answering", Unit: "rows", Total: total, Out: stderr, Logger: log})
		}})
}

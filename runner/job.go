package runner

import (
	"context"
	"log/slog"

	"cacheclip/jobs"
	"cacheclip/progress"
)

// RunSpec runs the job a spec describes: it loads the corpus, builds the
// engine from the spec and runs the stages. Errors before any work (a bad
// corpus, model or store) are ConfigErrors. progress may be nil.
func RunSpec(ctx context.Context, spec jobs.Spec, log *slog.Logger, progress func(total int64) progress.Reporter) (jobs.Stats, error) {
	var texts ChunkTexts
	if spec.Corpus != "" {
		c, err := jobs.LoadCorpus(ctx, spec.Corpus, jobs.CorpusOptions{})
		if err != nil {
			return jobs.Stats{}, &jobs.ConfigError{Err: err}
		}
		texts = c
	}
	eng, err := NewModelEngine(ctx, spec, log)
	if err != nil {
		return jobs.Stats{}, &jobs.ConfigError{Err: err}
	}
	defer eng.Close()
	return Run(ctx, Options{Spec: spec, Engine: eng, Corpus: texts, Logger: log, Progress: progress})
}

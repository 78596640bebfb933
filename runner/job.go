package runner

import (
	"context"
	"errors"

	"cacheclip/jobs"
	"cacheclip/kvshards/s3store"
)

// RunSpec runs the job o.Spec describes: it loads the corpus and builds the
// engine from the spec (o.Stages and o.Corpus are set here), then runs the
// stages with the rest of o. Errors before any work (a bad corpus, model or
// store) are ConfigErrors, except an unreachable object store (an outage).
func RunSpec(ctx context.Context, o Options) (jobs.Stats, error) {
	if o.Spec.Corpus != "" {
		c, err := jobs.LoadCorpus(ctx, o.Spec.Corpus, jobs.CorpusOptions{})
		if err != nil {
			return jobs.Stats{}, &jobs.ConfigError{Err: err}
		}
		o.Corpus = c
	}
	eng, err := NewEngine(ctx, o.Spec, o.Logger)
	if errors.Is(err, s3store.ErrUnreachable) {
		return jobs.Stats{}, err // an outage, not a bad setting: exit 1, retried by schedulers
	}
	if err != nil {
		return jobs.Stats{}, &jobs.ConfigError{Err: err}
	}
	defer eng.Close()
	o.Stages = eng
	return Run(ctx, o)
}

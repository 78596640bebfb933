// Package runner runs one batch job: the stages of docs/ARCHITECTURE.md (read, plan, load
// shards, auxiliary scoring, primary prefill and decode, write) wired over the
// jobs I/O, the pipeline executor and the Stages that do the model work (an
// Engine, built from a jobs.Spec by NewEngine).
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"cacheclip/jobs"
	"cacheclip/methods"
	"cacheclip/pipeline"
	"cacheclip/progress"
)

// Work is one question as it flows through the stages.
type Work struct {
	Q      jobs.Question
	Texts  []string // chunk texts, in prompt order
	State  any      // the engine's per-question state
	Err    error    // set: the row is written with status=error
	Result jobs.Result
	// Stage timings filled by the runner; the engine fills the prefill/decode ones.
	planT, loadT, auxT time.Duration
	stage              string // the stage that failed the question
}

// Fail marks the work as failed (first error wins).
func (w *Work) Fail(err error) {
	if w.Err == nil {
		w.Err = err
	}
}

// Stages is the model side of a job, stage by stage (Engine is the real one;
// tests run the runner over fakes). Plan, Load and Score run per question on CPU
// workers ahead of Answer, which serves a whole batch on the primary model, so
// the auxiliary scoring of batch i+1 overlaps the primary's work on batch i.
// Errors returned for one question fail that question only; Answer reports
// per-question failures through Work.Fail and returns an error only when the
// whole batch cannot go on.
type Stages interface {
	Plan(ctx context.Context, w *Work) error
	Load(ctx context.Context, w *Work) error
	Score(ctx context.Context, w *Work) error
	Answer(ctx context.Context, batch []*Work) error
	// Counters are exported into stats.json (shard cache hits, misses, bytes).
	Counters() map[string]int64
}

// Allocator is a Stages that also works on a whole batch once every question
// of it is scored (Engine: the adaptive budget, spread over the batch). A
// batch is batch_size questions in read order (after reordering), less those
// that failed before; an error fails the batch's scored questions.
type Allocator interface {
	Allocate(ctx context.Context, batch []*Work) error
}

// deviceNamer is a Stages that says where its primary model runs (Engine:
// "cpu" or "cuda:N (name)"); Stages without it are recorded as "cpu".
type deviceNamer interface{ Device() string }

func stagesDevice(s Stages) string {
	if d, ok := s.(deviceNamer); ok && d.Device() != "" {
		return d.Device()
	}
	return "cpu"
}

// ChunkTexts resolves chunk ids (jobs.Corpus or jobs.CorpusIndex).
type ChunkTexts interface {
	Text(chunkID string) (string, bool)
}

// Options are what the runner needs beyond the spec.
type Options struct {
	Spec     jobs.Spec
	Stages   Stages
	Corpus   ChunkTexts // nil: chunk ids are resolved by the engine alone
	Logger   *slog.Logger
	Progress func(total int64) progress.Reporter
	// Overlap off runs the stages one batch at a time (for measuring the overlap).
	NoOverlap bool
	// MaxErrorsGiven says the user set Spec.MaxErrors explicitly; only then
	// may a rerun change the budget the dataset was started with.
	MaxErrorsGiven bool
}

// Run executes the job into spec.Out and returns the shard's statistics.
func Run(ctx context.Context, o Options) (jobs.Stats, error) {
	spec := o.Spec
	device := stagesDevice(o.Stages)
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	qr, err := jobs.OpenQuestions(spec.Questions, jobs.QuestionsOptions{BatchSize: max(256, spec.BatchSize), Partition: spec.Partition, Choices: spec.Task == jobs.TaskLabel})
	if err != nil {
		return jobs.Stats{}, &jobs.ConfigError{Err: err}
	}
	defer qr.Close()
	out, err := jobs.OpenOutput(ctx, jobs.OutputOptions{Dir: spec.Out, Partition: spec.Partition, Passthrough: qr.PassthroughFields(),
		PartRows: spec.PartRows, CommitInterval: spec.CommitInterval, Diagnostics: spec.Diagnostics, Label: spec.Task == jobs.TaskLabel, Logger: log,
		MaxErrors: &spec.MaxErrors, MaxErrorsGiven: o.MaxErrorsGiven, LeaseTimeout: spec.LeaseTimeout})
	if err != nil {
		return jobs.Stats{}, err
	}
	committedBefore := out.NumCommitted()
	budget := out.Budget()
	before := out.Stats()
	var rep progress.Reporter = nopReporter{}
	if o.Progress != nil {
		rep = o.Progress(qr.NumRows())
	}
	defer rep.Done()
	if committedBefore > 0 {
		log.Info("resuming", "out", spec.Out, "committed_rows", committedBefore)
		rep.Add(int(committedBefore))
	}

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p := pipeline.New(runCtx)
	buf := spec.Prefetch
	if o.NoOverlap {
		buf = 0
	}
	var seen, failed atomic.Int64
	// The budget counts the shard's error rows of every run, so that a retry
	// cannot launder a budget an earlier run exceeded.
	failed.Store(before.Errors + before.Duplicates)
	batchSize := max(1, spec.BatchSize)
	// Without overlap a batch enters only after the previous one is written, so
	// stages never work at the same time (the baseline the overlap is measured against).
	turn := make(chan struct{}, 1)
	turn <- struct{}{}
	batches := pipeline.Source(p, pipeline.Opts{Name: "read", Buffer: buf}, func(ctx context.Context, emit func([]*Work) error) error {
		var window []jobs.Question
		flush := func() error {
			if spec.ReorderWindow > 1 {
				window = jobs.Reorder(window)
			}
			for len(window) > 0 {
				n := min(batchSize, len(window))
				b := make([]*Work, n)
				for i := range b {
					b[i] = &Work{Q: window[i]}
				}
				window = window[n:]
				if o.NoOverlap {
					select {
					case <-turn:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				if err := emit(b); err != nil {
					return err
				}
			}
			return nil
		}
		for {
			qs, err := qr.Next(ctx)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("read questions: %w", err)
			}
			for _, q := range qs {
				if q.Err != nil && q.Err.Duplicate {
					log.Warn("duplicate query_id: later occurrence not answered", "query_id", q.QueryID, "row", q.Row)
					continue
				}
				if out.Committed(q.QueryID) {
					continue
				}
				window = append(window, q)
				if len(window) >= max(batchSize, spec.ReorderWindow) {
					if err := flush(); err != nil {
						return err
					}
				}
			}
		}
		return flush()
	})
	// stage runs fn on each question of a batch, then batchFn (when not nil)
	// on the batch's questions that are still live.
	stage := func(in <-chan []*Work, name string, workers int, fn func(ctx context.Context, w *Work) error, batchFn func(ctx context.Context, b []*Work) error, timer func(w *Work) *time.Duration) <-chan []*Work {
		fn = failsIn(name, fn)
		return pipeline.Map(p, in, pipeline.Opts{Name: name, Workers: max(1, workers), Ordered: true, Buffer: buf}, func(ctx context.Context, b []*Work) ([]*Work, error) {
			var live []*Work
			for _, w := range b {
				if w.Err != nil {
					continue
				}
				t0 := time.Now()
				if err := fn(ctx, w); err != nil {
					if ctx.Err() != nil {
						return nil, ctx.Err()
					}
					w.Fail(err)
				}
				*timer(w) += time.Since(t0)
				if w.Err == nil {
					live = append(live, w)
				}
			}
			if batchFn != nil && len(live) > 0 {
				t0 := time.Now()
				err := batchFn(ctx, live)
				// The batch's work is charged to its questions in equal shares.
				share := time.Since(t0) / time.Duration(len(live))
				for _, w := range live {
					*timer(w) += share
				}
				if err != nil {
					if ctx.Err() != nil {
						return nil, ctx.Err()
					}
					for _, w := range live {
						w.Fail(err)
						if w.stage == "" {
							w.stage = name
						}
					}
				}
			}
			return b, nil
		})
	}
	var allocate func(ctx context.Context, b []*Work) error
	if a, ok := o.Stages.(Allocator); ok {
		allocate = a.Allocate
	}
	planned := stage(batches, "plan", spec.PlanWorkers, func(ctx context.Context, w *Work) error {
		if w.Q.Err != nil {
			return w.Q.Err
		}
		if o.Corpus != nil {
			w.Texts = make([]string, len(w.Q.ChunkIDs))
			var missing []string
			for i, id := range w.Q.ChunkIDs {
				t, ok := o.Corpus.Text(id)
				if !ok {
					missing = append(missing, id)
				}
				w.Texts[i] = t
			}
			if len(missing) > 0 {
				return &jobs.RowError{File: spec.Questions, Row: w.Q.Row, Column: "chunk_ids",
					Msg: fmt.Sprintf("unknown chunk id %s (not in the corpus)", quoteList(missing))}
			}
		}
		return o.Stages.Plan(ctx, w)
	}, nil, func(w *Work) *time.Duration { return &w.planT })
	loaded := stage(planned, "load", spec.LoadWorkers, o.Stages.Load, nil, func(w *Work) *time.Duration { return &w.loadT })
	scored := stage(loaded, "aux", spec.AuxWorkers, o.Stages.Score, allocate, func(w *Work) *time.Duration { return &w.auxT })
	answered := pipeline.Map(p, scored, pipeline.Opts{Name: "primary", Workers: 1, Buffer: buf}, func(ctx context.Context, b []*Work) ([]*Work, error) {
		var live []*Work
		for _, w := range b {
			if w.Err == nil {
				live = append(live, w)
			}
		}
		if len(live) > 0 {
			if err := o.Stages.Answer(ctx, live); err != nil {
				return nil, fmt.Errorf("primary: %w", err)
			}
			for _, w := range live {
				if w.Err != nil && w.stage == "" {
					w.stage = "primary"
				}
			}
		}
		return b, nil
	})
	pipeline.Sink(p, answered, pipeline.Opts{Name: "write"}, func(ctx context.Context, b []*Work) error {
		for _, w := range b {
			r := finishResult(w, spec, device)
			if err := out.Write(ctx, r); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			n := seen.Add(1)
			if r.Status != jobs.StatusOK {
				f := failed.Add(1)
				log.Warn("row failed", "query_id", r.QueryID, "error", r.Error)
				if budget.ExceededEarly(f, qr.NumRows()) {
					cancel(fmt.Errorf("%w: %d rows of this shard failed over all runs (%d in this run of %d rows seen), max_errors %s",
						jobs.ErrBudgetExceeded, f, f-before.Errors-before.Duplicates, n, budget))
					return context.Cause(ctx)
				}
			}
			rep.Add(1)
		}
		if o.NoOverlap {
			turn <- struct{}{}
		}
		return nil
	})
	runErr := p.Wait()
	if cause := context.Cause(runCtx); runErr != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		runErr = cause
	}
	out.SetRunCounters(p.BusyByStage(), o.Stages.Counters())
	out.SetDevice(device)
	out.SetDuplicates(qr.Stats().Duplicates)
	if runErr != nil {
		// Keep every answered row: commit what was written, then report.
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer ccancel()
		if cerr := out.Commit(cctx); cerr != nil {
			log.Error("commit after failure", "error", cerr)
		}
		st := out.Stats()
		_ = out.Close()
		return st, runErr
	}
	st, err := out.Finish(ctx)
	if err != nil {
		return st, err
	}
	if st.BudgetExceeded {
		log.Error("error budget exceeded over all runs of this shard: the dataset gets no _SUCCESS", "errors", st.Errors,
			"duplicates", st.Duplicates, "rows", st.Rows, "max_errors", budget.String())
	}
	log.Info("job done", "rows", st.Rows, "ok", st.OK, "errors", st.Errors, "questions_per_s", st.QuestionsPerSec)
	return st, nil
}

func finishResult(w *Work, spec jobs.Spec, device string) jobs.Result {
	if w.Err != nil {
		r := jobs.ErrorResult(&w.Q, spec.Method, requestedRatio(spec), rowError(w, spec.Questions))
		r.Device = device
		return r
	}
	r := w.Result
	r.QueryID = w.Q.QueryID
	r.Status = jobs.StatusOK
	r.Method = spec.Method
	r.RequestedRatio = requestedRatio(spec)
	r.Device = device
	r.Passthrough = w.Q.Passthrough
	r.LoadMS = ms(w.loadT)
	r.AuxMS = ms(w.auxT)
	// TTFT: this question's own path to its first token (plan, load, aux, prefill),
	// not time spent queued behind others.
	r.TTFTMS = ms(w.planT) + r.LoadMS + r.AuxMS + r.PrefillMS
	r.TotalMS = r.TTFTMS + r.DecodeMS
	return r
}

// requestedRatio is the job's ratio for a method that takes one (the
// requested_ratio column), nil for the others.
func requestedRatio(spec jobs.Spec) *float64 {
	e, err := methods.Default().Lookup(spec.Method)
	if err != nil || !e.TakesRatio {
		return nil
	}
	r := spec.Ratio
	return &r
}

// failsIn records which stage failed a question, for rowError.
func failsIn(stage string, fn func(ctx context.Context, w *Work) error) func(ctx context.Context, w *Work) error {
	return func(ctx context.Context, w *Work) error {
		err := fn(ctx, w)
		if err != nil && w.stage == "" {
			w.stage = stage
		}
		return err
	}
}

// stageColumns names the input columns behind a stage's failure: the layout
// and the model work depend on both the question and its chunks; loading
// depends on the chunks.
var stageColumns = map[string]string{"plan": "question, chunk_ids", "load": "chunk_ids", "aux": "question, chunk_ids", "primary": "question, chunk_ids"}

// rowError makes every error row name the file, row, column and cause: errors
// of the reader and of the corpus lookup already do (*jobs.RowError); the
// engine's are wrapped here.
func rowError(w *Work, questions string) error {
	var re *jobs.RowError
	if errors.As(w.Err, &re) {
		return w.Err
	}
	col := stageColumns[w.stage]
	if col == "" {
		col = "question, chunk_ids"
	}
	return &jobs.RowError{File: questions, Row: w.Q.Row, Column: col, Msg: w.stage + ": " + w.Err.Error()}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func quoteList(ids []string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = fmt.Sprintf("%q", id)
	}
	return strings.Join(q, ", ")
}

type nopReporter struct{}

func (nopReporter) Add(int)        {}
func (nopReporter) SetTotal(int64) {}
func (nopReporter) Done()          {}

// Package pipeline is a small generic staged executor: stages are goroutines
// joined by bounded channels under one errgroup. A full channel blocks its
// producer (backpressure), so the items alive in a pipeline are bounded by the
// sum of the stages' buffers and workers; the first error or a cancelled
// context stops every stage; each stage accounts the time spent inside its
// function, for statistics.
package pipeline

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Pipeline runs connected stages until the source ends, a stage fails or the
// context is cancelled.
type Pipeline struct {
	g      *errgroup.Group
	ctx    context.Context
	mu     sync.Mutex
	stages []*stageStats
}

// New starts an empty pipeline whose stages run under ctx.
func New(ctx context.Context) *Pipeline {
	g, gctx := errgroup.WithContext(ctx)
	return &Pipeline{g: g, ctx: gctx}
}

// Context is cancelled when any stage fails or the parent is cancelled.
func (p *Pipeline) Context() context.Context { return p.ctx }

// Wait blocks until every stage has returned and gives the first error.
func (p *Pipeline) Wait() error { return p.g.Wait() }

// Opts configure a stage.
type Opts struct {
	Name string
	// Workers run the stage function concurrently (default 1).
	Workers int
	// Ordered makes a multi-worker stage emit results in input order.
	Ordered bool
	// Buffer is the capacity of the stage's output channel (default 0: a
	// hand-off). An ordered stage holds at most Workers+Buffer items between
	// taking them in and emitting them.
	Buffer int
}

func (o Opts) norm() Opts {
	if o.Workers < 1 {
		o.Workers = 1
	}
	if o.Buffer < 0 {
		o.Buffer = 0
	}
	return o
}

// StageStats are one stage's counters.
type StageStats struct {
	Name  string
	Items int64         // items the stage function has returned
	Busy  time.Duration // time inside the stage function, summed over workers
}

type stageStats struct {
	name  string
	items atomic.Int64
	busy  atomic.Int64
}

func (p *Pipeline) register(name string) *stageStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	if name == "" {
		name = fmt.Sprintf("stage%d", len(p.stages))
	}
	s := &stageStats{name: name}
	p.stages = append(p.stages, s)
	return s
}

// Stats returns every stage's counters, in the order stages were added. It
// may be called while the pipeline runs.
func (p *Pipeline) Stats() []StageStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]StageStats, len(p.stages))
	for i, s := range p.stages {
		out[i] = StageStats{Name: s.name, Items: s.items.Load(), Busy: time.Duration(s.busy.Load())}
	}
	return out
}

// BusyByStage is Stats as a map from stage name to busy time (stages sharing
// a name are summed).
func (p *Pipeline) BusyByStage() map[string]time.Duration {
	m := map[string]time.Duration{}
	for _, s := range p.Stats() {
		m[s.Name] += s.Busy
	}
	return m
}

// timed runs f, charging its duration to s. A panic in a stage function is
// turned into an error naming the stage, so one bad item cannot crash a job
// without its committed output being kept.
func timed(s *stageStats, f func() error) (err error) {
	t0 := time.Now()
	defer func() {
		s.busy.Add(int64(time.Since(t0)))
		if r := recover(); r != nil {
			err = fmt.Errorf("stage %s panicked: %v\n%s", s.name, r, debug.Stack())
		}
	}()
	return f()
}

func send[T any](ctx context.Context, ch chan<- T, v T) error {
	select {
	case ch <- v:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Source adds a stage that produces items by calling emit; emit blocks while
// downstream is full and fails once the pipeline is cancelled. Busy time
// includes time blocked in emit only if fn measures it so; here it is the
// whole of fn minus the time spent waiting in emit.
func Source[T any](p *Pipeline, o Opts, fn func(ctx context.Context, emit func(T) error) error) <-chan T {
	o = o.norm()
	st := p.register(o.Name)
	out := make(chan T, o.Buffer)
	p.g.Go(func() error {
		defer close(out)
		var blocked time.Duration
		emit := func(v T) error {
			t0 := time.Now()
			err := send(p.ctx, out, v)
			blocked += time.Since(t0)
			if err == nil {
				st.items.Add(1)
			}
			return err
		}
		err := timed(st, func() error { return fn(p.ctx, emit) })
		st.busy.Add(-int64(blocked))
		if err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
		return nil
	})
	return out
}

// Map adds a stage applying fn to every item of in with o.Workers workers.
func Map[In, Out any](p *Pipeline, in <-chan In, o Opts, fn func(ctx context.Context, v In) (Out, error)) <-chan Out {
	o = o.norm()
	st := p.register(o.Name)
	out := make(chan Out, o.Buffer)
	if o.Workers == 1 || !o.Ordered {
		var wg sync.WaitGroup
		for w := 0; w < o.Workers; w++ {
			wg.Add(1)
			p.g.Go(func() error {
				defer wg.Done()
				for v := range recv(p.ctx, in) {
					var r Out
					if err := timed(st, func() (err error) { r, err = fn(p.ctx, v); return }); err != nil {
						return fmt.Errorf("%s: %w", st.name, err)
					}
					st.items.Add(1)
					if err := send(p.ctx, out, r); err != nil {
						return err
					}
				}
				return p.ctx.Err()
			})
		}
		p.g.Go(func() error { wg.Wait(); close(out); return nil })
		return out
	}
	mapOrdered(p, st, in, out, o, fn)
	return out
}

type seqItem[T any] struct {
	seq int64
	v   T
}

// mapOrdered numbers items, lets workers finish in any order and re-emits in
// input order. tokens bounds the items between intake and emission, so a slow
// item cannot make the others pile up without limit.
func mapOrdered[In, Out any](p *Pipeline, st *stageStats, in <-chan In, out chan<- Out, o Opts, fn func(context.Context, In) (Out, error)) {
	tokens := make(chan struct{}, o.Workers+o.Buffer)
	work := make(chan seqItem[In])
	done := make(chan seqItem[Out], o.Workers)
	p.g.Go(func() error {
		defer close(work)
		var seq int64
		for v := range recv(p.ctx, in) {
			if err := send(p.ctx, tokens, struct{}{}); err != nil {
				return err
			}
			if err := send(p.ctx, work, seqItem[In]{seq, v}); err != nil {
				return err
			}
			seq++
		}
		return p.ctx.Err()
	})
	var wg sync.WaitGroup
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		p.g.Go(func() error {
			defer wg.Done()
			for it := range recv(p.ctx, work) {
				var r Out
				if err := timed(st, func() (err error) { r, err = fn(p.ctx, it.v); return }); err != nil {
					return fmt.Errorf("%s: %w", st.name, err)
				}
				st.items.Add(1)
				if err := send(p.ctx, done, seqItem[Out]{it.seq, r}); err != nil {
					return err
				}
			}
			return p.ctx.Err()
		})
	}
	p.g.Go(func() error { wg.Wait(); close(done); return nil })
	p.g.Go(func() error {
		defer close(out)
		pending := map[int64]Out{}
		var next int64
		for it := range recv(p.ctx, done) {
			pending[it.seq] = it.v
			for {
				v, ok := pending[next]
				if !ok {
					break
				}
				delete(pending, next)
				if err := send(p.ctx, out, v); err != nil {
					return err
				}
				<-tokens
				next++
			}
		}
		return p.ctx.Err()
	})
}

// Process adds a single-goroutine stage that may emit any number of items per
// input and keep state across items (batching, reordering windows). flush,
// if not nil, runs after the input ends, to emit what is still held.
func Process[In, Out any](p *Pipeline, in <-chan In, o Opts, fn func(ctx context.Context, v In, emit func(Out) error) error, flush func(ctx context.Context, emit func(Out) error) error) <-chan Out {
	o = o.norm()
	st := p.register(o.Name)
	out := make(chan Out, o.Buffer)
	p.g.Go(func() error {
		defer close(out)
		var blocked time.Duration
		emit := func(v Out) error {
			t0 := time.Now()
			err := send(p.ctx, out, v)
			blocked += time.Since(t0)
			return err
		}
		for v := range recv(p.ctx, in) {
			if err := timed(st, func() error { return fn(p.ctx, v, emit) }); err != nil {
				return fmt.Errorf("%s: %w", st.name, err)
			}
			st.items.Add(1)
		}
		if err := p.ctx.Err(); err != nil {
			return err
		}
		if flush != nil {
			if err := timed(st, func() error { return flush(p.ctx, emit) }); err != nil {
				return fmt.Errorf("%s: %w", st.name, err)
			}
		}
		st.busy.Add(-int64(blocked))
		return nil
	})
	return out
}

// Sink adds the final stage consuming every item of in.
func Sink[T any](p *Pipeline, in <-chan T, o Opts, fn func(ctx context.Context, v T) error) {
	o = o.norm()
	st := p.register(o.Name)
	for w := 0; w < o.Workers; w++ {
		p.g.Go(func() error {
			for v := range recv(p.ctx, in) {
				if err := timed(st, func() error { return fn(p.ctx, v) }); err != nil {
					return fmt.Errorf("%s: %w", st.name, err)
				}
				st.items.Add(1)
			}
			return p.ctx.Err()
		})
	}
}

// recv yields the items of ch until it is closed or ctx is cancelled.
func recv[T any](ctx context.Context, ch <-chan T) func(yield func(T) bool) {
	return func(yield func(T) bool) {
		for {
			select {
			case v, ok := <-ch:
				if !ok || !yield(v) {
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}
}

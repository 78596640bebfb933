package pipeline

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func count(n int) func(ctx context.Context, emit func(int) error) error {
	return func(ctx context.Context, emit func(int) error) error {
		for i := 0; i < n; i++ {
			if err := emit(i); err != nil {
				return err
			}
		}
		return nil
	}
}

// noLeaks fails the test if goroutines started during it are still alive.
func noLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(2 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			t.Errorf("%d goroutines leaked:\n%s", n-before, buf[:runtime.Stack(buf, true)])
		}
	})
}

func TestOrderAndCompleteness(t *testing.T) {
	cases := []struct {
		name    string
		workers int
		ordered bool
		buffer  int
	}{
		{"one worker", 1, false, 0},
		{"ordered 4 workers", 4, true, 0},
		{"ordered 8 workers buffered", 8, true, 3},
		{"unordered 4 workers", 4, false, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			noLeaks(t)
			p := New(context.Background())
			src := Source(p, Opts{Name: "src"}, count(500))
			sq := Map(p, src, Opts{Name: "square", Workers: c.workers, Ordered: c.ordered, Buffer: c.buffer},
				func(ctx context.Context, v int) (int, error) {
					// Uneven work so that workers finish out of order.
					time.Sleep(time.Duration((v*7919)%5) * 50 * time.Microsecond)
					return v * v, nil
				})
			var got []int
			Sink(p, sq, Opts{Name: "sink"}, func(ctx context.Context, v int) error { got = append(got, v); return nil })
			if err := p.Wait(); err != nil {
				t.Fatal(err)
			}
			if len(got) != 500 {
				t.Fatalf("%d items", len(got))
			}
			seen := map[int]bool{}
			inOrder := true
			for i, v := range got {
				seen[v] = true
				if v != i*i {
					inOrder = false
				}
			}
			if len(seen) != 500 {
				t.Errorf("duplicates or losses: %d distinct", len(seen))
			}
			if (c.ordered || c.workers == 1) && !inOrder {
				t.Error("order not preserved")
			}
			for _, s := range p.Stats() {
				if s.Items != 500 {
					t.Errorf("stage %s counted %d items", s.Name, s.Items)
				}
			}
		})
	}
}

// A slow sink must stall the source: the items produced but not consumed stay
// within the buffers and workers of the stages in between.
func TestBackpressureBoundsInFlight(t *testing.T) {
	cases := []struct {
		name            string
		workers, buffer int
		ordered         bool
	}{
		{"single", 1, 0, false},
		{"ordered", 4, 2, true},
		{"unordered", 3, 1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			noLeaks(t)
			var produced, consumed, maxInFlight atomic.Int64
			p := New(context.Background())
			src := Source(p, Opts{Name: "src", Buffer: 1}, func(ctx context.Context, emit func(int) error) error {
				for i := 0; i < 200; i++ {
					produced.Add(1)
					if d := produced.Load() - consumed.Load(); d > maxInFlight.Load() {
						maxInFlight.Store(d)
					}
					if err := emit(i); err != nil {
						return err
					}
				}
				return nil
			})
			m := Map(p, src, Opts{Name: "m", Workers: c.workers, Buffer: c.buffer, Ordered: c.ordered},
				func(ctx context.Context, v int) (int, error) { return v, nil })
			Sink(p, m, Opts{Name: "slow"}, func(ctx context.Context, v int) error {
				time.Sleep(100 * time.Microsecond)
				consumed.Add(1)
				return nil
			})
			if err := p.Wait(); err != nil {
				t.Fatal(err)
			}
			// src buffer 1 + being emitted 1 + map (workers holding + done/tokens
			// + out buffer) + the sink's item.
			bound := int64(1 + 1 + 2*c.workers + c.buffer + 1 + 1)
			if maxInFlight.Load() > bound {
				t.Errorf("in flight reached %d, bound %d", maxInFlight.Load(), bound)
			}
			if consumed.Load() != 200 {
				t.Errorf("consumed %d", consumed.Load())
			}
		})
	}
}

func TestErrorCancelsEveryStage(t *testing.T) {
	cases := []struct {
		name    string
		failAt  string
		workers int
		ordered bool
	}{
		{"map fails", "map", 3, true},
		{"sink fails", "sink", 2, false},
		{"source fails", "src", 1, false},
		{"map panics", "panic", 2, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			noLeaks(t)
			boom := errors.New("boom")
			p := New(context.Background())
			src := Source(p, Opts{Name: "src"}, func(ctx context.Context, emit func(int) error) error {
				for i := 0; ; i++ { // endless: only cancellation stops it
					if c.failAt == "src" && i == 50 {
						return boom
					}
					if err := emit(i); err != nil {
						return err
					}
				}
			})
			m := Map(p, src, Opts{Name: "map", Workers: c.workers, Ordered: c.ordered}, func(ctx context.Context, v int) (int, error) {
				if c.failAt == "map" && v == 100 {
					return 0, boom
				}
				if c.failAt == "panic" && v == 100 {
					panic("stage panics on purpose")
				}
				return v, nil
			})
			Sink(p, m, Opts{Name: "sink", Workers: c.workers}, func(ctx context.Context, v int) error {
				if c.failAt == "sink" && v == 100 {
					return boom
				}
				return nil
			})
			done := make(chan error)
			go func() { done <- p.Wait() }()
			select {
			case err := <-done:
				if c.failAt == "panic" {
					if err == nil || !strings.Contains(err.Error(), "stage map panicked") {
						t.Errorf("err = %v", err)
					}
				} else if !errors.Is(err, boom) || !strings.Contains(err.Error(), c.failAt) {
					t.Errorf("err = %v, want boom naming %s", err, c.failAt)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("pipeline did not stop after an error")
			}
		})
	}
}

func TestCancellationStopsAll(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithCancel(context.Background())
	p := New(ctx)
	var started atomic.Int64
	src := Source(p, Opts{Name: "src"}, func(ctx context.Context, emit func(int) error) error {
		for i := 0; ; i++ {
			if err := emit(i); err != nil {
				return err
			}
		}
	})
	m := Map(p, src, Opts{Name: "block", Workers: 4, Ordered: true}, func(ctx context.Context, v int) (int, error) {
		started.Add(1)
		<-ctx.Done() // a stage that honours its context
		return 0, ctx.Err()
	})
	Sink(p, m, Opts{Name: "sink"}, func(ctx context.Context, v int) error { return nil })
	for started.Load() < 4 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	errc := make(chan error)
	go func() { errc <- p.Wait() }()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancel did not stop the pipeline")
	}
}

func TestBusyTimeAndProcess(t *testing.T) {
	noLeaks(t)
	p := New(context.Background())
	src := Source(p, Opts{Name: "read"}, count(40))
	// Batch pairs: Process keeps state and flushes the odd one out.
	var held []int
	batches := Process(p, src, Opts{Name: "batch"}, func(ctx context.Context, v int, emit func([]int) error) error {
		held = append(held, v)
		if len(held) == 3 {
			b := held
			held = nil
			return emit(b)
		}
		return nil
	}, func(ctx context.Context, emit func([]int) error) error {
		if len(held) > 0 {
			return emit(held)
		}
		return nil
	})
	work := Map(p, batches, Opts{Name: "work", Workers: 2}, func(ctx context.Context, b []int) (int, error) {
		time.Sleep(5 * time.Millisecond)
		return len(b), nil
	})
	total := 0
	Sink(p, work, Opts{Name: "write"}, func(ctx context.Context, n int) error { total += n; return nil })
	t0 := time.Now()
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	wall := time.Since(t0)
	if total != 40 {
		t.Fatalf("total %d", total)
	}
	busy := p.BusyByStage()
	// 14 batches × 5ms of sleep in "work", spread over 2 workers.
	if w := busy["work"]; w < 14*5*time.Millisecond || w > 2*wall+10*time.Millisecond {
		t.Errorf("work busy %v (wall %v)", w, wall)
	}
	// The source and writer do almost nothing; time blocked on a full channel
	// is not busy time.
	if r := busy["read"]; r > busy["work"]/2 {
		t.Errorf("read busy %v vs work %v: blocking counted as busy", r, busy["work"])
	}
	for _, s := range p.Stats() {
		if s.Name == "batch" && s.Items != 40 {
			t.Errorf("batch items %d", s.Items)
		}
	}
}

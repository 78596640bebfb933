package kernels

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestTeamCoversEveryItemOnce: runTeam hands every index of [0,n) to exactly
// one part, for splits smaller and larger than the team, from several
// goroutines at once (the losers of the team's lock take Run), and back to
// back with gaps that let the helpers park and exit.
func TestTeamCoversEveryItemOnce(t *testing.T) {
	for _, threads := range []int{2, 3, 5} {
		p := NewPool(threads)
		var wg sync.WaitGroup
		for g := 0; g < 3; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for it := 0; it < 300; it++ {
					n := 1 + (it*7+g)%97
					grain := 1 + it%5
					hits := make([]atomic.Int32, n)
					p.runTeam(n, grain, func(lo, hi int) {
						for i := lo; i < hi; i++ {
							hits[i].Add(1)
						}
					})
					for i := range hits {
						if h := hits[i].Load(); h != 1 {
							t.Errorf("threads %d n %d grain %d: item %d done %d times", threads, n, grain, i, h)
							return
						}
					}
					if it%100 == 99 {
						time.Sleep(teamIdle + 10*time.Millisecond) // the helpers exit; the next job restarts them
					}
				}
			}(g)
		}
		wg.Wait()
	}
}

// TestTeamHelpersExitWhenIdle: a Pool holds no goroutines once its decode
// products stop.
func TestTeamHelpersExitWhenIdle(t *testing.T) {
	before := runtime.NumGoroutine()
	p := NewPool(4)
	var sum atomic.Int64
	p.runTeam(64, 1, func(lo, hi int) { sum.Add(int64(hi - lo)) })
	if sum.Load() != 64 {
		t.Fatalf("covered %d of 64", sum.Load())
	}
	if n := runtime.NumGoroutine(); n <= before {
		t.Fatalf("%d goroutines after a job, %d before: the team started no helpers", n, before)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines %v after the last job, %d before", n, 2*time.Second, before)
	}
}

// BenchmarkTeamDispatch: the cost of splitting one decode product over two
// threads, the work itself nearly nil (SmolLM2's 576 × 1536 down projection
// is 144 groups of four rows): Run starts a goroutine and waits on a
// WaitGroup per call, runTeam hands the part to a running helper. gap
// inserts the pause between products a decode step has (norms, attention on
// one thread).
func BenchmarkTeamDispatch(b *testing.B) {
	var sink atomic.Int64
	fn := func(lo, hi int) { sink.Add(int64(hi - lo)) }
	for _, gap := range []time.Duration{0, 20 * time.Microsecond} {
		for _, mode := range []string{"run", "team"} {
			b.Run(fmt.Sprintf("gap=%v/%s", gap, mode), func(b *testing.B) {
				p := NewPool(2)
				for b.Loop() {
					if mode == "run" {
						p.Run(144, 16, fn)
					} else {
						p.runTeam(144, 16, fn)
					}
					if gap > 0 {
						for t0 := time.Now(); time.Since(t0) < gap; {
						}
					}
				}
			})
		}
	}
}

package kernels

import (
	"fmt"
	"math/rand/v2"
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

// TestTeamHelpersExitWhenIdle: a decode product runs on the team's helpers,
// and a Pool holds none of them once its decode products stop. It counts the
// team's own helpers (their states), not the process's goroutines, which
// other tests' helpers may still be leaving.
func TestTeamHelpersExitWhenIdle(t *testing.T) {
	p := NewPool(4)
	var sum atomic.Int64
	p.runTeam(64, 1, func(lo, hi int) { sum.Add(int64(hi - lo)) })
	if sum.Load() != 64 {
		t.Fatalf("covered %d of 64", sum.Load())
	}
	if p.team == nil {
		t.Fatal("runTeam did not use the team")
	}
	live := func() int {
		n := 0
		for i := range p.team.workers {
			if p.team.workers[i].state.Load() != teamExited {
				n++
			}
		}
		return n
	}
	if live() == 0 {
		t.Fatal("the team started no helpers")
	}
	deadline := time.Now().Add(2 * time.Second)
	for live() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := live(); n > 0 {
		t.Fatalf("%d of %d helpers still live %v after the last job", n, len(p.team.workers), 2*time.Second)
	}
}

// TestTeamLongPartBlocks: a part that runs long after the caller's (a
// column split's, milliseconds on a loaded machine) still completes the
// job, with the caller blocked for it rather than spinning, and the team
// serves the jobs after it (the token the last part sends may be left over;
// it must not end a later job early). The caller takes part 0 and holds it
// until a helper has started part 1, which then outlasts the caller's
// spin.
func TestTeamLongPartBlocks(t *testing.T) {
	p := NewPool(2)
	for it := 0; it < 3; it++ {
		var started atomic.Int32
		var done [2]atomic.Bool
		p.runTeamSplit(2, func(lo, hi int) {
			started.Add(1)
			if lo == 0 {
				for started.Load() < 2 {
					time.Sleep(10 * time.Microsecond)
				}
			} else {
				time.Sleep(20 * teamWait)
			}
			done[lo].Store(true)
		})
		if !done[0].Load() || !done[1].Load() {
			t.Fatalf("iteration %d: runTeamSplit returned with parts done %v %v", it, done[0].Load(), done[1].Load())
		}
		// Short jobs right after it cover every item once.
		for k := 0; k < 50; k++ {
			hits := make([]atomic.Int32, 40)
			p.runTeam(40, 1, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					hits[i].Add(1)
				}
			})
			for i := range hits {
				if h := hits[i].Load(); h != 1 {
					t.Fatalf("iteration %d job %d: item %d done %d times", it, k, i, h)
				}
			}
		}
	}
	if p.team == nil || p.team.blocked.Load() == 0 {
		t.Fatal("no caller blocked on a long part")
	}
}

// BenchmarkTeamDispatch: the cost of splitting one decode product over two
// threads. empty: the work nearly nil (SmolLM2's 576 × 1536 down projection
// is 144 groups of four rows), so the figure is the dispatch alone; q4_1:
// that product itself (Q4_1, Q8Act). fork is Run (a goroutine started and a
// WaitGroup per call), team the helpers that stay. gap inserts the pause a
// decode step has between products (norms, attention on one thread).
func BenchmarkTeamDispatch(b *testing.B) {
	var sink atomic.Int64
	rng := rand.New(rand.NewPCG(3, 3))
	w := randQuantMat(rng, Q4_1, 576, 1536)
	w.Q8Act = true
	x, dst := randVec(rng, 1536), make([]float32, 576)
	for _, work := range []string{"empty", "q4_1"} {
		for _, gap := range []time.Duration{0, 20 * time.Microsecond} {
			for _, mode := range []string{"fork", "team"} {
				b.Run(fmt.Sprintf("%s/gap=%v/%s", work, gap, mode), func(b *testing.B) {
					p := NewPool(2)
					p.forkJoin = mode == "fork"
					for b.Loop() {
						if work == "empty" {
							p.runTeam(144, 16, func(lo, hi int) { sink.Add(int64(hi - lo)) })
						} else {
							MatMul(p, dst, x, 1, w)
						}
						for t0 := time.Now(); time.Since(t0) < gap; {
						}
					}
				})
			}
		}
	}
}

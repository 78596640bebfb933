package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// team hands short products — those of a decode step, and prefill's
// row-split products (matMulRowsWith) — to helper goroutines that stay
// alive between products: a decode token of SmolLM2-135M is ~210
// products of 30–110 µs, and Run's goroutine start and WaitGroup per product
// — above all waking a parked OS thread — costs a fair part of each. A
// helper spins for teamSpin after its part, so the next product finds it
// running; then it parks, and after teamIdle parked it exits, so a Pool
// holds no goroutines once decoding stops (and nothing outlives a dropped
// Pool for longer than that).
type team struct {
	mu      sync.Mutex // one caller at a time; a second one uses Run
	workers []teamWorker
	cur     atomic.Pointer[teamJob] // the job the helpers join (nil: none)
}

// teamJob is one product's split: parts of step items, claimed one at a
// time by whoever comes first — the caller included, so a helper the OS has
// not scheduled yet (a loaded machine) costs nothing but its share, which
// the caller then does itself. Fields other than the counters are fixed
// before the job is published.
type teamJob struct {
	fn         func(lo, hi int)
	n, step    int
	parts      int32
	next, done atomic.Int32
}

// do runs parts of j until none is left unclaimed.
func (j *teamJob) do() {
	for {
		i := j.next.Add(1) - 1
		if i >= j.parts {
			return
		}
		lo := int(i) * j.step
		j.fn(lo, min(lo+j.step, j.n))
		j.done.Add(1)
	}
}

// Helper states.
const (
	teamRunning  = iota // spinning or working
	teamSleeping        // parked on wake
	teamExited          // gone; the next job starts it again
)

type teamWorker struct {
	state atomic.Int32
	wake  chan struct{} // one token: a caller moved state sleeping → running
}

const (
	teamSpin = 50 * time.Microsecond
	teamIdle = 20 * time.Millisecond
)

func newTeam(helpers int) *team {
	t := &team{workers: make([]teamWorker, helpers)}
	for i := range t.workers {
		t.workers[i].wake = make(chan struct{}, 1)
		t.workers[i].state.Store(teamExited)
	}
	return t
}

// run calls fn over [0,n) in parts of step items; it reports false, having
// done nothing, when another caller holds the team.
func (t *team) run(n, step int, fn func(lo, hi int)) bool {
	if !t.mu.TryLock() {
		return false
	}
	defer t.mu.Unlock()
	j := &teamJob{fn: fn, n: n, step: step, parts: int32((n + step - 1) / step)}
	t.cur.Store(j)
	for i := range t.workers {
		w := &t.workers[i]
		switch {
		case w.state.CompareAndSwap(teamSleeping, teamRunning):
			w.wake <- struct{}{}
		case w.state.CompareAndSwap(teamExited, teamRunning):
			go t.work(i)
		}
	}
	j.do()
	for spins := 0; j.done.Load() != j.parts; spins++ {
		if spins&255 == 255 {
			runtime.Gosched()
		}
	}
	// Unpublish the job. Each helper still holds it as last (its closure
	// stays alive until the helper's next job or exit, at most teamIdle);
	// that reference is also what keeps work's pointer comparison safe from
	// a new job reusing this one's address.
	t.cur.Store(nil)
	return true
}

// work is helper i: it joins every job it sees, spins for the next, parks,
// and exits when parked for teamIdle.
func (t *team) work(i int) {
	w := &t.workers[i]
	var idle *time.Timer
	var last *teamJob
	for {
		if j := t.cur.Load(); j != nil && j != last {
			last = j
			j.do()
			continue
		}
		if t.spin(last) {
			continue
		}
		w.state.Store(teamSleeping)
		if j := t.cur.Load(); j != nil && j != last {
			if w.state.CompareAndSwap(teamSleeping, teamRunning) {
				continue
			}
			<-w.wake // a caller took the state; its token is on the way
			continue
		}
		if idle == nil {
			idle = time.NewTimer(teamIdle)
		} else {
			idle.Reset(teamIdle)
		}
		select {
		case <-w.wake:
			idle.Stop()
		case <-idle.C:
			if w.state.CompareAndSwap(teamSleeping, teamExited) {
				return
			}
			<-w.wake
		}
	}
}

// spin waits up to teamSpin for a job other than last; it reports whether
// one came.
func (t *team) spin(last *teamJob) bool {
	start := time.Now()
	for i := 1; ; i++ {
		if j := t.cur.Load(); j != nil && j != last {
			return true
		}
		if i&63 == 0 && time.Since(start) > teamSpin {
			return false
		}
	}
}

// runTeam is Run for short products (decode's, the row split's): the same
// split, handed to the pool's team where it is free (else Run's goroutines).
func (p *Pool) runTeam(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	parts := min(p.Threads(), (n+max(grain, 1)-1)/max(grain, 1))
	if parts <= 1 {
		fn(0, n)
		return
	}
	if p.forkJoin {
		p.Run(n, grain, fn)
		return
	}
	p.teamOnce.Do(func() { p.team = newTeam(p.Threads() - 1) })
	// Twice the parts of Run: a helper that starts late still finds some.
	parts = min(2*parts, (n+max(grain, 1)-1)/max(grain, 1))
	if !p.team.run(n, (n+parts-1)/parts, fn) {
		p.Run(n, grain, fn)
	}
}

// runTeamSplit is Run's split, one part per worker, handed to the pool's
// team where it is free: for work whose parts each cost a fixed amount
// beyond their items (the column split, where every part reads all the
// activations), so more parts than workers would cost more than a late
// helper does.
func (p *Pool) runTeamSplit(n int, fn func(lo, hi int)) {
	parts := min(p.Threads(), n)
	if parts <= 1 || p.forkJoin || p.colsRun {
		p.Run(n, 1, fn)
		return
	}
	p.teamOnce.Do(func() { p.team = newTeam(p.Threads() - 1) })
	if !p.team.run(n, (n+parts-1)/parts, fn) {
		p.Run(n, 1, fn)
	}
}

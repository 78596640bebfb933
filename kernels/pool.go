package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Pool splits data-parallel work over a fixed number of goroutines and carries the
// kernel set chosen when it was created. It owns no goroutines between calls (but for
// the decode team's helpers, team.go, which exit after 20 ms without work); the
// engine passes one Pool down so that thread count is a setting, not global state.
// A Pool may be used by several goroutines at once.
type Pool struct {
	threads int
	k       *Kernels
	bf16Dot bool
	// free holds scratch buffers between calls so that kernels do not allocate per
	// call (a sync.Pool would drop them at every GC).
	mu   sync.Mutex
	free []*[]float32
	// team runs the decode products (team.go); made on first use.
	team     *team
	teamOnce sync.Once
	// forkJoin makes runTeam use Run (the benchmarks' before/after).
	forkJoin bool
	// noAhead makes matMulPackedWith skip prefetching the next weight block
	// (blockAhead), and colsRun run its column split with Run instead of
	// the team (the benchmarks' before/after).
	noAhead, colsRun bool
}

// maxFree bounds the buffers a Pool keeps: a product uses one shared buffer plus
// one per worker; attention one per worker.
const maxFree = 16

// PoolOptions configures NewPoolWith.
type PoolOptions struct {
	// Threads is the number of workers; <= 0 means one per CPU.
	Threads int
	// Kernels names the kernel set (see Select); empty means CACHECLIP_KERNELS or,
	// when that is unset, the best for this CPU.
	Kernels string
	// FastBF16 lets MatMul over bf16 weights round the activations to bf16 and use
	// VDPBF16PS (about twice the f32 rate) for products of more than gemvMaxRows (16)
	// rows. Each product is then off by up to 2⁻⁹ relative, outputs by ~1e-3 to
	// 1e-2; without it every dtype keeps f32 activations exact. Ignored where the
	// CPU lacks AVX512_BF16.
	FastBF16 bool
}

// NewPool returns a pool of n workers (n <= 0: one per CPU) using the kernel set
// picked by Detect.
func NewPool(n int) *Pool {
	p, _ := NewPoolWith(PoolOptions{Threads: n})
	return p
}

// NewPoolWith returns a configured pool. An unavailable kernel set is replaced by
// the best available one and reported as an error next to a usable pool.
func NewPoolWith(o PoolOptions) (*Pool, error) {
	n := o.Threads
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	var (
		k   *Kernels
		err error
	)
	if o.Kernels != "" {
		k, err = Select(o.Kernels)
	} else {
		k = Detect()
	}
	return &Pool{threads: n, k: k, bf16Dot: o.FastBF16 && k.gemmBF16 != nil}, err
}

// Threads is the number of workers.
func (p *Pool) Threads() int {
	if p == nil {
		return 1
	}
	return p.threads
}

// Kernels is the kernel set of the pool (the default set for a nil pool).
func (p *Pool) Kernels() *Kernels {
	if p == nil || p.k == nil {
		return defaultKernels
	}
	return p.k
}

// getBuf returns a scratch slice of n floats (contents undefined); putBuf gives it
// back. The smallest kept buffer that fits is reused.
func (p *Pool) getBuf(n int) *[]float32 {
	if p != nil {
		p.mu.Lock()
		best := -1
		for i, b := range p.free {
			if cap(*b) >= n && (best < 0 || cap(*b) < cap(*p.free[best])) {
				best = i
			}
		}
		if best >= 0 {
			b := p.free[best]
			p.free[best] = p.free[len(p.free)-1]
			p.free = p.free[:len(p.free)-1]
			p.mu.Unlock()
			*b = (*b)[:n]
			return b
		}
		p.mu.Unlock()
	}
	b := make([]float32, n)
	return &b
}

// getScratch takes one pooled buffer for several scratch slices and carves
// it into parts (parts[i] gets sizes[i] elements); the caller hands the
// buffer back with putBuf. One buffer, not one per slice: a kernel call then
// costs one pool round trip.
func (p *Pool) getScratch(sizes []int, parts [][]float32) *[]float32 {
	total := 0
	for _, n := range sizes {
		total += n
	}
	buf := p.getBuf(total)
	rest := *buf
	for i, n := range sizes {
		parts[i], rest = rest[:n:n], rest[n:]
	}
	return buf
}

func (p *Pool) putBuf(b *[]float32) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) < maxFree {
		p.free = append(p.free, b)
		return
	}
	// Keep the larger buffers: drop the smallest if b is bigger.
	small := 0
	for i, f := range p.free {
		if cap(*f) < cap(*p.free[small]) {
			small = i
		}
	}
	if cap(*b) > cap(*p.free[small]) {
		p.free[small] = b
	}
}

// Run calls fn over [0,n) split into contiguous ranges of at least grain items, one
// range per worker at most, and waits for all of them.
func (p *Pool) Run(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	parts := p.Threads()
	if maxParts := (n + grain - 1) / grain; parts > maxParts {
		parts = maxParts
	}
	if parts <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	step := (n + parts - 1) / parts
	for lo := step; lo < n; lo += step {
		hi := min(lo+step, n)
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			fn(lo, hi)
		}(lo, hi)
	}
	fn(0, min(step, n))
	wg.Wait()
}

// runDynamic calls fn(i) for every i in [0,n), handing items to the workers one at a
// time so that uneven items (causal attention rows) keep both cores busy.
func (p *Pool) runDynamic(n int, fn func(i int)) {
	if n <= 0 {
		return
	}
	workers := min(p.Threads(), n)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	work := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				return
			}
			fn(i)
		}
	}
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work()
		}()
	}
	work()
	wg.Wait()
}

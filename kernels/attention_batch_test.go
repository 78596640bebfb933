package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// batchCase builds one call of a batch: a cache of n slots (keys blocked,
// the unused slots of the last block NaN, a few slots empty when holes is
// set), rows queries at its end; ape adds three slot groups (APE) and asks
// for the probabilities, which it returns wanted in wantProbs.
func batchCase(rng *rand.Rand, H, KV, D, n, rows int, holes, ape bool) (c AttnCall, want, wantProbs []float32) {
	kd := KV * D
	k, v := randVec(rng, n*kd), randVec(rng, n*kd)
	slotPos := make([]int32, n)
	for j := range slotPos {
		slotPos[j] = int32(j)
		if holes && j%37 == 5 {
			slotPos[j] = -1
		}
	}
	rowPos := make([]int32, rows)
	for i := range rowPos {
		rowPos[i] = int32(n - 1 + i)
	}
	q := randVec(rng, rows*H*D)
	for i := range q {
		q[i] *= 3
	}
	kb := make([]float32, BlockedKeysLen(n, kd))
	for i := range kb {
		kb[i] = float32(math.NaN())
	}
	PutKeys(kb, 0, kd, k)
	spec := AttnSpec{Heads: H, KVHeads: KV, HeadDim: D, Scale: float32(1 / math.Sqrt(float64(D)))}
	if ape {
		spec.SlotGroup = make([]uint8, n)
		for j := range spec.SlotGroup {
			spec.SlotGroup[j] = uint8(j * 3 / n)
		}
		spec.GroupTemp = []float32{0.7, 1, 1.3}
		spec.GroupLSEScale = []float32{1.2, 0.9, 1}
		spec.Probs = randVec(rng, rows*H*n)
		wantProbs = make([]float32, rows*H*n)
	}
	want = make([]float32, rows*H*D)
	rs := spec
	rs.Probs = wantProbs
	refAttention(want, q, rowPos, k, v, slotPos, rs)
	return AttnCall{Out: randVec(rng, rows*H*D), Q: q, RowPos: rowPos, KB: kb, V: v, SlotPos: slotPos, Spec: spec}, want, wantProbs
}

// TestAttentionBlockedBatch holds every call of a batch to the naive
// attention, within checkBlocked's bound: decode batches of equal lengths
// whose units fill the workers (one hand-off for all), batches too small or
// too uneven for that, calls of different context lengths (one under a key
// block, empty slots), APE groups with probabilities (as Forward sends), a
// head dim off the kernel width and rows enough for V panels (both run call
// by call), and an empty call. The route each batch takes is asserted.
func TestAttentionBlockedBatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 9))
	type call struct {
		H, KV, D, n, rows int
		ape               bool
	}
	eq := call{14, 2, 64, 400, 1, false}
	ape := call{14, 2, 64, 300, 1, true}
	// together[name]: the route at 1, 2 and 3 threads.
	batches := map[string]struct {
		calls    []call
		together [3]bool
	}{
		"qwen-equal-8":   {[]call{eq, eq, eq, eq, eq, eq, eq, eq}, [3]bool{true, true, true}},
		"qwen-decode-8":  {[]call{{14, 2, 64, 700, 1, false}, {14, 2, 64, 129, 1, false}, {14, 2, 64, 30, 1, false}, {14, 2, 64, 300, 1, false}, {14, 2, 64, 64, 1, false}, {14, 2, 64, 65, 1, false}, {14, 2, 64, 1, 1, false}, {14, 2, 64, 513, 1, false}}, [3]bool{true, false, false}},
		"ape-probs-6":    {[]call{ape, ape, ape, {14, 2, 64, 250, 1, true}, ape, ape}, [3]bool{true, true, true}},
		"smol-decode-3":  {[]call{{9, 3, 64, 200, 1, false}, {9, 3, 64, 77, 1, false}, {9, 3, 64, 150, 2, false}}, [3]bool{true, true, false}},
		"mixed-heads":    {[]call{{14, 2, 64, 100, 1, false}, {8, 1, 64, 90, 1, false}, {4, 4, 32, 70, 1, false}, {2, 2, 64, 40, 3, false}, {14, 2, 64, 0, 0, false}}, [3]bool{true, false, false}},
		"one-call":       {[]call{{14, 2, 64, 300, 1, false}}, [3]bool{false, false, false}},
		"head-dim-33":    {[]call{{4, 2, 33, 100, 1, false}, {4, 2, 33, 120, 1, false}, {4, 2, 33, 60, 1, false}, {4, 2, 33, 80, 1, false}}, [3]bool{false, false, false}},
		"prefill-panels": {[]call{{14, 2, 64, 100, 1, false}, {14, 2, 64, 90, 20, false}, {14, 2, 64, 70, 1, false}, {14, 2, 64, 50, 1, false}}, [3]bool{false, false, false}},
	}
	for _, ks := range Available() {
		for _, threads := range []int{1, 2, 3} {
			p, err := NewPoolWith(PoolOptions{Threads: threads, Kernels: ks.Name()})
			if err != nil {
				t.Fatal(err)
			}
			for name, b := range batches {
				t.Run(fmt.Sprintf("%s/t%d/%s", ks.Name(), threads, name), func(t *testing.T) {
					var calls []AttnCall
					var wants, wantProbs [][]float32
					for i, c := range b.calls {
						ac, want, wp := batchCase(rng, c.H, c.KV, c.D, c.n, c.rows, i%2 == 1, c.ape)
						calls, wants, wantProbs = append(calls, ac), append(wants, want), append(wantProbs, wp)
					}
					if got, _, _ := attnBatchRoute(p.Threads(), p.Kernels(), calls); got != b.together[threads-1] {
						t.Fatalf("together = %v, want %v", got, b.together[threads-1])
					}
					AttentionBlockedBatch(p, calls)
					for i, c := range calls {
						for j, w := range wants[i] {
							if d := math.Abs(float64(c.Out[j] - w)); !(d <= 2e-5*(1+math.Abs(float64(w)))) {
								t.Fatalf("call %d out[%d]: got %g want %g", i, j, c.Out[j], w)
							}
						}
						for j, w := range wantProbs[i] {
							if d := math.Abs(float64(c.Spec.Probs[j] - w)); d > 2e-5*(1e-3+float64(w)) && d > 1e-7 {
								t.Fatalf("call %d probs[%d]: got %g want %g", i, j, c.Spec.Probs[j], w)
							}
						}
					}
				})
			}
		}
	}
}

// TestAttnBatchRoute: equal lengths go to the team together; one long
// context among short ones, whose KV heads would land on one worker unsplit,
// runs call by call (its slots split over the workers); so does a batch
// whose units cannot give every worker attnSplitUnits.
func TestAttnBatchRoute(t *testing.T) {
	ks, err := Select("generic")
	if err != nil {
		t.Fatal(err)
	}
	mk := func(lens ...int) []AttnCall {
		calls := make([]AttnCall, len(lens))
		for i, n := range lens {
			calls[i] = AttnCall{RowPos: make([]int32, 1), SlotPos: make([]int32, n), Spec: AttnSpec{Heads: 14, KVHeads: 2, HeadDim: 64}}
		}
		return calls
	}
	rep := func(n, times int) []int {
		s := make([]int, times)
		for i := range s {
			s[i] = n
		}
		return s
	}
	cases := []struct {
		name    string
		threads int
		lens    []int
		want    bool
	}{
		{"equal-8/t2", 2, rep(2000, 8), true},
		{"equal-32/t16", 16, rep(2000, 32), true},
		{"equal-32/t8", 8, rep(100, 32), true},
		{"one-long/t2", 2, append(rep(100, 7), 20000), false},
		{"one-long/t16", 16, append(rep(100, 31), 20000), false},
		{"too-few-units/t16", 16, rep(2000, 13), false},
		{"mild-spread/t2", 2, []int{1000, 1100, 1200, 1300, 1400, 1500, 1600, 1700}, true},
	}
	for _, c := range cases {
		if got, _, _ := attnBatchRoute(c.threads, ks, mk(c.lens...)); got != c.want {
			t.Errorf("%s: together = %v, want %v", c.name, got, c.want)
		}
	}
}

// BenchmarkAttentionBatchDecode: the attention of one decode step of a
// batch of 8 sequences (Qwen2.5-0.5B heads, each after ctx slots of its own),
// as eight AttentionBlocked calls and as one AttentionBlockedBatch,
// alternating within each iteration; kvGB/s is the keys and values read per
// second (best iteration of each). Before each, a 1 GiB buffer is read, so
// the caches come from memory as in a model's step (its weights and every
// layer's cache pass through the last-level cache between two layers' calls).
func BenchmarkAttentionBatchDecode(b *testing.B) {
	p := NewPool(0)
	evict := make([]byte, 1<<30)
	for i := range evict {
		evict[i] = byte(i)
	}
	var sink byte
	flush := func() {
		p.Run(len(evict)/64, 1<<14, func(lo, hi int) {
			var x byte
			for i := lo; i < hi; i++ {
				x ^= evict[i*64]
			}
			evict[lo*64] = x
		})
		sink ^= evict[0]
	}
	for _, ctx := range []int{512, 2048} {
		rng := rand.New(rand.NewPCG(22, uint64(ctx)))
		var calls []AttnCall
		for range 8 {
			c, _, _ := batchCase(rng, 14, 2, 64, ctx, 1, false, false)
			calls = append(calls, c)
		}
		b.Run(fmt.Sprintf("%s/qwen/batch=8/ctx=%d", p.Kernels().Name(), ctx), func(b *testing.B) {
			one, all := time.Duration(1<<62), time.Duration(1<<62)
			for b.Loop() {
				flush()
				t0 := time.Now()
				for _, c := range calls {
					AttentionBlocked(p, c.Out, c.Q, c.RowPos, c.KB, c.V, c.SlotPos, c.Spec)
				}
				one = min(one, time.Since(t0))
				flush()
				t1 := time.Now()
				AttentionBlockedBatch(p, calls)
				all = min(all, time.Since(t1))
			}
			bytes := float64(8 * 2 * ctx * 2 * 64 * 4)
			b.ReportMetric(bytes/all.Seconds()/1e9, "batch-kvGB/s")
			b.ReportMetric(bytes/one.Seconds()/1e9, "calls-kvGB/s")
			b.ReportMetric(all.Seconds()*1e6, "batch-us")
			b.ReportMetric(one.Seconds()*1e6, "calls-us")
		})
	}
	_ = sink
}

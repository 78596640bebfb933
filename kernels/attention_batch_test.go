package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// batchCase builds one call of a batch: a cache of n slots (keys blocked, a
// few slots empty when holes is set), rows queries at its end.
func batchCase(rng *rand.Rand, H, KV, D, n, rows int, holes bool) (AttnCall, []float32) {
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
	PutKeys(kb, 0, kd, k)
	spec := AttnSpec{Heads: H, KVHeads: KV, HeadDim: D, Scale: float32(1 / math.Sqrt(float64(D)))}
	want := make([]float32, rows*H*D)
	refAttention(want, q, rowPos, k, v, slotPos, spec)
	return AttnCall{Out: randVec(rng, rows*H*D), Q: q, RowPos: rowPos, KB: kb, V: v, SlotPos: slotPos, Spec: spec}, want
}

// TestAttentionBlockedBatch holds every call of a batch to the naive
// attention, within checkBlocked's bound: decode batches whose units fill the
// workers (one hand-off for all), batches too small for that, calls of
// different context lengths (one under a key block, empty slots), a head dim
// off the kernel width and rows enough for V panels (both run call by call),
// and an empty call.
func TestAttentionBlockedBatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 9))
	type call struct{ H, KV, D, n, rows int }
	batches := map[string][]call{
		"qwen-decode-8":  {{14, 2, 64, 700, 1}, {14, 2, 64, 129, 1}, {14, 2, 64, 30, 1}, {14, 2, 64, 300, 1}, {14, 2, 64, 64, 1}, {14, 2, 64, 65, 1}, {14, 2, 64, 1, 1}, {14, 2, 64, 513, 1}},
		"smol-decode-3":  {{9, 3, 64, 200, 1}, {9, 3, 64, 77, 1}, {9, 3, 64, 150, 2}},
		"mixed-heads":    {{14, 2, 64, 100, 1}, {8, 1, 64, 90, 1}, {4, 4, 32, 70, 1}, {2, 2, 64, 40, 3}, {14, 2, 64, 0, 0}},
		"one-call":       {{14, 2, 64, 300, 1}},
		"head-dim-33":    {{4, 2, 33, 100, 1}, {4, 2, 33, 120, 1}, {4, 2, 33, 60, 1}, {4, 2, 33, 80, 1}},
		"prefill-panels": {{14, 2, 64, 100, 1}, {14, 2, 64, 90, 20}, {14, 2, 64, 70, 1}, {14, 2, 64, 50, 1}},
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
					var wants [][]float32
					for i, c := range b {
						ac, want := batchCase(rng, c.H, c.KV, c.D, c.n, c.rows, i%2 == 1)
						calls, wants = append(calls, ac), append(wants, want)
					}
					AttentionBlockedBatch(p, calls)
					for i, c := range calls {
						for j, w := range wants[i] {
							if d := math.Abs(float64(c.Out[j] - w)); !(d <= 2e-5*(1+math.Abs(float64(w)))) {
								t.Fatalf("call %d out[%d]: got %g want %g", i, j, c.Out[j], w)
							}
						}
					}
				})
			}
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
			c, _ := batchCase(rng, 14, 2, 64, ctx, 1, false)
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

package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"cacheclip/internal/cputime"
)

// The blocked layout is [block][kvHead][headDim][KeyBlock]: slot s, column c
// (kvHead·headDim + d) sits at (s/KeyBlock)·KeyBlock·kd + c·KeyBlock + s%KeyBlock.
func TestPutKeysLayout(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 1))
	for _, kd := range []int{1, 7, 64, 128} {
		for _, slots := range []int{1, KeyBlock - 1, KeyBlock, KeyBlock + 1, 3*KeyBlock + 17} {
			k := randVec(rng, slots*kd)
			// Half the slots one at a time (decode appends), the rest in one call.
			dst := make([]float32, BlockedKeysLen(slots, kd))
			half := slots / 2
			for s := 0; s < half; s++ {
				PutKeys(dst, s, kd, k[s*kd:(s+1)*kd])
			}
			PutKeys(dst, half, kd, k[half*kd:])
			for s := 0; s < slots; s++ {
				for c := 0; c < kd; c++ {
					if got := dst[s/KeyBlock*KeyBlock*kd+c*KeyBlock+s%KeyBlock]; got != k[s*kd+c] {
						t.Fatalf("kd %d slots %d: slot %d column %d holds %g, want %g", kd, slots, s, c, got, k[s*kd+c])
					}
				}
			}
			first := min(1, slots-1) // read from a slot other than 0
			back := make([]float32, (slots-first)*kd)
			GetKeys(back, dst, first, slots-first, kd)
			for i := range back {
				if back[i] != k[first*kd+i] {
					t.Fatalf("kd %d slots %d: GetKeys[%d] = %g, want %g", kd, slots, i, back[i], k[first*kd+i])
				}
			}
		}
	}
}

// AttentionBlocked over keys appended one slot at a time (as the engine's
// cache does) equals the naive reference, for GQA ratios 1, 2, 7 and 8,
// context lengths on and off the key-block boundary, head dims that are and
// are not a multiple of the micro-kernel width, decode (the split-slot route)
// and causal prefill, on every kernel set and 1–3 workers. The buffer's unused
// tail holds NaNs: nothing past the last slot may reach a result.
func TestAttentionBlockedMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 2))
	type shape struct{ kv, g, hd int }
	shapes := []shape{{2, 7, 64}, {3, 3, 64}, {1, 8, 64}, {4, 1, 32}, {2, 2, 33}, {1, 7, 8}, {1, 5, 48}}
	ctxs := []int{1, KeyBlock - 1, KeyBlock, KeyBlock + 1, 2*KeyBlock + 5, 700}
	for _, ks := range Available() {
		for _, threads := range []int{1, 3} {
			p, err := NewPoolWith(PoolOptions{Threads: threads, Kernels: ks.Name()})
			if err != nil {
				t.Fatal(err)
			}
			for _, sh := range shapes {
				for _, n := range ctxs {
					for _, rows := range []int{1, 3, -1} { // -1: causal prefill of all n
						if rows < 0 && n > 2*KeyBlock {
							continue // the naive reference is quadratic; longer contexts decode only
						}
						name := fmt.Sprintf("%s/t%d/kv%d-g%d-d%d/n%d/rows%d", ks.Name(), threads, sh.kv, sh.g, sh.hd, n, rows)
						t.Run(name, func(t *testing.T) { checkBlocked(t, p, rng, sh.kv*sh.g, sh.kv, sh.hd, n, rows) })
					}
				}
			}
		}
	}
}

func checkBlocked(t *testing.T, p *Pool, rng *rand.Rand, H, KV, D, n, rows int) {
	kd := KV * D
	k, v := randVec(rng, n*kd), randVec(rng, n*kd)
	slotPos := make([]int32, n)
	for j := range slotPos {
		slotPos[j] = int32(j)
	}
	var rowPos []int32
	if rows < 0 {
		rowPos = slotPos
	} else {
		for i := 0; i < rows; i++ {
			rowPos = append(rowPos, int32(n-1+i))
		}
	}
	R := len(rowPos)
	q := randVec(rng, R*H*D)
	for i := range q {
		q[i] *= 3
	}
	kb := make([]float32, BlockedKeysLen(n+KeyBlock, kd))
	for i := range kb {
		kb[i] = float32(math.NaN())
	}
	for s := 0; s < n; s++ {
		PutKeys(kb, s, kd, k[s*kd:(s+1)*kd])
	}
	spec := AttnSpec{Heads: H, KVHeads: KV, HeadDim: D, Scale: float32(1 / math.Sqrt(float64(D)))}
	got := make([]float32, R*H*D)
	AttentionBlocked(p, got, q, rowPos, kb, v, slotPos, spec)
	want := make([]float32, R*H*D)
	refAttention(want, q, rowPos, k, v, slotPos, spec)
	for i := range want {
		if d := math.Abs(float64(got[i] - want[i])); !(d <= 2e-5*(1+math.Abs(float64(want[i])))) {
			t.Fatalf("out[%d] (row %d head %d): got %g want %g", i, i/(H*D), i/D%H, got[i], want[i])
		}
	}
}

func TestAttentionBlockedShortKeys(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("AttentionBlocked accepted a key buffer shorter than whole blocks")
		}
	}()
	const n, kd = KeyBlock + 1, 8
	buf := make([]float32, n*kd) // natural length, not whole blocks
	pos := make([]int32, n)
	AttentionBlocked(NewPool(1), make([]float32, kd), make([]float32, kd), []int32{n}, buf, buf, pos, AttnSpec{Heads: 1, KVHeads: 1, HeadDim: kd, Scale: 1})
}

// BenchmarkDecodeAttention: one decode row over a cache of ctx slots with the
// Qwen2.5-0.5B (14 heads over 2 KV heads) and SmolLM2-135M (9 over 3) head
// layouts. "repack" is Attention over keys in the natural layout, which copies
// them into the blocked layout every call (what decode did before the cache kept
// its keys blocked); "inplace" is AttentionBlocked over keys already blocked.
// kvGB/s counts the keys and values read once; cpu-us/call is the process's
// CPU time per call (both workers), which load inflates far less than wall time.
func BenchmarkDecodeAttention(b *testing.B) {
	p := NewPool(0)
	for _, sh := range []struct {
		name     string
		H, KV, D int
	}{{"qwen", 14, 2, 64}, {"smol", 9, 3, 64}} {
		for _, ctx := range []int{512, 2048, 4096} {
			rng := rand.New(rand.NewPCG(21, uint64(ctx)))
			kd := sh.KV * sh.D
			k, v := randVec(rng, ctx*kd), randVec(rng, ctx*kd)
			kb := make([]float32, BlockedKeysLen(ctx, kd))
			PutKeys(kb, 0, kd, k)
			slotPos := make([]int32, ctx)
			for i := range slotPos {
				slotPos[i] = int32(i)
			}
			q, out := randVec(rng, sh.H*sh.D), make([]float32, sh.H*sh.D)
			rowPos := []int32{int32(ctx)}
			spec := AttnSpec{Heads: sh.H, KVHeads: sh.KV, HeadDim: sh.D, Scale: 0.125}
			for _, mode := range []string{"repack", "inplace"} {
				b.Run(fmt.Sprintf("%s/%s/ctx=%d/%s", p.Kernels().Name(), sh.name, ctx, mode), func(b *testing.B) {
					c0 := cputime.Process()
					for b.Loop() {
						if mode == "repack" {
							Attention(p, out, q, rowPos, k, v, slotPos, spec)
						} else {
							AttentionBlocked(p, out, q, rowPos, kb, v, slotPos, spec)
						}
					}
					sec := b.Elapsed().Seconds() / float64(b.N)
					b.ReportMetric(sec*1e6, "us/call")
					b.ReportMetric((cputime.Process()-c0).Seconds()*1e6/float64(b.N), "cpu-us/call")
					b.ReportMetric(float64(2*ctx*kd*4)/sec/1e9, "kvGB/s")
				})
			}
		}
	}
}

// TestGemm4MatchesNaive checks the 4-row micro-kernels of decode attention
// directly against the definition, with strides wider than the tile (as the
// attention passes them), overwrite and accumulate, and kc 0.
func TestGemm4MatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 32))
	for _, ks := range Available() {
		if ks.gemm4 == nil {
			continue
		}
		t.Logf("%s: 4-row kernels", ks.Name())
		nr := ks.nr
		for _, rows := range []bool{false, true} {
			for _, kc := range []int{0, 1, 7, 64, 96} {
				for _, acc := range []int{0, 1} {
					lda, ldb, ldc := 12, 3*nr, 2*nr+5
					if rows {
						lda = kc + 3
					}
					a := randVec(rng, 4*lda+kc*lda+4)
					b, c := randVec(rng, kc*ldb+nr), randVec(rng, 4*ldc)
					want := append([]float32(nil), c...)
					for i := 0; i < 4; i++ {
						for j := 0; j < nr; j++ {
							var s float64
							for k := 0; k < kc; k++ {
								ai := a[k*lda+i]
								if rows {
									ai = a[i*lda+k]
								}
								s += float64(ai) * float64(b[k*ldb+j])
							}
							if acc != 0 {
								s += float64(want[i*ldc+j])
							}
							want[i*ldc+j] = float32(s)
						}
					}
					f := ks.gemm4
					if rows {
						f = ks.gemm4Rows
					}
					f(kc, &a[0], lda, &b[0], ldb, &c[0], ldc, acc)
					for i := range want {
						if math.Abs(float64(c[i]-want[i])) > 1e-4*(1+math.Abs(float64(want[i]))) {
							t.Fatalf("%s rows=%v kc=%d acc=%d: c[%d] = %g, want %g", ks.Name(), rows, kc, acc, i, c[i], want[i])
						}
					}
				}
			}
		}
	}
}

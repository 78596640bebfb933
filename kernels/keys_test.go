package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
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
	shapes := []shape{{2, 7, 64}, {3, 3, 64}, {1, 8, 64}, {4, 1, 32}, {2, 2, 33}, {1, 7, 8}}
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

package model_test

import (
	"context"
	"fmt"
	"math"
	"testing"

	"cacheclip/kernels"
	"cacheclip/model"
	"cacheclip/model/backendtest"
	"cacheclip/model/testmodel"
)

// TestBatchedDecodeEqualsPrefill: one decode step of B sequences in one
// forward call — every product then has B rows (the batched panel products
// for B ≥ 2) and the sequences' attention calls go to the kernels together
// (one hand-off once B × KV heads fill the workers) — gives each sequence the
// logits that a one-shot prefill of its prompt and that token gives, within
// f32 rounding (1e-4 of the largest logit, as the engine's other
// decode-equals-prefill checks). Head dim 32 (the decode attention reads V in
// place), prompts of different lengths (some past a key block), f32, bf16
// and f16 weights, B from 2 to 13 (odd row counts padded in the products).
// The model runs on two workers, so that the combined attention route runs
// on any machine: at B = 5, 8 and 13 the calls' 10, 16 and 26 units give each
// worker attnSplitUnits (4), and a run of ⌈units/4⌉ of the longest prompt's
// units (3 key tiles each) costs no more than a worker's share of all units'
// tiles (9 ≤ 18/2, 12 ≤ 28/2, 21 ≤ 46/2); B = 2 runs call by call (seen
// with a print; kernels' TestAttentionBlockedBatch asserts the routes).
func TestBatchedDecodeEqualsPrefill(t *testing.T) {
	ctx := context.Background()
	for _, dt := range []kernels.DType{kernels.F32, kernels.BF16, kernels.F16} {
		m, err := testmodel.Build(testmodel.Spec{Name: "batch-decode", Arch: "llama", Hidden: 128, Intermediate: 256, Layers: 2,
			Heads: 4, KVHeads: 2, MaxPos: 512, RopeTheta: 10000, DType: dt, Seed: 11})
		if err != nil {
			t.Fatal(err)
		}
		if m.Pool, err = kernels.NewPoolWith(kernels.PoolOptions{Threads: 2}); err != nil {
			t.Fatal(err)
		}
		V := m.Config.Vocab
		for _, B := range []int{2, 5, 8, 13} {
			t.Run(fmt.Sprintf("%s/B=%d", dt, B), func(t *testing.T) {
				toks := make([][]int32, B)
				seqs := make([]*model.Seq, B)
				for i := range toks {
					n := 3 + (i*53)%300 // 3 … 302 tokens (up to 4 key blocks), then the decoded one
					toks[i] = backendtest.RandTokens(uint64(100*B+i), n+1, V)
					c := m.HostCache(n + 1)
					prefillRows(t, m, c, toks[i][:n], nil)
					sl, err := c.Alloc(1)
					if err != nil {
						t.Fatal(err)
					}
					seqs[i] = &model.Seq{Cache: c, Tokens: toks[i][n:], Pos: []int32{int32(n)}, Slots: []int32{int32(sl)}, Logits: []int{0}, Decode: true}
				}
				outs, err := m.Forward(ctx, seqs)
				if err != nil {
					t.Fatal(err)
				}
				for i := range seqs {
					n := len(toks[i]) - 1
					want := prefillRows(t, m, m.HostCache(n+1), toks[i], []int{n})
					got := outs[i].Logits[0]
					var num, den float64
					for j := range want {
						num = math.Max(num, math.Abs(float64(got[j]-want[j])))
						den = math.Max(den, math.Abs(float64(want[j])))
					}
					if num > 1e-4*math.Max(den, 1e-6) {
						t.Errorf("sequence %d (%d tokens): batched decode logits differ from one-shot prefill by %.2e of %.2e", i, n, num, den)
					}
				}
			})
		}
	}
}

// prefillRows runs toks into c in one call at positions 0… and returns the
// logits of the rows in logits (the last one's, when one is asked for).
func prefillRows(t *testing.T, m *model.Model, c *model.Cache, toks []int32, logits []int) []float32 {
	t.Helper()
	first, err := c.Alloc(len(toks))
	if err != nil {
		t.Fatal(err)
	}
	s := &model.Seq{Cache: c, Tokens: toks, Pos: make([]int32, len(toks)), Slots: make([]int32, len(toks)), Logits: logits}
	for j := range s.Pos {
		s.Pos[j], s.Slots[j] = int32(j), int32(first+j)
	}
	outs, err := m.Forward(context.Background(), []*model.Seq{s})
	if err != nil {
		t.Fatal(err)
	}
	if len(logits) == 0 {
		return nil
	}
	return outs[0].Logits[len(logits)-1]
}

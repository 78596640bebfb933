package prefill_test

import (
	"context"
	"testing"

	"cacheclip/kernels"
	"cacheclip/kvshards"
	"cacheclip/model"
	"cacheclip/prefill"
)

// TestShardRoundTripAtAnyOffset is the shard store's end-to-end check: a chunk's
// cache computed as the continuation of P, stored, loaded and re-rotated to an
// offset o gives a following question the same logits as computing the chunk in
// place at o under the same attention pattern: the chunk seeing P right before
// it. (A chunk moved away from P sees P at its original distance — that is the
// approximation reuse makes, not something re-rotation can undo.)
func TestShardRoundTripAtAnyOffset(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"llama2", "qwen2", "llama3"} {
		m := build(t, variant(t, name))
		comp := &prefill.Computer{Model: m}
		prefix := []int32{9, 10, 11, 12, 13}
		chunk := []int32{40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50}
		question := []int32{60, 61, 62}
		for _, dt := range []kernels.DType{kernels.F32, kernels.BF16} {
			st, err := kvshards.OpenStore(t.TempDir(), kvshards.Options{DType: dt, NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			sh, err := st.GetOrBuild(ctx, comp, prefix, chunk)
			if err != nil {
				t.Fatal(err)
			}
			kv, err := sh.ChunkKV()
			sh.Close()
			if err != nil {
				t.Fatal(err)
			}
			pkv, err := comp.ComputeChunk(ctx, nil, prefix)
			if err != nil {
				t.Fatal(err)
			}
			for _, off := range []int{len(prefix), 37, 301} {
				pAt := off - len(prefix)
				// Loaded: P's cache, the chunk's shard re-rotated to off, then Q after it.
				loaded := m.HostCache(len(prefix) + len(chunk) + len(question))
				fill := func(c *model.Cache, kv *kvshards.ChunkKV, at int) {
					first, _ := c.Alloc(len(kv.Tokens))
					pos, from := make([]int32, len(kv.Tokens)), make([]int32, len(kv.Tokens))
					for i := range pos {
						pos[i], from[i] = int32(at+i), int32(int(kv.BasePos)+i)
					}
					for l := 0; l < m.Config.Layers; l++ {
						if err := m.Fill(c, l, first, pos, kv.K[l], kv.V[l], from); err != nil {
							t.Fatal(err)
						}
					}
				}
				fill(loaded, pkv, pAt)
				fill(loaded, kv, off)
				// In place: P computed, then the chunk's rows at off attending P and itself.
				inPlace := m.HostCache(len(prefix) + len(chunk) + len(question))
				rows := func(c *model.Cache, toks []int32, at int, logits bool) []float32 {
					first, _ := c.Alloc(len(toks))
					s := &model.Seq{Cache: c, Tokens: toks}
					for i := range toks {
						s.Pos = append(s.Pos, int32(at+i))
						s.Slots = append(s.Slots, int32(first+i))
					}
					if logits {
						s.Logits = []int{len(toks) - 1}
					}
					out, err := m.Forward(ctx, []*model.Seq{s})
					if err != nil {
						t.Fatal(err)
					}
					if logits {
						return out[0].Logits[0]
					}
					return nil
				}
				rows(inPlace, prefix, pAt, false)
				rows(inPlace, chunk, off, false)
				qAt := off + len(chunk)
				want := rows(inPlace, question, qAt, true)
				got := rows(loaded, question, qAt, true)
				d := relDiff(got, want)
				tol := 1e-4
				if dt == kernels.BF16 {
					tol = 1e-2 // bf16 keeps 8 bits of mantissa; the measured bound is logged
				}
				if d > tol {
					t.Errorf("%s %s offset %d: loaded shard gives logits %.2e away from computing in place (tolerance %g)", name, dt, off, d, tol)
				}
				t.Logf("%s %s offset %d: max relative logit difference %.2e", name, dt, off, d)
			}
			st.Close()
		}
	}
}

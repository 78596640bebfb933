package model_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"cacheclip/internal/cputime"
	"cacheclip/kernels"
	"cacheclip/model"
	"cacheclip/model/backendtest"
	"cacheclip/model/testmodel"
)

// smolShape is the SmolLM2-135M shape (random weights): 30 layers, 9 query
// heads over 3 KV heads of 64.
func smolShape(b *testing.B, dt kernels.DType) *model.Model {
	b.Helper()
	key := fmt.Sprintf("smol/%v", dt)
	if m, ok := benchModels.Load(key); ok {
		return m.(*model.Model)
	}
	m, err := testmodel.Build(testmodel.Spec{Name: "smollm2-135m-shape", Arch: "llama", Hidden: 576, Intermediate: 1536,
		Layers: 30, Heads: 9, KVHeads: 3, Vocab: 49152, MaxPos: 8192, RopeTheta: 100000, Tied: true, DType: dt, Seed: 8})
	if err != nil {
		b.Fatal(err)
	}
	benchModels.Store(key, m)
	return m
}

// BenchmarkDecodeContext measures single-sequence decode tokens/s (bf16
// weights) after a context of ctx slots. The context's keys and values are
// random (Fill), not prefilled: decode's cost does not depend on their values,
// and a 2k-token prefill per sub-benchmark would dominate the run.
func BenchmarkDecodeContext(b *testing.B) {
	for _, shape := range []string{"smollm2-135m", "qwen2.5-0.5b"} {
		for _, ctxLen := range []int{512, 2048} {
			b.Run(fmt.Sprintf("%s/bf16/ctx=%d", shape, ctxLen), func(b *testing.B) {
				var m *model.Model
				if shape == "qwen2.5-0.5b" {
					m = qwenShape(b, kernels.BF16)
				} else {
					m = smolShape(b, kernels.BF16)
				}
				const steps = 8
				cache := m.HostCache(ctxLen + steps)
				first, _ := cache.Alloc(ctxLen)
				rng := rand.New(rand.NewPCG(21, uint64(ctxLen)))
				kd := m.Config.KVDim()
				k, v := make([]float32, ctxLen*kd), make([]float32, ctxLen*kd)
				pos := make([]int32, ctxLen)
				for i := range pos {
					pos[i] = int32(first + i)
				}
				for l := 0; l < m.Config.Layers; l++ {
					for i := range k {
						k[i], v[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
					}
					if err := m.Fill(cache, l, first, pos, k, v, pos); err != nil {
						b.Fatal(err)
					}
				}
				toks := backendtest.RandTokens(3, steps, m.Config.Vocab)
				b.ResetTimer()
				b.StopTimer()
				var cpu time.Duration
				for i := 0; i < b.N; i++ {
					cache.Reset()
					cache.Alloc(ctxLen)
					for j := range pos {
						cache.SetPos(first+j, pos[j])
					}
					b.StartTimer()
					c0 := cputime.Process()
					for s := 0; s < steps; s++ {
						sl, _ := cache.Alloc(1)
						d := &model.Seq{Cache: cache, Tokens: toks[s : s+1], Pos: []int32{int32(ctxLen + s)}, Slots: []int32{int32(sl)}, Logits: []int{0}, Decode: true}
						if _, err := m.Forward(context.Background(), []*model.Seq{d}); err != nil {
							b.Fatal(err)
						}
					}
					cpu += cputime.Process() - c0
					b.StopTimer()
				}
				b.ReportMetric(float64(b.N*steps)/b.Elapsed().Seconds(), "tok/s")
				b.ReportMetric(cpu.Seconds()*1e3/float64(b.N*steps), "cpu-ms/tok")
			})
		}
	}
}

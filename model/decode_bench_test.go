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

// BenchmarkDecodeBatch measures one decode step of a batch of sequences (bf16
// Qwen2.5-0.5B shape), each after its own context of ctx random slots (Fill),
// as the job's decode runs it: one row per sequence per forward call, so
// every product has batch rows. It logs the engine's stage split (with -v)
// and reports the step's wall and CPU time and the weight bytes read per
// second of the step.
func BenchmarkDecodeBatch(b *testing.B) {
	for _, batch := range []int{8} {
		const ctxLen, steps = 2048, 8
		b.Run(fmt.Sprintf("qwen2.5-0.5b/bf16/batch=%d/ctx=%d", batch, ctxLen), func(b *testing.B) {
			m := qwenShape(b, kernels.BF16)
			kd := m.Config.KVDim()
			rng := rand.New(rand.NewPCG(22, uint64(batch)))
			caches := make([]*model.Cache, batch)
			k, v := make([]float32, ctxLen*kd), make([]float32, ctxLen*kd)
			pos := make([]int32, ctxLen)
			for i := range pos {
				pos[i] = int32(i)
			}
			for s := range caches {
				c := m.HostCache(ctxLen + steps)
				c.Alloc(ctxLen)
				for l := 0; l < m.Config.Layers; l++ {
					for i := range k {
						k[i], v[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
					}
					if err := m.Fill(c, l, 0, pos, k, v, pos); err != nil {
						b.Fatal(err)
					}
				}
				caches[s] = c
			}
			toks := backendtest.RandTokens(4, steps*batch, m.Config.Vocab)
			var st model.StageTimes
			ctx := model.WithStageTimes(context.Background(), &st)
			var cpu time.Duration
			b.ResetTimer()
			b.StopTimer()
			for i := 0; i < b.N; i++ {
				for _, c := range caches {
					c.Reset()
					c.Alloc(ctxLen)
					for j := range pos {
						c.SetPos(j, pos[j])
					}
				}
				b.StartTimer()
				c0 := cputime.Process()
				for s := 0; s < steps; s++ {
					seqs := make([]*model.Seq, batch)
					for j, c := range caches {
						sl, _ := c.Alloc(1)
						seqs[j] = &model.Seq{Cache: c, Tokens: toks[s*batch+j : s*batch+j+1], Pos: []int32{int32(ctxLen + s)}, Slots: []int32{int32(sl)}, Logits: []int{0}, Decode: true}
					}
					if _, err := m.Forward(ctx, seqs); err != nil {
						b.Fatal(err)
					}
				}
				cpu += cputime.Process() - c0
				b.StopTimer()
			}
			n := float64(b.N * steps)
			wall := b.Elapsed().Seconds() / n
			b.ReportMetric(wall*1e3, "ms/step")
			b.ReportMetric(cpu.Seconds()*1e3/n, "cpu-ms/step")
			b.ReportMetric(float64(weightBytes(m))/wall/1e9, "weightGB/s")
			tot := st.Total()
			for s := model.Stage(0); s < model.NumStages; s++ {
				if d := st.D[s]; d > 0 {
					b.Logf("%-28s %8.2f ms/step %5.1f %%", s, d.Seconds()*1e3/float64(st.Calls), 100*d.Seconds()/tot.Seconds())
				}
			}
		})
	}
}

// weightBytes is the bytes of the matrices a decode step reads: every
// layer's linear maps and the LM head.
func weightBytes(m *model.Model) int64 {
	n := m.W.LMHead.Bytes()
	for i := range m.W.Layers {
		L := &m.W.Layers[i]
		for _, w := range []kernels.Mat{L.Wq, L.Wk, L.Wv, L.Wo, L.Wgate, L.Wup, L.Wdown} {
			n += w.Bytes()
		}
	}
	return n
}

package model_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"cacheclip/internal/cputime"
	"cacheclip/kernels"
	"cacheclip/model"
	"cacheclip/model/backendtest"
	"cacheclip/model/testmodel"
)

var benchModels sync.Map // kernels.DType → *model.Model, built once per process (slow)

func qwenShape(b *testing.B, dt kernels.DType) *model.Model {
	b.Helper()
	if m, ok := benchModels.Load(dt); ok {
		return m.(*model.Model)
	}
	m, err := testmodel.Build(testmodel.Qwen25_05B(dt))
	if err != nil {
		b.Fatal(err)
	}
	benchModels.Store(dt, m)
	return m
}

// linearFLOPs is 2·(weights of every layer's linear maps) per token: the matrix
// products, which dominate; attention and the head are reported apart.
func linearFLOPs(c *model.Config) float64 {
	per := c.Hidden*c.QDim() + 2*c.Hidden*c.KVDim() + c.QDim()*c.Hidden + 3*c.Hidden*c.Intermediate
	return 2 * float64(per) * float64(c.Layers)
}

// BenchmarkPrefill measures one-call prefill of n tokens on the Qwen2.5-0.5B shape.
func BenchmarkPrefill(b *testing.B) {
	for _, dt := range []kernels.DType{kernels.F32, kernels.BF16} {
		for _, n := range []int{512, 2048} {
			b.Run(fmt.Sprintf("%s/n=%d", dt, n), func(b *testing.B) {
				m := qwenShape(b, dt)
				toks := backendtest.RandTokens(1, n, m.Config.Vocab)
				cache := m.HostCache(n)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					cache.Reset()
					first, _ := cache.Alloc(n)
					s := &model.Seq{Cache: cache, Tokens: toks, Pos: make([]int32, n), Slots: make([]int32, n), Logits: []int{n - 1}}
					for j := range s.Pos {
						s.Pos[j], s.Slots[j] = int32(j), int32(first+j)
					}
					if _, err := m.Forward(context.Background(), []*model.Seq{s}); err != nil {
						b.Fatal(err)
					}
				}
				sec := b.Elapsed().Seconds() / float64(b.N)
				b.ReportMetric(float64(n)/sec, "tok/s")
				b.ReportMetric(linearFLOPs(&m.Config)*float64(n)/sec/1e9, "linGFLOP/s")
			})
		}
	}
}

// BenchmarkDecode measures single-sequence decode after a 512-token context.
func BenchmarkDecode(b *testing.B) {
	for _, dt := range []kernels.DType{kernels.F32, kernels.BF16} {
		b.Run(dt.String(), func(b *testing.B) {
			m := qwenShape(b, dt)
			const ctxLen = 512
			cache := m.HostCache(ctxLen + b.N + 1)
			toks := backendtest.RandTokens(2, ctxLen, m.Config.Vocab)
			first, _ := cache.Alloc(ctxLen)
			s := &model.Seq{Cache: cache, Tokens: toks, Pos: make([]int32, ctxLen), Slots: make([]int32, ctxLen)}
			for j := range s.Pos {
				s.Pos[j], s.Slots[j] = int32(j), int32(first+j)
			}
			if _, err := m.Forward(context.Background(), []*model.Seq{s}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				sl0, _ := cache.Alloc(1)
				sl := int32(sl0)
				d := &model.Seq{Cache: cache, Tokens: []int32{toks[i%ctxLen]}, Pos: []int32{int32(ctxLen + i)}, Slots: []int32{sl}, Logits: []int{0}, Decode: true}
				if _, err := m.Forward(context.Background(), []*model.Seq{d}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}

// BenchmarkPrefillVsMatMul measures, alternating within one run, engine prefill of
// n tokens (512 and 2048) and the bare matrix product of the MLP's up projection
// (n×896 × 896×4864) on the same weights, and reports the engine's linear-layer
// rate as a fraction of the matrix product's: the share of time the rest of the
// layer (norms, RoPE, attention, copies) costs. The engine's stage timers run
// in the same prefills and the benchmark logs them as the profile table of
// docs/BENCHMARKS.md (stage, ms per prefill, % of the forward call; run with
// -test.v, or Go cuts benchmark logs at 10 lines).
func BenchmarkPrefillVsMatMul(b *testing.B) {
	for _, dt := range []kernels.DType{kernels.F32, kernels.BF16} {
		for _, n := range []int{512, 2048} {
			b.Run(fmt.Sprintf("%s/n=%d", dt, n), func(b *testing.B) {
				m := qwenShape(b, dt)
				toks := backendtest.RandTokens(1, n, m.Config.Vocab)
				cache := m.HostCache(n)
				w := m.W.Layers[0].Wup
				x := make([]float32, n*w.Cols)
				for i := range x {
					x[i] = float32(i%13) * 0.01
				}
				y := make([]float32, n*w.Rows)
				var st model.StageTimes
				ctx := model.WithStageTimes(context.Background(), &st)
				var tEng, tMM, cEng, cMM float64
				for i := 0; i < b.N; i++ {
					t0, c0 := time.Now(), cputime.Process()
					kernels.MatMul(m.Pool, y, x, n, w)
					tMM += time.Since(t0).Seconds()
					cMM += (cputime.Process() - c0).Seconds()
					cache.Reset()
					first, _ := cache.Alloc(n)
					s := &model.Seq{Cache: cache, Tokens: toks, Pos: make([]int32, n), Slots: make([]int32, n), Logits: []int{n - 1}}
					for j := range s.Pos {
						s.Pos[j], s.Slots[j] = int32(j), int32(first+j)
					}
					t0, c0 = time.Now(), cputime.Process()
					if _, err := m.Forward(ctx, []*model.Seq{s}); err != nil {
						b.Fatal(err)
					}
					tEng += time.Since(t0).Seconds()
					cEng += (cputime.Process() - c0).Seconds()
				}
				mm := 2 * float64(n) * float64(w.Rows) * float64(w.Cols) * float64(b.N) / tMM / 1e9
				eng := linearFLOPs(&m.Config) * float64(n) * float64(b.N) / tEng / 1e9
				b.ReportMetric(mm, "matmulGFLOP/s")
				b.ReportMetric(eng, "engineLinGFLOP/s")
				b.ReportMetric(eng/mm, "engine/matmul")
				if cMM > 0 && cEng > 0 {
					// The same ratio in CPU time: what load inflates less (it
					// does not see a core left idle, which the wall ratio does).
					b.ReportMetric(linearFLOPs(&m.Config)*float64(n)/cEng/(2*float64(n)*float64(w.Rows)*float64(w.Cols)/cMM), "cpuRatio")
				}
				b.ReportMetric(float64(n)*float64(b.N)/tEng, "tok/s")
				b.Log(stageTable(&st, dt, n, b.N, tEng))
			})
		}
	}
}

// stageTable formats accumulated stage times of calls prefills that took wall
// seconds in all.
func stageTable(st *model.StageTimes, dt kernels.DType, n, calls int, wall float64) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s n=%d, %d prefills, %.0f ms each:\n| stage | ms | %% |\n|---|---|---|\n", dt, n, calls, wall*1e3/float64(calls))
	for s := model.Stage(0); s < model.NumStages; s++ {
		sec := st.D[s].Seconds()
		fmt.Fprintf(&sb, "| %s | %.1f | %.1f |\n", s, sec*1e3/float64(calls), 100*sec/wall)
	}
	return sb.String()
}

package model_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"cacheclip/kernels"
	"cacheclip/model"
	"cacheclip/model/backendtest"
)

// BenchmarkPrefillStages runs one-call prefill of n tokens on the Qwen2.5-0.5B
// shape with the engine's stage timers attached and logs where the time goes
// (stage, ms per prefill, % of the forward call) as a Markdown table, the
// profile table of docs/BENCHMARKS.md. Wall time per stage: a stage that leaves
// a core idle shows as its full length.
func BenchmarkPrefillStages(b *testing.B) {
	for _, dt := range []kernels.DType{kernels.F32, kernels.BF16} {
		for _, n := range []int{512, 2048} {
			b.Run(fmt.Sprintf("%s/n=%d", dt, n), func(b *testing.B) {
				m := qwenShape(b, dt)
				toks := backendtest.RandTokens(1, n, m.Config.Vocab)
				cache := m.HostCache(n)
				var st model.StageTimes
				ctx := model.WithStageTimes(context.Background(), &st)
				var wall time.Duration
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					cache.Reset()
					first, _ := cache.Alloc(n)
					s := &model.Seq{Cache: cache, Tokens: toks, Pos: make([]int32, n), Slots: make([]int32, n), Logits: []int{n - 1}}
					for j := range s.Pos {
						s.Pos[j], s.Slots[j] = int32(j), int32(first+j)
					}
					t0 := time.Now()
					if _, err := m.Forward(ctx, []*model.Seq{s}); err != nil {
						b.Fatal(err)
					}
					wall += time.Since(t0)
				}
				var sb strings.Builder
				fmt.Fprintf(&sb, "%s n=%d, %d prefills, %.0f ms each:\n| stage | ms | %% |\n|---|---|---|\n", dt, n, b.N, ms(wall)/float64(b.N))
				for s := model.Stage(0); s < model.NumStages; s++ {
					fmt.Fprintf(&sb, "| %s | %.1f | %.1f |\n", s, ms(st.D[s])/float64(b.N), 100*float64(st.D[s])/float64(wall))
				}
				b.Log(sb.String())
				b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tok/s")
			})
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

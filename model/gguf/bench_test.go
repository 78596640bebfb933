package gguf

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"cacheclip/internal/realmodel"
	"cacheclip/model"
)

// BenchmarkSmolLM2 measures the real model on the prompt of the golden's
// long reading task, with its weights held each way (weights=native: the
// file's Q4_1/Q8_0 blocks; native-q8: the same, decode with 8-bit
// activations and integer dot products; weights=f32: dequantized at load): prefill of the
// first n tokens in one call, then 32 greedy decode steps after it. Threads:
// $GOMAXPROCS (docs/BENCHMARKS.md runs it with 2, as llama.cpp's figures).
func BenchmarkSmolLM2(b *testing.B) {
	p := realmodel.Path(b)
	for _, mode := range []string{"native-q8", "native", "f32"} {
		b.Run("weights="+mode, func(b *testing.B) {
			f, err := Open(p)
			if err != nil {
				b.Fatal(err)
			}
			m, _, err := f.ModelWith(Options{Native: mode != "f32", Q8Act: mode == "native-q8"})
			f.Close()
			if err != nil {
				b.Fatal(err)
			}
			benchSmolLM2(b, m)
		})
	}
}

func benchSmolLM2(b *testing.B, m *model.Model) {
	m.Pack() // not inside the first timed prefill
	ids := benchIDs(b)
	ctx := context.Background()
	for _, n := range []int{128, 512, 2048} {
		prefill := func(c *model.Cache) []float32 {
			c.Reset()
			s := &model.Seq{Cache: c, Tokens: ids[:n], Pos: make([]int32, n), Slots: make([]int32, n), Logits: []int{n - 1}}
			first, _ := c.Alloc(n)
			for j := range s.Pos {
				s.Pos[j], s.Slots[j] = int32(j), int32(first+j)
			}
			out, err := m.Forward(ctx, []*model.Seq{s})
			if err != nil {
				b.Fatal(err)
			}
			return out[0].Logits[0]
		}
		b.Run(fmt.Sprintf("prefill/n=%d", n), func(b *testing.B) {
			c := m.HostCache(n)
			for b.Loop() {
				prefill(c)
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "tok/s")
		})
		b.Run(fmt.Sprintf("decode/after=%d", n), func(b *testing.B) {
			const steps = 32
			c := m.HostCache(n + steps)
			var dec float64
			var stages model.StageTimes
			sctx := model.WithStageTimes(ctx, &stages)
			for b.Loop() {
				b.StopTimer()
				logits := prefill(c)
				b.StartTimer()
				st := &model.GenState{Cache: c, NextPos: int32(n), Logits: logits, Opts: model.GenOptions{MaxNewTokens: steps}, Tok: nopDetok{}}
				if err := m.Generate(sctx, []*model.GenState{st}); err != nil {
					b.Fatal(err)
				}
				dec += steps
			}
			b.ReportMetric(dec/b.Elapsed().Seconds(), "tok/s")
			b.Log(decodeStages(&stages, dec, b.Elapsed()))
		})
	}
}

// decodeStages is where a decode token's wall time went (the engine's stage
// timers; the rest of the wall time is sampling and Generate's bookkeeping).
func decodeStages(st *model.StageTimes, tokens float64, wall time.Duration) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "decode stages, µs per token (wall %.0f):", float64(wall.Microseconds())/tokens)
	for s := model.Stage(0); s < model.NumStages; s++ {
		if d := st.D[s]; d > 0 {
			fmt.Fprintf(&sb, " %s %.0f (%.0f%%);", s, float64(d.Microseconds())/tokens, 100*d.Seconds()/wall.Seconds())
		}
	}
	return sb.String()
}

// benchIDs is the token ids of the golden's longest prompt (real text).
func benchIDs(b *testing.B) []int32 {
	g := readGoldenFile(b)
	var ids []int32
	for _, p := range g.Prompts {
		if len(p.IDs) > len(ids) {
			ids = p.IDs
		}
	}
	if len(ids) < 2048 {
		b.Fatalf("longest golden prompt has %d tokens, want 2048", len(ids))
	}
	return ids
}

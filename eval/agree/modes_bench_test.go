//go:build unix

package agree_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"cacheclip/eval"
	"cacheclip/internal/realmodel"
	"cacheclip/kernels"
	"cacheclip/loader"
	"cacheclip/methods"
	"cacheclip/model"
	"cacheclip/prefill"
	"cacheclip/prefill/auxscore"
)

// BenchmarkAuxModesSmolLM2 measures how far each cheaper way of running the
// auxiliary moves its selection from the full auxiliary prefill's, on the
// real SmolLM2-135M-Instruct (the GGUF the tests use, f32 after loading) and
// RULER-style questions of 2,048 tokens in 8 chunks of 256: the Jaccard of
// the selected tokens at r = 0.1, 0.2 and 0.4, averaged over the questions,
// and the CPU time of one selection. Random weights (prefill's
// BenchmarkAuxModes) give the cost on the 0.5B pair's shapes; these weights
// give attention patterns that mean something.
//
//	go test -run '^$' -bench AuxModesSmolLM2 -benchtime 1x ./eval/agree/
func BenchmarkAuxModesSmolLM2(b *testing.B) {
	bd, err := loader.Open(realmodel.Path(b), "")
	if err != nil {
		b.Fatal(err)
	}
	defer bd.Close()
	ctx := context.Background()
	var qs []prefill.Query
	for _, task := range []string{eval.TaskNIAHSingle, eval.TaskVTDistractor, eval.TaskMultiHop} {
		exs, err := eval.Generate(ctx, eval.Config{Task: task, N: 4, Seed: 2110, ContextTokens: 2048, ChunkTokens: 256, Count: bd.CountTokens})
		if err != nil {
			b.Fatal(err)
		}
		for _, ex := range exs {
			q := prefill.Query{Question: ex.Question}
			for _, c := range ex.Chunks {
				q.Chunks = append(q.Chunks, c.Text)
			}
			qs = append(qs, q)
		}
	}
	am := bd.Model
	src := func(m *model.Model) prefill.ChunkSource {
		return prefill.NewMemorySource(&prefill.Computer{Model: m})
	}
	bf, err := bf16Copy(am)
	if err != nil {
		b.Fatal(err)
	}
	bf.Pool, _ = kernels.NewPoolWith(kernels.PoolOptions{FastBF16: true})
	cheap := src(am)
	type variant struct {
		name string
		s    *auxscore.Scorer
	}
	vs := []variant{
		{"fresh", &auxscore.Scorer{Model: am, Layouter: bd}},
		{"fresh-bf16dot", &auxscore.Scorer{Model: bf, Layouter: bd}},
		{"cached", &auxscore.Scorer{Model: am, Layouter: bd, Source: cheap}},
	}
	for _, w := range []int{8, 16, 32, 64, 128} {
		vs = append(vs, variant{fmt.Sprintf("boundary%d", w), &auxscore.Scorer{Model: am, Layouter: bd, Source: cheap, Boundary: w}})
	}
	for _, n := range []int{8, 15, 22} {
		cut, err := model.FirstLayers(am, n)
		if err != nil {
			b.Fatal(err)
		}
		vs = append(vs, variant{fmt.Sprintf("fresh-layers%d", n), &auxscore.Scorer{Model: cut, Layouter: bd}})
	}
	ratios := []float64{0.1, 0.2, 0.4}
	o := auxscore.DefaultOptions()
	lays := make([]prefill.Layout, len(qs))
	ref := make([][]float32, len(qs))
	for i, q := range qs {
		if lays[i], err = bd.Layout(q.Chunks, q.Question); err != nil {
			b.Fatal(err)
		}
		if ref[i], err = vs[0].s.PrimaryScores(ctx, q, lays[i]); err != nil {
			b.Fatal(err)
		}
	}
	for _, v := range vs {
		b.Run(v.name, func(b *testing.B) {
			jac := make([]float64, len(ratios))
			var cpu time.Duration
			for i, q := range qs {
				if v.s.Source != nil {
					// The chunk caches come from the shard store in a job, built ahead.
					if _, err := v.s.PrimaryScores(ctx, q, lays[i]); err != nil {
						b.Fatal(err)
					}
				}
				c0 := cpuTime()
				sc, err := v.s.PrimaryScores(ctx, q, lays[i])
				if err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime() - c0
				for j, r := range ratios {
					k := methods.Budget(r, len(sc))
					jac[j] += auxscore.Jaccard(auxscore.SelectTokens(sc, k, o.Window, o.MinCount), auxscore.SelectTokens(ref[i], k, o.Window, o.MinCount))
				}
			}
			for j, r := range ratios {
				b.ReportMetric(jac[j]/float64(len(qs)), fmt.Sprintf("jaccard_r%.1f", r))
			}
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(len(qs)), "aux_cpu_ms/q")
			b.ReportMetric(float64(lays[0].ContextTokens()), "context_tokens")
		})
	}
}

// bf16Copy is m with every matrix rounded to bf16 (norms stay f32).
func bf16Copy(m *model.Model) (*model.Model, error) {
	conv := func(x kernels.Mat) kernels.Mat {
		x = x.RowMajor() // FromWeights packs the copy again
		if x.DType != kernels.F32 {
			return x
		}
		out := kernels.Mat{DType: kernels.BF16, Rows: x.Rows, Cols: x.Cols, U16: make([]uint16, len(x.F32))}
		kernels.FromF32(out.U16, x.F32, kernels.BF16)
		return out
	}
	w := m.W
	w.Embed, w.LMHead = conv(m.W.Embed), conv(m.W.LMHead)
	w.Layers = make([]model.Layer, len(m.W.Layers))
	for i, L := range m.W.Layers {
		L.Wq, L.Wk, L.Wv, L.Wo = conv(L.Wq), conv(L.Wk), conv(L.Wv), conv(L.Wo)
		L.Wgate, L.Wup, L.Wdown = conv(L.Wgate), conv(L.Wup), conv(L.Wdown)
		w.Layers[i] = L
	}
	return model.FromWeights(&m.Config, w)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

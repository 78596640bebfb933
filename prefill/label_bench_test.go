//go:build unix

package prefill_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"cacheclip/model"
	"cacheclip/prefill"
	"cacheclip/prefill/prefilltest"
)

// BenchmarkLabelVsGenerate answers the same 8 questions (the Qwen2.5-0.5B
// shape, 8×256 context tokens, a 32-token question) twice per iteration: by
// scoring 4 five-token labels (one batched branching forward) and by
// generating 8 new tokens (batched greedy decode), both after the same
// method's prefill, and reports each one's questions/s and their ratio; and
// again with 4 one-token labels.
//
//	go test -run '^$' -bench LabelVsGenerate -benchtime 2x ./prefill/
func BenchmarkLabelVsGenerate(b *testing.B) {
	s, err := benchOnce()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	lay := s.eng.Layouter
	// Four five-token labels (numbers under the byte-level test tokenizer) and
	// four one-token labels (A–D: scored from the prompt's logits alone).
	labelSets := map[string][][]int32{}
	for _, set := range [][]string{{" 7319", " 4210", " 1234", " 9876"}, {"A", "B", "C", "D"}} {
		var ids [][]int32
		for _, l := range set {
			ids = append(ids, lay.(prefilltest.Layouter).Segment(l).IDs)
		}
		labelSets[fmt.Sprintf("labels=%dtok", len(ids[0]))] = ids
	}
	const nq = 8
	for _, name := range []string{prefill.Reuse, prefill.CacheClip} {
		for _, set := range []string{"labels=5tok", "labels=1tok"} {
			labels := labelSets[set]
			b.Run(name+"/"+set, func(b *testing.B) {
				m, _ := prefill.NewMethod(name)
				m.Ratio = 0.2
				l, err := lay.Layout(s.q.Chunks, s.q.Question)
				if err != nil {
					b.Fatal(err)
				}
				q := s.q
				if name == prefill.CacheClip {
					// The job makes the selection ahead, overlapped with the primary.
					if q.Selection, err = s.auxCheap.Select(ctx, q, l, prefill.Budget(m.Ratio, l.ContextTokens())); err != nil {
						b.Fatal(err)
					}
				}
				// Wall time and process CPU time (steadier on a shared machine).
				var labelT, genT, labelCPU, genCPU time.Duration
				for i := 0; i < b.N; i++ {
					t0, c0 := time.Now(), cpuTime()
					var items []*prefill.LabelItem
					for j := 0; j < nq; j++ {
						res, err := s.eng.PrefillLayout(ctx, q, l, m, prefill.LabelReserve(labels))
						if err != nil {
							b.Fatal(err)
						}
						items = append(items, &prefill.LabelItem{Res: res, Labels: labels})
					}
					if err := prefill.ScoreLabels(ctx, s.eng.Model, items); err != nil {
						b.Fatal(err)
					}
					labelT += time.Since(t0)
					labelCPU += cpuTime() - c0

					t0, c0 = time.Now(), cpuTime()
					var gens []*model.GenState
					for j := 0; j < nq; j++ {
						res, err := s.eng.PrefillLayout(ctx, q, l, m, 8)
						if err != nil {
							b.Fatal(err)
						}
						gens = append(gens, &model.GenState{Cache: res.Cache, NextPos: res.NextPos, Logits: res.Logits, Groups: res.Groups, Opts: model.GenOptions{MaxNewTokens: 8}})
					}
					if err := s.eng.Model.Generate(ctx, gens); err != nil {
						b.Fatal(err)
					}
					for _, g := range gens {
						if len(g.IDs) != 8 {
							b.Fatalf("generated %d tokens, want 8", len(g.IDs))
						}
					}
					genT += time.Since(t0)
					genCPU += cpuTime() - c0
				}
				lq := float64(nq*b.N) / labelT.Seconds()
				gq := float64(nq*b.N) / genT.Seconds()
				b.ReportMetric(lq, "label-q/s")
				b.ReportMetric(gq, "generate-q/s")
				b.ReportMetric(lq/gq, "label/generate")
				b.ReportMetric(float64(genCPU)/float64(labelCPU), "cpu-generate/label")
			})
		}
	}
}

//go:build unix

package prefill_test

import (
	"context"
	"testing"
	"time"

	"cacheclip/methods"
	"cacheclip/prefill"
	"cacheclip/prefill/auxscore"
	"cacheclip/prefill/prefilltest"
)

// BenchmarkUnreadLastLayer is what stopping unread rows at the last layer's
// keys and values saves, in one process: the full auxiliary's selection and a
// full primary prefill, each with and without it (best CPU time of b.N).
//
//	go test -run '^$' -bench UnreadLastLayer -benchtime 2x ./prefill/
func BenchmarkUnreadLastLayer(b *testing.B) {
	s, err := benchOnce()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	primary, _ := s.eng.Layouter.Layout(s.q.Chunks, s.q.Question)
	skip := &auxscore.Scorer{Model: s.auxModel, Layouter: prefilltest.Layouter{Width: 2}}
	every := &auxscore.Scorer{Model: prefilltest.EveryRow{Backend: s.auxModel}, Layouter: prefilltest.Layouter{Width: 2}}
	fm, _ := prefill.NewMethod(methods.Full)
	fskip := &prefill.Prefiller{Model: s.eng.Model, Layouter: s.eng.Layouter}
	fevery := &prefill.Prefiller{Model: prefilltest.EveryRow{Backend: s.eng.Model}, Layouter: s.eng.Layouter}
	var c [4]time.Duration
	for i := 0; i < b.N; i++ {
		for j, f := range []func() error{
			func() error { _, err := skip.Select(ctx, s.q, primary, 410); return err },
			func() error { _, err := every.Select(ctx, s.q, primary, 410); return err },
			func() error { _, err := fskip.Prefill(ctx, s.q, fm, 0); return err },
			func() error { _, err := fevery.Prefill(ctx, s.q, fm, 0); return err },
		} {
			c0 := cpuTime()
			if err := f(); err != nil {
				b.Fatal(err)
			}
			if d := cpuTime() - c0; i == 0 || d < c[j] {
				c[j] = d
			}
		}
	}
	b.ReportMetric(c[0].Seconds(), "aux-skip-cpu-s")
	b.ReportMetric(c[1].Seconds(), "aux-every-cpu-s")
	b.ReportMetric(c[2].Seconds(), "full-skip-cpu-s")
	b.ReportMetric(c[3].Seconds(), "full-every-cpu-s")
}

//go:build unix

package runner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"cacheclip/internal/cputime"
	"cacheclip/jobs"
)

// BenchmarkLabelVsGenerateJob runs the same 200 questions on the test-bed pair
// with CacheClip (r = 0.2) as a 4-label job and as a generate job of up to 8
// new tokens, alternately in one process, and reports each one's questions/s
// and their ratio.
//
//	go test -run '^$' -bench LabelVsGenerateJob -benchtime 3x ./runner/
func BenchmarkLabelVsGenerateJob(b *testing.B) {
	primary, aux := "../testdata/testbed/primary", "../testdata/testbed/aux"
	dir := b.TempDir()
	corpus, questions := writeBenchData(b, dir, 200)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	texts, err := jobs.LoadCorpus(ctx, corpus, jobs.CorpusOptions{})
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, task, out string) (jobs.Stats, time.Duration, time.Duration) {
		spec := jobs.DefaultSpec()
		spec.Questions, spec.Model, spec.Aux = questions, primary, aux
		spec.Store = filepath.Join(dir, "store")
		spec.Out = out
		spec.Method, spec.Ratio, spec.MaxNewTokens, spec.BatchSize = "cacheclip", 0.2, 8, 8
		spec.Task = task
		// The same prompt for both: the label job does not list the choices, so
		// the comparison is label scoring against decoding alone.
		spec.LabelPrompt = "{question}"
		eng, err := NewEngine(ctx, spec, log)
		if err != nil {
			b.Fatal(err)
		}
		defer eng.Close()
		if out == filepath.Join(dir, "warmup") {
			b.Logf("device %s", eng.Device()) // the GPU check runs this on the device
		}
		t0, c0 := time.Now(), cputime.Process()
		st, err := Run(ctx, Options{Spec: spec, Stages: eng, Corpus: texts, Logger: log})
		if err != nil || st.OK != 200 {
			b.Fatalf("run: %v (ok %d)", err, st.OK)
		}
		return st, time.Since(t0), cputime.Process() - c0
	}
	run(b, jobs.TaskGenerate, filepath.Join(dir, "warmup")) // builds the shards
	var labelWall, genWall, labelCPU, genCPU time.Duration
	var generated int64
	for i := 0; i < b.N; i++ {
		_, lw, lc := run(b, jobs.TaskLabel, filepath.Join(dir, fmt.Sprintf("label-%d", i)))
		st, gw, gc := run(b, jobs.TaskGenerate, filepath.Join(dir, fmt.Sprintf("gen-%d", i)))
		labelWall += lw
		genWall += gw
		labelCPU += lc
		genCPU += gc
		generated += st.GeneratedTokens
	}
	lq := float64(200*b.N) / labelWall.Seconds()
	gq := float64(200*b.N) / genWall.Seconds()
	b.ReportMetric(lq, "label-q/s")
	b.ReportMetric(gq, "generate-q/s")
	b.ReportMetric(lq/gq, "label/generate")
	b.ReportMetric(float64(generated)/float64(200*b.N), "generated-tokens/q")
	// Process CPU time is the steadier figure on a shared machine.
	b.ReportMetric(float64(genCPU)/float64(labelCPU), "cpu-generate/label")
}

package runner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"cacheclip/jobs"
)

// BenchmarkJob runs 200 questions over 8 chunks each on the test-bed pair with
// CacheClip, with and without the overlap of stages, and reports the pipeline's
// throughput against the sum of its stages' busy time (what running them one
// after another would cost). The primary runs where --device auto puts it: on
// the GPU when one is present (scripts/gpu-check.sh), else on the CPU.
func BenchmarkJob(b *testing.B) {
	primary, aux := "../testdata/testbed/primary", "../testdata/testbed/aux"
	if _, err := os.Stat(filepath.Join(primary, "config.json")); err != nil {
		b.Fatalf("test-bed models missing: %v", err)
	}
	dir := b.TempDir()
	corpus, questions := writeBenchData(b, dir, 200)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	texts, err := jobs.LoadCorpus(ctx, corpus, jobs.CorpusOptions{})
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, overlap bool, out string) (jobs.Stats, time.Duration) {
		spec := jobs.DefaultSpec()
		spec.Questions, spec.Model, spec.Aux = questions, primary, aux
		spec.Store = filepath.Join(dir, "store") // built by the warm-up run, loaded after
		spec.Out = out
		spec.Method, spec.Ratio, spec.MaxNewTokens, spec.BatchSize = "cacheclip", 0.2, 8, 8
		eng, err := NewEngine(ctx, spec, log)
		if err != nil {
			b.Fatal(err)
		}
		defer eng.Close()
		t0 := time.Now()
		st, err := Run(ctx, Options{Spec: spec, Stages: eng, Corpus: texts, Logger: log, NoOverlap: !overlap})
		if err != nil || st.OK != 200 {
			b.Fatalf("run: %v (ok %d)", err, st.OK)
		}
		return st, time.Since(t0)
	}
	run(b, true, filepath.Join(dir, "warmup"))
	for _, overlap := range []bool{true, false} {
		b.Run(fmt.Sprintf("overlap=%v", overlap), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				st, wall := run(b, overlap, filepath.Join(dir, fmt.Sprintf("out-%v-%d", overlap, i)))
				// The read stage's busy time is the whole run (it drives the loop); the
				// others are work a serial runner would do one after another.
				var busy float64
				for _, name := range []string{"plan", "load", "aux", "primary", "write"} {
					busy += st.StageBusySeconds[name]
				}
				b.ReportMetric(200/wall.Seconds(), "questions/s")
				b.ReportMetric(busy/wall.Seconds(), "stage-sum/wall")
				// The pipeline's ceiling is its slowest stage run alone: the target
				// is a throughput of at least 0.9 of it.
				var slowest float64
				for _, name := range []string{"load", "aux", "primary"} {
					b.ReportMetric(st.StageBusySeconds[name], name+"-busy-s")
					slowest = max(slowest, st.StageBusySeconds[name])
				}
				b.ReportMetric(slowest/wall.Seconds(), "slowest-stage/wall")
			}
		})
	}
}

// benchChunk is a corpus row of the benchmarks.
type benchChunk struct {
	ChunkID string `parquet:"chunk_id"`
	Text    string `parquet:"text"`
}

// writeBenchData writes 64 chunks, each holding one key's magic number, and
// n questions over 8 of them, each asking one key's number with four
// choices (the right number first, then three other keys' numbers).
func writeBenchData(tb testing.TB, dir string, n int) (corpus, questions string) {
	tb.Helper()
	type q struct {
		QueryID  string   `parquet:"query_id"`
		Question string   `parquet:"question"`
		ChunkIDs []string `parquet:"chunk_ids,list"`
		Choices  []string `parquet:"choices,list"`
	}
	var cs []benchChunk
	for i := 0; i < 64; i++ {
		cs = append(cs, benchChunk{fmt.Sprintf("c%02d", i), fmt.Sprintf("The grass is green. The sky is blue. One of the special magic numbers for key-%d is: %d. The sun is yellow. Here we go. There and back again.", i, 4000+i*71)})
	}
	var qs []q
	for i := 0; i < n; i++ {
		ids := make([]string, 8)
		for j := range ids {
			ids[j] = fmt.Sprintf("c%02d", (i*5+j*7)%64)
		}
		key := (i * 5) % 64
		var choices []string
		for _, k := range []int{key, (key + 7) % 64, (key + 14) % 64, (key + 21) % 64} {
			choices = append(choices, fmt.Sprint(4000+k*71))
		}
		qs = append(qs, q{fmt.Sprintf("q%03d", i), fmt.Sprintf("What is the special magic number for key-%d?", key), ids, choices})
	}
	return writeCorpusQuestions(tb, dir, cs, qs)
}

// writeCorpusQuestions writes a benchmark's corpus and questions files into dir.
func writeCorpusQuestions[C, Q any](tb testing.TB, dir string, cs []C, qs []Q) (corpus, questions string) {
	tb.Helper()
	corpus, questions = filepath.Join(dir, "corpus.parquet"), filepath.Join(dir, "questions.parquet")
	if err := parquet.WriteFile(corpus, cs); err != nil {
		tb.Fatal(err)
	}
	if err := parquet.WriteFile(questions, qs); err != nil {
		tb.Fatal(err)
	}
	return corpus, questions
}

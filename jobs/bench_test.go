package jobs

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// BenchmarkQuestionsReader streams a 200k-row file and reports rows/s and the
// heap the reader keeps per row (the duplicate-check set).
func BenchmarkQuestionsReader(b *testing.B) {
	const n = 200_000
	rows := make([]qRow, n)
	for i := range rows {
		rows[i] = qRow{QueryID: sp(fmt.Sprintf("query-%09d", i)), Question: sp("what does chunk say about the thing?"),
			ChunkIDs: []string{"c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8"}, Lang: "en"}
	}
	p := writeParquet(b, b.TempDir(), "q.parquet", rows, 10_000)
	rows = nil
	b.ResetTimer()
	var heapPerRow float64
	for it := 0; it < b.N; it++ {
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		r, err := OpenQuestions(p, QuestionsOptions{BatchSize: 256})
		if err != nil {
			b.Fatal(err)
		}
		got := 0
		for {
			batch, err := r.Next(context.Background())
			got += len(batch)
			if err != nil {
				break
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		heapPerRow = float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / n
		r.Close()
		if got != n {
			b.Fatalf("read %d", got)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(heapPerRow, "heapB/row")
}

// BenchmarkOutputWrite writes 50k results in parts of 5k rows (fsync included).
func BenchmarkOutputWrite(b *testing.B) {
	const n = 50_000
	for it := 0; it < b.N; it++ {
		dir := filepath.Join(b.TempDir(), fmt.Sprint(it))
		o, err := OpenOutput(context.Background(), OutputOptions{Dir: dir, PartRows: 5000, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < n; i++ {
			err := o.Write(context.Background(), Result{QueryID: fmt.Sprintf("query-%09d", i), Answer: "an answer of a few words",
				Status: StatusOK, Method: "cacheclip", RecomputeRatio: 0.2, TTFTMS: float64(i % 300), TotalMS: float64(i % 900)})
			if err != nil {
				b.Fatal(err)
			}
		}
		if _, err := o.Finish(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkCorpusIndex builds an index of 200k chunks of ~600 bytes, then
// measures lookups (a copy of the text each).
func BenchmarkCorpusIndex(b *testing.B) {
	const n = 200_000
	rows := make([]cRow, n)
	text := strings.Repeat("lorem ipsum dolor sit amet ", 22)
	for i := range rows {
		rows[i] = cRow{ChunkID: sp(fmt.Sprintf("doc%07d#%d", i/4, i%4)), Text: sp(text)}
	}
	dir := b.TempDir()
	p := writeParquet(b, dir, "corpus.parquet", rows, 20_000)
	rows = nil
	t0 := time.Now()
	ci, err := OpenCorpusIndex(context.Background(), p, filepath.Join(dir, "idx"))
	if err != nil {
		b.Fatal(err)
	}
	defer ci.Close()
	build := time.Since(t0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := ci.Text(fmt.Sprintf("doc%07d#%d", (i*7919)%n/4, i%4)); !ok {
			b.Fatal("missing")
		}
	}
	b.ReportMetric(float64(n)/build.Seconds(), "build-chunks/s")
}

// BenchmarkCommitCadence measures what committing often costs: 4,000 rows
// written in parts of 8 (one batch), 64 and 1,000 rows. Each commit writes
// and fsyncs a part, renames it, rewrites and fsyncs the manifest (which
// lists every part so far) and checks the lease.
func BenchmarkCommitCadence(b *testing.B) {
	const n = 4000
	for _, per := range []int{8, 64, 1000} {
		b.Run(fmt.Sprintf("part_rows=%d", per), func(b *testing.B) {
			var commits int
			for it := 0; it < b.N; it++ {
				dir := filepath.Join(b.TempDir(), fmt.Sprint(it))
				o, err := OpenOutput(context.Background(), OutputOptions{Dir: dir, PartRows: per, Logger: quiet})
				if err != nil {
					b.Fatal(err)
				}
				for i := 0; i < n; i++ {
					err := o.Write(context.Background(), Result{QueryID: fmt.Sprintf("query-%09d", i), Answer: "an answer of a few words",
						Status: StatusOK, Method: "cacheclip", RecomputeRatio: 0.2, TTFTMS: float64(i % 300), TotalMS: float64(i % 900)})
					if err != nil {
						b.Fatal(err)
					}
				}
				if _, err := o.Finish(context.Background()); err != nil {
					b.Fatal(err)
				}
				commits += (n + per - 1) / per
			}
			b.ReportMetric(b.Elapsed().Seconds()*1000/float64(commits), "ms/commit")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(n*b.N), "µs/row")
		})
	}
}

package jobs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

// scaleRow is the questions row of the scale benchmark: ids, a question and
// three chunk ids, like a production questions file.
type scaleRow struct {
	QueryID  string   `parquet:"query_id"`
	Question string   `parquet:"question"`
	ChunkIDs []string `parquet:"chunk_ids,list"`
}

// writeScaleQuestions streams n generated rows into path in row groups of
// 100k, so that generating a 10-million-row file holds one row group at most.
func writeScaleQuestions(tb testing.TB, path string, n int) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := parquet.NewGenericWriter[scaleRow](f, parquet.MaxRowsPerRowGroup(100_000), parquet.Compression(&parquet.Snappy))
	buf := make([]scaleRow, 0, 10_000)
	for i := 0; i < n; i++ {
		buf = append(buf, scaleRow{QueryID: fmt.Sprintf("query-%010d", i), Question: fmt.Sprintf("what does the corpus say about item %d?", i),
			ChunkIDs: []string{fmt.Sprintf("doc%07d", i%1_000_003), fmt.Sprintf("doc%07d", (i*7)%1_000_003), fmt.Sprintf("doc%07d", (i*13)%1_000_003)}})
		if len(buf) == cap(buf) || i == n-1 {
			if _, err := w.Write(buf); err != nil {
				tb.Fatal(err)
			}
			buf = buf[:0]
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// runScanChild streams the questions file named by envChildQ the way a job
// does (OpenQuestions, Next until EOF) and prints the rows read.
func runScanChild() int {
	r, err := OpenQuestions(os.Getenv(envChildQ), QuestionsOptions{BatchSize: 256})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer r.Close()
	n := 0
	for {
		b, err := r.Next(context.Background())
		n += len(b)
		if err != nil {
			break
		}
	}
	fmt.Println(n)
	return 0
}

// BenchmarkQuestionsScale records the peak RSS of a process that streams a
// generated questions file of 1 M, 3 M and 10 M rows (CACHECLIP_SCALE_ROWS,
// comma-separated, overrides; the files are generated into the temp dir and
// removed). Not part of make test: minutes and gigabytes of disk.
//
//	CACHECLIP_SCALE=1 nice go test -run '^$' -bench QuestionsScale -benchtime 1x -timeout 60m ./jobs/
func BenchmarkQuestionsScale(b *testing.B) {
	if os.Getenv("CACHECLIP_SCALE") == "" {
		b.Skip("set CACHECLIP_SCALE=1 to generate multi-million-row files")
	}
	sizes := []int{1_000_000, 3_000_000, 10_000_000}
	if s := os.Getenv("CACHECLIP_SCALE_ROWS"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				b.Fatal(err)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			p := filepath.Join(b.TempDir(), "q.parquet")
			t0 := time.Now()
			writeScaleQuestions(b, p, n)
			st, _ := os.Stat(p)
			gen := time.Since(t0)
			b.ResetTimer()
			for it := 0; it < b.N; it++ {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), envChild+"=scan", envChildQ+"="+p)
				t1 := time.Now()
				out, err := cmd.Output()
				if err != nil {
					b.Fatalf("scan: %v", err)
				}
				if got, _ := strconv.Atoi(strings.TrimSpace(string(out))); got != n {
					b.Fatalf("scanned %d rows of %d", got, n)
				}
				ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
				rss := float64(ru.Maxrss) * 1024 // KiB on Linux
				b.ReportMetric(rss/(1<<20), "peakRSS_MiB")
				b.ReportMetric(float64(n)/time.Since(t1).Seconds(), "rows/s")
				b.Logf("%d rows: file %d MiB (generated in %v), peak RSS %.0f MiB", n, st.Size()>>20, gen.Round(time.Second), rss/(1<<20))
			}
		})
	}
}

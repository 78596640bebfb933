package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// seedFile returns the bytes of a small Parquet file written by writeParquet.
func seedFile[T any](tb testing.TB, rows []T, perGroup int64) []byte {
	tb.Helper()
	p := writeParquet(tb, tb.TempDir(), "seed.parquet", rows, perGroup)
	b, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// fuzzFile writes data to a temporary file and returns its path.
func fuzzFile(t *testing.T, name string, data []byte) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fuzzInputLimit is the watchdog's limit for one input: under the fuzz
// worker's own 10 s limit, which crashes the worker without a word.
const fuzzInputLimit = 8 * time.Second

// watchdog crashes the fuzz worker (so the fuzzer records the input) when
// one input takes longer than d: a file that hangs the reader is a bug too.
// The fuzzer has been seen to save a different input than the one that
// stalled (docs/RELIABILITY.md, "Fuzzing"), so before crashing the watchdog
// writes the input itself to a file (CACHECLIP_FUZZ_STALL_DIR, else the
// system temporary directory), logs its path, its hex and the memory in use,
// and dumps every goroutine's stack to show where the reader was stuck.
func watchdog(target string, data []byte, d time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-time.After(d):
			fmt.Fprint(os.Stderr, stallReport(target, data, d))
			panic(fmt.Sprintf("%s: one fuzz input took over %v (see the report above)", target, d))
		}
	}()
	return func() { close(done) }
}

// stallReport saves a stalled fuzz input and describes it.
func stallReport(target string, data []byte, d time.Duration) string {
	dir := os.Getenv("CACHECLIP_FUZZ_STALL_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "cacheclip-fuzz-stalls")
	}
	sum := sha256.Sum256(data)
	path := filepath.Join(dir, fmt.Sprintf("%s-%x.bin", target, sum[:8]))
	saved := "saved to " + path
	if err := os.MkdirAll(dir, 0o755); err != nil {
		saved = "not saved: " + err.Error()
	} else if err := os.WriteFile(path, data, 0o644); err != nil {
		saved = "not saved: " + err.Error()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	stacks := make([]byte, 1<<20)
	stacks = stacks[:runtime.Stack(stacks, true)]
	shown := data
	if len(shown) > 64<<10 {
		shown = shown[:64<<10]
	}
	return fmt.Sprintf("\nFUZZ STALL %s: an input of %d bytes ran over %v; %s\n"+
		"heap in use %d MiB, obtained from the OS %d MiB, %d GCs\n"+
		"replay: go test -run '^%s$' ./jobs after copying it to testdata/fuzz/%s/ with the go test fuzz v1 header\n"+
		"hex (first %d bytes): %s\ngoroutines:\n%s\n",
		target, len(data), d, saved, ms.HeapInuse>>20, ms.Sys>>20, ms.NumGC,
		target, target, len(shown), hex.EncodeToString(shown), stacks)
}

// TestStallReportSavesTheInput: what the watchdog writes before it crashes a
// stalled worker lets the stall be replayed: the input itself, in a file the
// report names, and its hex.
func TestStallReportSavesTheInput(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("CACHECLIP_FUZZ_STALL_DIR", dir)
	data := []byte("PAR1\x01\x02PAR1")
	report := stallReport("FuzzQuestions", data, fuzzInputLimit)
	files, _ := filepath.Glob(filepath.Join(dir, "FuzzQuestions-*.bin"))
	if len(files) != 1 {
		t.Fatalf("saved %v, want one file", files)
	}
	saved, err := os.ReadFile(files[0])
	if err != nil || !bytes.Equal(saved, data) {
		t.Fatalf("saved %q (%v), want %q", saved, err, data)
	}
	for _, want := range []string{files[0], hex.EncodeToString(data), "goroutine"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
}

// FuzzQuestions: any file handed over as questions gives rows, row errors or
// an error naming the file; never a panic or a hang.
func FuzzQuestions(f *testing.F) {
	w := int64(3)
	f.Add(seedFile(f, []qRow{
		{QueryID: sp("a"), Question: sp("q?"), ChunkIDs: []string{"c1"}, Lang: "en", Weight: &w},
		{QueryID: sp("b"), Question: sp(" "), ChunkIDs: []string{"c1", ""}, MaxNewTokens: i32p(-1)},
		{QueryID: sp("a"), Question: sp("dup"), ChunkIDs: []string{"c2"}},
		{Question: sp("no id"), ChunkIDs: nil},
	}, 2))
	f.Add(seedFile(f, []struct {
		QueryID  string   `parquet:"query_id"`
		Question string   `parquet:"question"`
		ChunkIDs []string `parquet:"chunk_ids"` // legacy repeated field
	}{{"x", "q", []string{"c"}}}, 0))
	f.Add([]byte("PAR1\x00\x00\x00\x00PAR1"))
	// Dictionary, delta, compressed, v1 and v2 pages (parquetcraft_test.go).
	for _, v := range []int{1, 2} {
		q, _ := craftBase(f, v)
		f.Add(q.bytes(f, nil))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		defer watchdog("FuzzQuestions", data, fuzzInputLimit)()
		p := fuzzFile(t, "q.parquet", data)
		r, err := OpenQuestions(p, QuestionsOptions{BatchSize: 4})
		if err != nil {
			if !bytes.Contains([]byte(err.Error()), []byte(p)) && !bytes.Contains([]byte(err.Error()), []byte("q.parquet")) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		defer r.Close()
		ctx := context.Background()
		for i := 0; i < 100000; i++ {
			b, err := r.Next(ctx)
			for _, q := range b {
				if q.Err == nil && (q.QueryID == "" || len(q.ChunkIDs) == 0) {
					t.Fatalf("row %d accepted without query_id or chunk_ids: %+v", q.Row, q)
				}
			}
			if errors.Is(err, io.EOF) || err != nil {
				return
			}
		}
		t.Fatal("reader never reached the end")
	})
}

// FuzzCorpus: any file handed over as the corpus loads or gives an error.
func FuzzCorpus(f *testing.F) {
	f.Add(seedFile(f, []cRow{{ChunkID: sp("c1"), Text: sp("alpha")}, {ChunkID: sp("c2"), Text: sp("beta")}, {ChunkID: sp("c1"), Text: sp("alpha")}}, 2))
	f.Add(seedFile(f, []cRow{{ChunkID: nil, Text: sp("x")}}, 0))
	for _, v := range []int{1, 2} {
		_, c := craftBase(f, v)
		f.Add(c.bytes(f, nil))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		defer watchdog("FuzzCorpus", data, fuzzInputLimit)()
		p := fuzzFile(t, "corpus.parquet", data)
		c, err := LoadCorpus(context.Background(), p, CorpusOptions{MaxBytes: 1 << 20})
		if err != nil {
			return
		}
		_, _ = c.Text("c1")
	})
}

// FuzzSpecFile: any job file gives a spec or an error naming the problem.
func FuzzSpecFile(f *testing.F) {
	f.Add([]byte("questions: q.parquet\nmodel: m\nout: o\ncorpus: c.parquet\nmax_errors: 1%\nshard: 3/8\ncommit_interval: 5s\nmethod_params:\n  window: \"8\"\n"))
	f.Add([]byte(`{"questions":"q","model":"m","out":"o","store":"s","ratio":1.5,"max_errors":"0.01","lease_timeout":"1m"}`))
	f.Add([]byte("max_errors: 101%\nshard: 8/8\nbatch_size: -1\n"))
	f.Add([]byte("a: &a [*a, *a, *a, *a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		defer watchdog("FuzzSpecFile", data, fuzzInputLimit)()
		s := DefaultSpec()
		if err := decodeSpec(data, &s); err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			return
		}
		if !(s.Ratio >= 0 && s.Ratio <= 1) || s.BatchSize < 1 || s.Partition.norm().Validate() != nil {
			t.Fatalf("validated spec out of range: %+v", s)
		}
	})
}

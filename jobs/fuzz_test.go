package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

// watchdog crashes the fuzz worker (so the fuzzer records the input) when
// one input takes longer than d: a file that hangs the reader is a bug too.
func watchdog(d time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-time.After(d):
			panic(fmt.Sprintf("one fuzz input took over %v", d))
		}
	}()
	return func() { close(done) }
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
	f.Fuzz(func(t *testing.T, data []byte) {
		defer watchdog(20 * time.Second)()
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
	f.Fuzz(func(t *testing.T, data []byte) {
		defer watchdog(20 * time.Second)()
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
		defer watchdog(20 * time.Second)()
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

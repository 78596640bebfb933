package jobs

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestThirdPartyParquetPassesTheGuard reads files written by pyarrow
// (testdata/pyarrow/gen.py: every codec, data page v1 and v2, dictionary,
// plain and delta encodings, 2 KiB pages, an all-null column) with both
// readers: the checks of parquetGuard must pass what a real writer produces,
// and every row must read back as gen.py's formulas say.
func TestThirdPartyParquetPassesTheGuard(t *testing.T) {
	qs, _ := filepath.Glob("testdata/pyarrow/questions-*.parquet")
	cs, _ := filepath.Glob("testdata/pyarrow/corpus-*.parquet")
	if len(qs) < 8 || len(cs) < 8 {
		t.Fatalf("testdata/pyarrow holds %d questions and %d corpus files, want 8 each", len(qs), len(cs))
	}
	for _, p := range qs {
		t.Run(filepath.Base(p), func(t *testing.T) {
			r, err := OpenQuestions(p, QuestionsOptions{BatchSize: 100})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			rows := readAll(t, r)
			if len(rows) != 1200 {
				t.Fatalf("%d rows, want 1200", len(rows))
			}
			for i, q := range rows {
				var chunks []string
				for k := 0; k <= i%4; k++ {
					chunks = append(chunks, fmt.Sprintf("c%d", (i+k)%500))
				}
				var answers []string
				if i%5 != 0 {
					answers = []string{fmt.Sprintf("answer %d", i)}
				}
				mnt := 0
				if i%3 == 0 {
					mnt = 1 + i%64
				}
				if q.Err != nil || q.QueryID != fmt.Sprintf("q%05d", i) || q.Question != fmt.Sprintf("question %d about topic %d?", i, i%37) ||
					!slices.Equal(q.ChunkIDs, chunks) || !slices.Equal(q.Answers, answers) || q.MaxNewTokens != mnt {
					t.Fatalf("row %d: %+v (err %v)", i, q, q.Err)
				}
			}
		})
	}
	for _, p := range cs {
		t.Run(filepath.Base(p), func(t *testing.T) {
			c, err := LoadCorpus(context.Background(), p, CorpusOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if c.Len() != 500 {
				t.Fatalf("%d chunks, want 500", c.Len())
			}
			for _, i := range []int{0, 7, 12, 499} {
				want := fmt.Sprintf("text of chunk %d ", i) + strings.Repeat("word ", i%13)
				if got, ok := c.Text(fmt.Sprintf("c%d", i)); !ok || got != want {
					t.Fatalf("c%d: %q, want %q", i, got, want)
				}
			}
		})
	}
}

package jobs

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// writeParquet writes rows of T to dir/name with at most rowsPerGroup rows per
// row group and returns the path.
func writeParquet[T any](t testing.TB, dir, name string, rows []T, rowsPerGroup int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	opts := []parquet.WriterOption{}
	if rowsPerGroup > 0 {
		opts = append(opts, parquet.MaxRowsPerRowGroup(rowsPerGroup))
	}
	w := parquet.NewGenericWriter[T](f, opts...)
	if len(rows) > 0 {
		if _, err := w.Write(rows); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func sp(s string) *string { return &s }
func i32p(v int32) *int32 { return &v }

// qRow is a well-formed questions row with passthrough columns of several types.
type qRow struct {
	QueryID      *string  `parquet:"query_id,optional"`
	Question     *string  `parquet:"question,optional"`
	ChunkIDs     []string `parquet:"chunk_ids,list"`
	Answers      []string `parquet:"answers,list"`
	MaxNewTokens *int32   `parquet:"max_new_tokens,optional"`
	Lang         string   `parquet:"lang"`
	Score        float64  `parquet:"score"`
	Tags         []string `parquet:"tags,list"`
	Weight       *int64   `parquet:"weight,optional"`
}

func readAll(t *testing.T, r *QuestionsReader) []Question {
	t.Helper()
	var out []Question
	for {
		b, err := r.Next(context.Background())
		out = append(out, b...)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

package eval

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"testing"

	"cacheclip/jobs"
)

// The files WriteDataset writes are the ones `cacheclip run` reads: open them with the job
// readers and check every question, reference and chunk text arrives intact.
func TestDatasetReadByJobReaders(t *testing.T) {
	ctx := context.Background()
	var exs []Example
	for _, task := range Tasks {
		e, err := Generate(ctx, Config{Task: task, N: 4, Seed: 9, ContextTokens: 512, ChunkTokens: 128})
		if err != nil {
			t.Fatal(err)
		}
		exs = append(exs, e...)
	}
	dir := t.TempDir()
	qp, cp := filepath.Join(dir, "q.parquet"), filepath.Join(dir, "c.parquet")
	if err := WriteDataset(ctx, qp, cp, exs); err != nil {
		t.Fatal(err)
	}
	r, err := jobs.OpenQuestions(qp, jobs.QuestionsOptions{BatchSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []jobs.Question
	for {
		b, err := r.Next(ctx)
		got = append(got, b...)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	corpus, err := jobs.LoadCorpus(ctx, cp, jobs.CorpusOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(exs) {
		t.Fatalf("job reader saw %d questions, wrote %d", len(got), len(exs))
	}
	for i, q := range got {
		ex := exs[i]
		if q.Err != nil {
			t.Fatalf("row %d: %v", i, q.Err)
		}
		if q.QueryID != ex.QueryID || q.Question != ex.Question || !reflect.DeepEqual(q.Answers, ex.Answers) || q.MaxNewTokens != ex.MaxNewTokens {
			t.Fatalf("row %d: read %+v", i, q)
		}
		if len(q.ChunkIDs) != len(ex.Chunks) {
			t.Fatalf("row %d: %d chunk ids, want %d", i, len(q.ChunkIDs), len(ex.Chunks))
		}
		for j, id := range q.ChunkIDs {
			text, ok := corpus.Text(id)
			if !ok || id != ex.Chunks[j].ID || text != ex.Chunks[j].Text {
				t.Fatalf("row %d chunk %d: id %s found=%v", i, j, id, ok)
			}
		}
	}
}

package eval

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/parquet-go/parquet-go"
)

// QuestionRow is one row of the questions file: the job columns `cacheclip run` reads
// (query_id, question, chunk_ids, answers, max_new_tokens) and metadata passed through to
// its output, so a scorer needs nothing but the output dataset.
type QuestionRow struct {
	QueryID        string   `parquet:"query_id"`
	Question       string   `parquet:"question"`
	ChunkIDs       []string `parquet:"chunk_ids,list"`
	Answers        []string `parquet:"answers,list"`
	MaxNewTokens   int32    `parquet:"max_new_tokens"`
	Task           string   `parquet:"task"`
	ValueType      string   `parquet:"value_type"`
	Haystack       string   `parquet:"haystack"`
	Seed           int64    `parquet:"seed"`
	TargetTokens   int32    `parquet:"target_tokens"`
	ContextTokens  int32    `parquet:"context_tokens"`
	NeedleChunkIDs []string `parquet:"needle_chunk_ids,list"`
	NeedleOffsets  []int32  `parquet:"needle_offsets,list"`
	NeedleRoles    []string `parquet:"needle_roles,list"`
}

// CorpusRow is one row of the corpus file.
type CorpusRow struct {
	ChunkID string `parquet:"chunk_id"`
	Text    string `parquet:"text"`
}

// Rows converts examples to file rows. Chunk ids are unique per example, so one corpus
// holds several tasks' examples side by side.
func Rows(exs []Example) ([]QuestionRow, []CorpusRow) {
	var qs []QuestionRow
	var cs []CorpusRow
	for _, ex := range exs {
		q := QuestionRow{QueryID: ex.QueryID, Question: ex.Question, Answers: append([]string{}, ex.Answers...),
			MaxNewTokens: int32(ex.MaxNewTokens), Task: ex.Task, ValueType: ex.ValueType, Haystack: ex.Haystack,
			Seed: int64(ex.Seed), TargetTokens: int32(ex.TargetTokens), ContextTokens: int32(ex.ContextTokens)}
		for _, ch := range ex.Chunks {
			q.ChunkIDs = append(q.ChunkIDs, ch.ID)
			cs = append(cs, CorpusRow{ChunkID: ch.ID, Text: ch.Text})
		}
		for _, nd := range ex.Needles {
			q.NeedleChunkIDs = append(q.NeedleChunkIDs, ex.Chunks[nd.Chunk].ID)
			q.NeedleOffsets = append(q.NeedleOffsets, int32(nd.Offset))
			q.NeedleRoles = append(q.NeedleRoles, nd.Role)
		}
		qs = append(qs, q)
	}
	return qs, cs
}

// WriteDataset writes the questions and corpus Parquet files for exs, each atomically
// (temporary file in the same directory, fsync, rename, directory fsync), so a reader
// never sees a partial file.
func WriteDataset(ctx context.Context, questionsPath, corpusPath string, exs []Example) error {
	qs, cs := Rows(exs)
	if err := checkUniqueChunks(corpusPath, cs); err != nil {
		return err
	}
	if err := writeParquetAtomic(ctx, questionsPath, qs); err != nil {
		return err
	}
	return writeParquetAtomic(ctx, corpusPath, cs)
}

func checkUniqueChunks(corpusPath string, cs []CorpusRow) error {
	seen := map[string]bool{}
	for _, c := range cs {
		if seen[c.ChunkID] {
			return fmt.Errorf("eval: write %s: duplicate chunk_id %q (two examples with the same id prefix and seed?)", corpusPath, c.ChunkID)
		}
		seen[c.ChunkID] = true
	}
	return nil
}

func writeParquetAtomic[T any](ctx context.Context, path string, rows []T) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("eval: write %s: %w", path, err)
	}
	tmp := filepath.Join(dir, "."+filepath.Base(path)+".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("eval: write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	w := parquet.NewGenericWriter[T](f, parquet.MaxRowsPerRowGroup(4096))
	if len(rows) > 0 {
		if _, err := w.Write(rows); err != nil {
			return fmt.Errorf("eval: write %s: %w", path, err)
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("eval: write %s: close writer: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("eval: write %s: fsync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("eval: write %s: close: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("eval: write %s: rename: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("eval: write %s: open dir: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("eval: write %s: fsync dir: %w", path, err)
	}
	return nil
}

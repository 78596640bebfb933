package eval

import (
	"context"
	"fmt"
	"os"

	"github.com/parquet-go/parquet-go"

	"cacheclip/internal/atomicfile"
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

func writeParquetAtomic[T any](ctx context.Context, path string, rows []T) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := atomicfile.Write(path, atomicfile.Options{}, func(f *os.File) error {
		w := parquet.NewGenericWriter[T](f, parquet.MaxRowsPerRowGroup(4096))
		if len(rows) > 0 {
			if _, err := w.Write(rows); err != nil {
				return err
			}
		}
		return w.Close()
	})
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	return nil
}

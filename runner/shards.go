package runner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"

	"cacheclip/jobs"
	"cacheclip/kernels"
	"cacheclip/kvshards/shardcmd"
	"cacheclip/loader"
	"cacheclip/prefill"
	"cacheclip/progress"
)

// CorpusChunks walks a loaded corpus in chunk-id order, as the texts a shard
// build reads (kvshards.CorpusReader).
type CorpusChunks struct {
	c   *jobs.Corpus
	ids []string
	i   int
}

// NewCorpusChunks lists the corpus's chunk ids, sorted.
func NewCorpusChunks(c *jobs.Corpus) *CorpusChunks {
	s := &CorpusChunks{c: c}
	c.IDs(func(id string) bool { s.ids = append(s.ids, id); return true })
	sort.Strings(s.ids)
	return s
}

// Len is the number of chunks.
func (s *CorpusChunks) Len() int { return len(s.ids) }

// Next returns the next chunk's id and text, io.EOF after the last.
func (s *CorpusChunks) Next(ctx context.Context) (string, string, error) {
	if s.i >= len(s.ids) {
		return "", "", io.EOF
	}
	id := s.ids[s.i]
	s.i++
	t, _ := s.c.Text(id)
	return id, t, nil
}

// ShardBuild is a shard build: every chunk of a corpus through a model into a store.
type ShardBuild struct {
	Store    shardcmd.Ensurer // a kvshards.Store, or an object store with its local tier
	Corpus   string           // corpus Parquet file
	Model    string           // model directory
	Template string           // "": the model's own
	Weights  string           // a GGUF's weights mode (loader.Options.Weights)
	Workers  int
	Progress progress.Mode
	Stderr   io.Writer // progress display
	Out      io.Writer // summary line; nil for none
	Logger   *slog.Logger
}

// BuildShards computes and stores the KV shard of every chunk of the corpus
// that the store lacks (shardcmd.Build), with the model's prompt prefix.
func BuildShards(ctx context.Context, o ShardBuild) (shardcmd.BuildResult, error) {
	b, err := loader.OpenWith(o.Model, loader.Options{Template: o.Template, Weights: o.Weights})
	if err != nil {
		return shardcmd.BuildResult{}, err
	}
	defer b.Close()
	c, err := jobs.LoadCorpus(ctx, o.Corpus, jobs.CorpusOptions{})
	if err != nil {
		return shardcmd.BuildResult{}, err
	}
	prefix, err := b.PrefixIDs()
	if err != nil {
		return shardcmd.BuildResult{}, fmt.Errorf("model %s: prefix: %w", o.Model, err)
	}
	src := NewCorpusChunks(c)
	workers := max(1, o.Workers)
	rep := progress.New(progress.Options{Mode: o.Progress, Description: "building shards", Unit: "chunks", Total: int64(src.Len()), Out: o.Stderr, Logger: o.Logger})
	defer rep.Done()
	// Workers share the CPUs: each forward call gets its share of threads.
	b.Model.Pool = kernels.NewPool(max(1, kernels.NewPool(0).Threads()/workers))
	return shardcmd.Build(ctx, shardcmd.BuildOptions{Store: o.Store, Computer: &prefill.Computer{Model: b.Model},
		Source: src, Tokenize: b.ChunkIDs, Prefix: prefix, Workers: workers, Progress: rep, Out: o.Out, Logger: o.Logger})
}

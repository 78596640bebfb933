// Package shardcmd implements the `cacheclip shards` commands on a
// kvshards.Store: build, verify, inspect and gc. The CLI parses flags, opens
// the model and corpus, and calls these functions.
package shardcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"cacheclip/kvshards"

	"golang.org/x/sync/errgroup"
)

// Progress receives build progress; progress.Reporter satisfies it.
type Progress interface {
	Add(n int)
	SetTotal(total int64)
}

// Lener is an optional CorpusReader extension giving the number of chunks, so
// progress can show a total.
type Lener interface{ Len() int }

// Ensurer makes sure a chunk's shard is in a store (kvshards.Store, or an
// object store behind a local tier).
type Ensurer interface {
	Ensure(ctx context.Context, c kvshards.Computer, prefix, chunk []int32) (kvshards.EnsureResult, error)
}

// BuildOptions configure Build.
type BuildOptions struct {
	Store    Ensurer
	Computer kvshards.Computer // must be safe for concurrent use when Workers > 1
	Source   kvshards.CorpusReader
	Tokenize kvshards.Tokenize
	Prefix   []int32 // the prompt prefix P every chunk continues
	Workers  int     // default 1
	Progress Progress
	Out      io.Writer // summary line; nil for none
	Logger   *slog.Logger
}

// BuildResult summarises a build.
type BuildResult struct {
	Chunks       int // chunks read from the source (prefix not counted)
	Built        int // shards computed and written by this run (prefix included)
	Skipped      int // already present
	Waited       int // finished by another builder while this one waited for its lock
	BytesWritten int64
	Elapsed      time.Duration
}

// ChunksPerSec is the rate over all chunks handled, skipped ones included.
func (r BuildResult) ChunksPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Chunks) / r.Elapsed.Seconds()
}

func (r BuildResult) String() string {
	return fmt.Sprintf("%d chunks in %v (%.1f chunks/s): %d shards built, %d already present, %d built by another builder; %s written",
		r.Chunks, r.Elapsed.Round(time.Millisecond), r.ChunksPerSec(), r.Built, r.Skipped, r.Waited, HumanBytes(r.BytesWritten))
}

type job struct {
	id   string
	toks []int32
}

// Build computes and stores the prefix's shard and every source chunk's shard
// that is not yet present. It is resumable: present shards are skipped without
// recomputation, and several Build processes may share one store (per-key lock
// files keep them from computing the same shard). The first error stops the
// build; shards already written stay.
func Build(ctx context.Context, o BuildOptions) (BuildResult, error) {
	var res BuildResult
	switch {
	case o.Store == nil || o.Computer == nil || o.Source == nil || o.Tokenize == nil:
		return res, errors.New("shards build: store, computer, source and tokenizer are all required")
	}
	workers := max(o.Workers, 1)
	lg := o.Logger
	if lg == nil {
		lg = slog.Default()
	}
	start := time.Now()
	if o.Progress != nil {
		if l, ok := o.Source.(Lener); ok {
			o.Progress.SetTotal(int64(l.Len()))
		}
	}
	var built, skipped, waited, chunks atomic.Int64
	var bytes atomic.Int64
	record := func(r kvshards.EnsureResult) {
		switch {
		case r.Built:
			built.Add(1)
			bytes.Add(r.Bytes)
		case r.Waited:
			waited.Add(1)
		default:
			skipped.Add(1)
		}
	}
	finish := func() BuildResult {
		return BuildResult{Chunks: int(chunks.Load()), Built: int(built.Load()), Skipped: int(skipped.Load()),
			Waited: int(waited.Load()), BytesWritten: bytes.Load(), Elapsed: time.Since(start)}
	}

	// The prefix's own cache: stored once per store as a chunk after an empty prefix.
	r, err := o.Store.Ensure(ctx, o.Computer, nil, o.Prefix)
	if err != nil {
		return finish(), fmt.Errorf("shards build: prefix shard: %w", err)
	}
	record(r)

	g, gctx := errgroup.WithContext(ctx)
	jobs := make(chan job, 2*workers)
	g.Go(func() error {
		defer close(jobs)
		for row := 0; ; row++ {
			id, text, err := o.Source.Next(gctx)
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("shards build: read chunk %d: %w", row, err)
			}
			toks, err := o.Tokenize(text)
			if err != nil {
				return fmt.Errorf("shards build: tokenize chunk %q (row %d): %w", id, row, err)
			}
			select {
			case jobs <- job{id: id, toks: toks}:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
	})
	for range workers {
		g.Go(func() error {
			for j := range jobs {
				r, err := o.Store.Ensure(gctx, o.Computer, o.Prefix, j.toks)
				if err != nil {
					return fmt.Errorf("shards build: chunk %q: %w", j.id, err)
				}
				record(r)
				chunks.Add(1)
				if o.Progress != nil {
					o.Progress.Add(1)
				}
			}
			return nil
		})
	}
	err = g.Wait()
	res = finish()
	lg.Info("shards build", "chunks", res.Chunks, "built", res.Built, "skipped", res.Skipped, "waited", res.Waited,
		"bytes", res.BytesWritten, "chunks_per_s", res.ChunksPerSec(), "err", err)
	if o.Out != nil {
		fmt.Fprintf(o.Out, "shards build: %s\n", res)
	}
	return res, err
}

// HumanBytes prints n with a binary unit.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

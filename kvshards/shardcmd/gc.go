package shardcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"cacheclip/kvshards"
)

// GCReport says what GC removed (or would remove, in a dry run).
type GCReport struct {
	Kept, Removed int
	RemovedBytes  int64
	Leftovers     int      // stale temp and lock files of dead builders
	Sample        []string // up to 20 paths removed (or to remove)
	DryRun        bool
}

// GC removes every shard whose key is not in live, and the temp and lock
// files of builders that are gone. live must hold the prefix's own key
// (kvshards.PrefixKey) too; LiveKeys builds such a set from a corpus.
func GC(ctx context.Context, st *kvshards.Store, live map[kvshards.Key]struct{}, dryRun bool) (GCReport, error) {
	rep := GCReport{DryRun: dryRun}
	err := st.Walk(ctx, func(e kvshards.Entry) error {
		drop := false
		switch e.Kind {
		case kvshards.EntryShard:
			if _, ok := live[e.Key]; ok {
				rep.Kept++
				return nil
			}
			drop = true
			rep.Removed++
			rep.RemovedBytes += e.Info.Size()
		case kvshards.EntryTemp, kvshards.EntryLock:
			if !st.StaleLeftover(e) {
				return nil
			}
			drop = true
			rep.Leftovers++
		}
		if !drop {
			return nil
		}
		if len(rep.Sample) < 20 {
			rep.Sample = append(rep.Sample, e.Path)
		}
		if dryRun {
			return nil
		}
		if e.Kind == kvshards.EntryShard {
			return st.Remove(e.Key)
		}
		if err := os.Remove(e.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", e.Path, err)
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("shards gc %s: %w", st.Dir(), err)
	}
	return rep, nil
}

// LiveKeys reads every chunk of src and returns the set of keys a job over it
// uses: each chunk's key after prefix, and the prefix's own key.
func LiveKeys(ctx context.Context, fp [32]byte, prefix []int32, src kvshards.CorpusReader, tok kvshards.Tokenize) (map[kvshards.Key]struct{}, error) {
	live := map[kvshards.Key]struct{}{kvshards.PrefixKey(fp, prefix): {}}
	ph := kvshards.PrefixHash(prefix)
	for row := 0; ; row++ {
		id, text, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			return live, nil
		}
		if err != nil {
			return nil, fmt.Errorf("live keys: read chunk %d: %w", row, err)
		}
		toks, err := tok(text)
		if err != nil {
			return nil, fmt.Errorf("live keys: tokenize chunk %q (row %d): %w", id, row, err)
		}
		live[kvshards.KeyFromPrefixHash(fp, ph, toks)] = struct{}{}
	}
}

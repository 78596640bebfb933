package runner

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"

	"cacheclip/kernels"
	"cacheclip/kvshards"
	"cacheclip/model/testmodel"
	"cacheclip/prefill"
)

// The read-only auxiliary source assembles every question, computing the
// chunks whose shards are missing or unusable (one damaged in place): the
// assembly equals one from computed chunks, a missing shard is one cache miss
// per lookup (not a second one when its chunk is computed), and an unusable
// shard is logged once, with its key, however many questions use it.
func TestReadOnlyAuxFallsBack(t *testing.T) {
	ctx := context.Background()
	spec, ok := testmodel.Variant("smollm2")
	if !ok {
		t.Fatal("no smollm2 test variant")
	}
	m, err := testmodel.Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	comp := &prefill.Computer{Model: m}
	dir := t.TempDir()
	opts := kvshards.Options{DType: kernels.F32, NoSync: true}
	prefix := []int32{1, 2, 3}
	stored, missing, bad := []int32{10, 11, 12, 13}, []int32{20, 21, 22}, []int32{30, 31, 32, 33, 34}
	// Build two shards through a writable source, then damage one on disk
	// (its header's first bytes) with the store closed.
	st, err := kvshards.OpenStore(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	w := &prefill.StoreSource{Store: st, Computer: comp}
	for _, c := range [][]int32{stored, bad} {
		sh, err := w.Shard(ctx, prefix, c)
		if err != nil {
			t.Fatal(err)
		}
		sh.Close()
	}
	badKey := kvshards.KeyOf(comp.Fingerprint(), prefix, bad)
	path := st.Path(badKey)
	st.Close()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("NOTASHARD"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()

	st, err = kvshards.OpenStore(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var logs bytes.Buffer
	src := &readOnlyAux{store: &prefill.StoreSource{Store: st, Computer: comp, ReadOnly: true}, comp: comp, log: slog.New(slog.NewTextHandler(&logs, nil))}
	lay := prefill.Layout{Prefix: prefill.Segment{IDs: prefix}, Question: prefill.Segment{IDs: []int32{40, 41}}}
	for _, c := range [][]int32{stored, missing, bad} {
		lay.Chunks = append(lay.Chunks, prefill.Segment{IDs: c})
	}
	pkv, err := comp.ComputeChunk(ctx, nil, prefix)
	if err != nil {
		t.Fatal(err)
	}
	want, err := prefill.Assemble(ctx, m, prefill.NewMemorySource(comp), pkv, &lay, 0)
	if err != nil {
		t.Fatal(err)
	}
	for q := range 2 {
		got, err := prefill.Assemble(ctx, m, src, pkv, &lay, 0)
		if err != nil {
			t.Fatalf("question %d: %v", q, err)
		}
		end := lay.Len() - len(lay.Question.IDs)
		for l := range m.Config.Layers {
			gk, gv, err := got.Cache.ReadKV(l, 0, end)
			if err != nil {
				t.Fatal(err)
			}
			wk, wv, err := want.Cache.ReadKV(l, 0, end)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(gk, wk) || !slices.Equal(gv, wv) {
				t.Fatalf("question %d, layer %d: assembly differs from one of computed chunks", q, l)
			}
		}
	}
	if n := strings.Count(logs.String(), "unusable"); n != 1 || !strings.Contains(logs.String(), badKey.String()) {
		t.Errorf("%d log lines about unusable shards, want 1 naming %s:\n%s", n, badKey, logs.String())
	}

	before := st.Stats().CacheMisses
	if _, err := src.Shard(ctx, prefix, missing); !errors.Is(err, kvshards.ErrNotFound) {
		t.Fatalf("missing shard: %v, want ErrNotFound", err)
	}
	if _, err := src.Chunk(ctx, prefix, missing); err != nil {
		t.Fatal(err)
	}
	if d := st.Stats().CacheMisses - before; d != 1 {
		t.Errorf("a missing shard and its computed chunk counted %d cache misses, want 1", d)
	}
}

package prefill_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"cacheclip/kernels"
	"cacheclip/kvshards"
	"cacheclip/methods"
	"cacheclip/model"
	"cacheclip/prefill"
	"cacheclip/prefill/auxscore"
)

// Chunk caches written to and read back from the shard store give the same
// prefill as caches computed in memory; a store source over another model, or
// a missing shard when building is off, is an error.
func TestStoreSource(t *testing.T) {
	f := newFixture(t, "qwen2")
	ctx := context.Background()
	st, err := kvshards.OpenStore(t.TempDir(), kvshards.Options{DType: kernels.F32, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	comp := &prefill.Computer{Model: f.eng.Model}
	mem := f.run(t, testQuery, f.method(t, methods.CacheBlend, 0.2))
	f.eng.Source = &prefill.StoreSource{Store: st, Computer: comp}
	for pass := 0; pass < 2; pass++ { // build, then load
		got := f.run(t, testQuery, f.method(t, methods.CacheBlend, 0.2))
		if d := relDiff(got.Logits, mem.Logits); d > 1e-6 {
			t.Fatalf("pass %d: store-backed prefill differs from in-memory caches by %.3g", pass, d)
		}
	}
	other := build(t, variant(t, "llama2"))
	f.eng.Source = &prefill.StoreSource{Store: st, Computer: &prefill.Computer{Model: other}}
	if _, err := f.eng.Prefill(ctx, testQuery, f.method(t, methods.Reuse, 0), 8); err == nil || !strings.Contains(err.Error(), "another model") {
		t.Fatalf("error %v for a store source of another model", err)
	}
	f.eng.Source = &prefill.StoreSource{Store: st, Computer: comp, ReadOnly: true}
	q := testQuery
	q.Chunks = append([]string{"A chunk nobody stored."}, q.Chunks...)
	if _, err := f.eng.Prefill(ctx, q, f.method(t, methods.Reuse, 0), 8); !errors.Is(err, kvshards.ErrNotFound) {
		t.Fatalf("error %v for a missing shard in a read-only store", err)
	}
}

// chunkOnly hides a source's Shard method: Assemble then decodes whole chunks
// (ChunkKV), the path every ChunkSource has.
type chunkOnly struct{ prefill.ChunkSource }

// Assembly from mapped shards, one layer widened at a time (ShardSource),
// writes the same bits as assembly from decoded chunks, for f32 and bf16
// shards, into a new cache and into reused ones that held a shorter and a
// longer question (the slots it writes: P's and the chunks');
// a shard missing from a read-only source falls back to Chunk.
func TestAssembleFromShards(t *testing.T) {
	f := newFixture(t, "qwen2")
	m := f.eng.Model
	ctx := context.Background()
	comp := &prefill.Computer{Model: m}
	lay, err := f.lay.Layout(testQuery.Chunks, testQuery.Question)
	if err != nil {
		t.Fatal(err)
	}
	pkv, err := comp.ComputeChunk(ctx, nil, lay.Prefix.IDs)
	if err != nil {
		t.Fatal(err)
	}
	// Other questions' layouts, shorter (chunks in another order) and longer
	// (one chunk and question words more), each assembled first into a cache
	// that is then reset and reused.
	shorter, err := f.lay.Layout([]string{testQuery.Chunks[2], testQuery.Chunks[0]}, "Which village?")
	if err != nil {
		t.Fatal(err)
	}
	longer, err := f.lay.Layout(append(slices.Clone(testQuery.Chunks), "A further chunk, so that the other question is the longer one."),
		testQuery.Question+" Answer with the number only, please.")
	if err != nil {
		t.Fatal(err)
	}
	if longer.Len() <= lay.Len() || shorter.Len() >= lay.Len() {
		t.Fatalf("layouts of %d and %d tokens around %d: not longer and shorter", longer.Len(), shorter.Len(), lay.Len())
	}
	cfg := m.ModelConfig()
	// The slots Assemble writes: P and the chunks. The question's slots are
	// allocated but left as they were (a reused cache's hold stale values).
	written := lay.Len() - len(lay.Question.IDs)
	read := func(c model.KVCache) [][]float32 {
		var out [][]float32
		for l := 0; l < cfg.Layers; l++ {
			k, v, err := c.ReadKV(l, 0, written)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, k, v)
		}
		return out
	}
	for _, dt := range []kernels.DType{kernels.F32, kernels.BF16} {
		st, err := kvshards.OpenStore(t.TempDir(), kvshards.Options{DType: dt, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		src := &prefill.StoreSource{Store: st, Computer: comp}
		want, err := prefill.Assemble(ctx, m, chunkOnly{src}, pkv, &lay, 0)
		if err != nil {
			t.Fatal(err)
		}
		wantKV := read(want.Cache)
		got, err := prefill.Assemble(ctx, m, src, pkv, &lay, 0)
		if err != nil {
			t.Fatal(err)
		}
		results := map[string]*prefill.Assembled{"new cache": got}
		for name, other := range map[string]*prefill.Layout{"cache reused after a shorter question": &shorter, "cache reused after a longer question": &longer} {
			reused := m.(*model.Model).HostCache(0)
			if _, err := prefill.AssembleInto(ctx, m, src, pkv, other, reused); err != nil {
				t.Fatal(err)
			}
			if _, err := prefill.AssembleInto(ctx, m, src, pkv, &lay, reused); err == nil {
				t.Fatalf("%s: AssembleInto a cache that is not empty succeeded", dt)
			}
			reused.Reset()
			again, err := prefill.AssembleInto(ctx, m, src, pkv, &lay, reused)
			if err != nil {
				t.Fatal(err)
			}
			if again.Cache.Len() != lay.Len() {
				t.Fatalf("%s, %s: %d slots in use, want %d", dt, name, again.Cache.Len(), lay.Len())
			}
			results[name] = again
		}
		for name, a := range results {
			if !slices.Equal(a.ChunkStart, want.ChunkStart) {
				t.Fatalf("%s, %s: chunk starts %v, want %v", dt, name, a.ChunkStart, want.ChunkStart)
			}
			for i, x := range read(a.Cache) {
				if !slices.Equal(x, wantKV[i]) {
					t.Fatalf("%s, %s: layer %d's %s differ from assembly of decoded chunks", dt, name, i/2, [2]string{"keys", "values"}[i%2])
				}
			}
		}
		// Read-only, one chunk missing from the store: Chunk computes it.
		q := testQuery
		q.Chunks = append([]string{"A chunk nobody stored."}, q.Chunks...)
		ql, err := f.lay.Layout(q.Chunks, q.Question)
		if err != nil {
			t.Fatal(err)
		}
		fallback := computeMissing{StoreSource: &prefill.StoreSource{Store: st, Computer: comp, ReadOnly: true}, comp: comp}
		a, err := prefill.Assemble(ctx, m, fallback, pkv, &ql, 0)
		if err != nil {
			t.Fatalf("%s: a missing shard did not fall back to Chunk: %v", dt, err)
		}
		b, err := prefill.Assemble(ctx, m, chunkOnly{prefill.NewMemorySource(comp)}, pkv, &ql, 0)
		if err != nil {
			t.Fatal(err)
		}
		k1, _, _ := a.Cache.ReadKV(cfg.Layers-1, 0, a.ChunkStart[1])
		k2, _, _ := b.Cache.ReadKV(cfg.Layers-1, 0, b.ChunkStart[1])
		if !slices.Equal(k1, k2) {
			t.Fatalf("%s: the computed fallback chunk differs from the in-memory one", dt)
		}
		st.Close()
	}
}

// computeMissing is a read-only store source that computes a chunk the store
// lacks (as the runner's readOnlyAux does).
type computeMissing struct {
	*prefill.StoreSource
	comp *prefill.Computer
}

func (s computeMissing) Chunk(ctx context.Context, prefix, chunk []int32) (*kvshards.ChunkKV, error) {
	kv, err := s.StoreSource.Chunk(ctx, prefix, chunk)
	if errors.Is(err, kvshards.ErrNotFound) {
		return s.comp.ComputeChunk(ctx, prefix, chunk)
	}
	return kv, err
}

// The cached auxiliary scorer over mapped shards, reusing its caches from
// question to question (and replacing one too small), gives every question the same scores, bit for bit,
// as a new scorer over decoded chunks: the selections cannot change.
func TestAuxScoresFromShardsReused(t *testing.T) {
	f := newFixture(t, "qwen2")
	am := f.aux.Model
	ctx := context.Background()
	comp := &prefill.Computer{Model: am}
	st, err := kvshards.OpenStore(t.TempDir(), kvshards.Options{DType: kernels.F32, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reused := &auxscore.Scorer{Model: am, Layouter: f.aux.Layouter, Source: &prefill.StoreSource{Store: st, Computer: comp}}
	// The auxiliary without a source (a full prefill per question) reuses
	// its caches too.
	reusedFull := &auxscore.Scorer{Model: am, Layouter: f.aux.Layouter}
	// Short, long (the idle cache too small: replaced), short again (reused,
	// with the long question's slots left beyond it), long again (reused).
	short := prefill.Query{Chunks: []string{testQuery.Chunks[2], testQuery.Chunks[0]}, Question: "Which village?"}
	qs := []prefill.Query{short, testQuery, short, testQuery}
	for i, q := range qs {
		lay, err := f.aux.Layouter.Layout(q.Chunks, q.Question)
		if err != nil {
			t.Fatal(err)
		}
		fresh := &auxscore.Scorer{Model: am, Layouter: f.aux.Layouter, Source: chunkOnly{prefill.NewMemorySource(comp)}}
		want, err := fresh.Scores(ctx, lay)
		if err != nil {
			t.Fatal(err)
		}
		got, err := reused.Scores(ctx, lay)
		if err != nil {
			t.Fatal(err)
		}
		for c := range want {
			if !slices.Equal(got[c], want[c]) {
				t.Fatalf("question %d, chunk %d: scores %v, want %v", i, c, got[c], want[c])
			}
		}
		freshFull := &auxscore.Scorer{Model: am, Layouter: f.aux.Layouter}
		wantFull, err := freshFull.Scores(ctx, lay)
		if err != nil {
			t.Fatal(err)
		}
		gotFull, err := reusedFull.Scores(ctx, lay)
		if err != nil {
			t.Fatal(err)
		}
		for c := range wantFull {
			if !slices.Equal(gotFull[c], wantFull[c]) {
				t.Fatalf("no source, question %d, chunk %d: scores %v, want %v", i, c, gotFull[c], wantFull[c])
			}
		}
	}
}

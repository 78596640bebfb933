package prefill_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"cacheclip/kernels"
	"cacheclip/kvshards"
	"cacheclip/prefill"
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
	mem := f.run(t, testQuery, f.method(t, prefill.CacheBlend, 0.2))
	f.eng.Source = &prefill.StoreSource{Store: st, Computer: comp}
	for pass := 0; pass < 2; pass++ { // build, then load
		got := f.run(t, testQuery, f.method(t, prefill.CacheBlend, 0.2))
		if d := relDiff(got.Logits, mem.Logits); d > 1e-6 {
			t.Fatalf("pass %d: store-backed prefill differs from in-memory caches by %.3g", pass, d)
		}
	}
	other := build(t, variant(t, "llama2"))
	f.eng.Source = &prefill.StoreSource{Store: st, Computer: &prefill.Computer{Model: other}}
	if _, err := f.eng.Prefill(ctx, testQuery, f.method(t, prefill.Reuse, 0), 8); err == nil || !strings.Contains(err.Error(), "another model") {
		t.Fatalf("error %v for a store source of another model", err)
	}
	f.eng.Source = &prefill.StoreSource{Store: st, Computer: comp, ReadOnly: true}
	q := testQuery
	q.Chunks = append([]string{"A chunk nobody stored."}, q.Chunks...)
	if _, err := f.eng.Prefill(ctx, q, f.method(t, prefill.Reuse, 0), 8); !errors.Is(err, kvshards.ErrNotFound) {
		t.Fatalf("error %v for a missing shard in a read-only store", err)
	}
}

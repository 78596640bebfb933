package prefill_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"cacheclip/methods"
	"cacheclip/prefill"
)

// firstTokens is a sixth method's selector: recompute the first `count` tokens
// of every chunk (the tokens right after a chunk boundary, whose cached
// attention saw the least of the context).
func firstTokens(_ context.Context, c methods.Chunks, _ int, v methods.Values) ([]int, error) {
	var sel []int
	off := 0
	for _, l := range c.Lens {
		for i := range min(v.Int("count"), l) {
			sel = append(sel, off+i)
		}
		off += l
	}
	return sel, nil
}

// sixth is the whole of a new method: one registry entry and its selector.
var sixth = methods.Entry{
	Name: "firsttoken", Kind: methods.Selected, Select: firstTokens,
	Help:   "recompute the first tokens of every chunk",
	Params: []methods.Param{{Name: "count", Type: methods.Int, Default: "1", Min: 1, Max: 64, Help: "tokens per chunk"}},
}

// Adding a method touches the registry and one selector, nothing else: the
// engine runs it and its result equals the same selection made ahead and run
// as cacheclip, the method whose kind it shares.
func TestSixthMethod(t *testing.T) {
	reg := methods.Default().With(sixth)
	if !slices.Contains(reg.Names(), "firsttoken") || slices.Contains(methods.Default().Names(), "firsttoken") {
		t.Fatalf("With changed the default registry or did not add: %v", reg.Names())
	}
	if _, err := reg.Resolve("firsttoken", 0, map[string]string{"count": "0"}); err == nil {
		t.Error("count=0 accepted: the new method's parameters are not range-checked")
	}
	f := newFixture(t, "llama3")
	lay, err := f.lay.Layout(testQuery.Chunks, testQuery.Question)
	if err != nil {
		t.Fatal(err)
	}
	for _, count := range []string{"1", "3"} {
		cfg, err := reg.Resolve("firsttoken", 0, map[string]string{"count": count})
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.eng.Prefill(context.Background(), testQuery, prefill.Method{Config: cfg}, 8)
		if err != nil {
			t.Fatal(err)
		}
		var want []int
		off := 0
		for _, c := range lay.Chunks {
			for i := range min(cfg.Values.Int("count"), len(c.IDs)) {
				want = append(want, off+i)
			}
			off += len(c.IDs)
		}
		if !slices.Equal(got.Selected, want) || got.Stats.RecomputedTokens != len(want) {
			t.Fatalf("count %s: selected %v (%d recomputed), want %v", count, got.Selected, got.Stats.RecomputedTokens, want)
		}
		// The same tokens chosen ahead and run as cacheclip: the same logits.
		cc := f.method(t, methods.CacheClip, float64(len(want))/float64(lay.ContextTokens()))
		q := testQuery
		q.Selection = want
		ref, err := f.eng.Prefill(context.Background(), q, cc, 8)
		if err != nil {
			t.Fatal(err)
		}
		if d := relDiff(got.Logits, ref.Logits); d > 1e-6 {
			t.Errorf("count %s: logits differ from the same selection run as cacheclip by %.3g", count, d)
		}
		reuse := f.run(t, testQuery, f.method(t, methods.Reuse, 0))
		if d := relDiff(got.Logits, reuse.Logits); d < 1e-6 {
			t.Errorf("count %s: logits equal reuse's (%.3g): nothing was recomputed", count, d)
		}
	}
	// A selector's error names the method.
	bad := sixth
	bad.Select = func(context.Context, methods.Chunks, int, methods.Values) ([]int, error) {
		return nil, errors.New("no tokens today")
	}
	cfg, err := methods.Default().With(bad).Resolve("firsttoken", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.eng.Prefill(context.Background(), testQuery, prefill.Method{Config: cfg}, 8); err == nil {
		t.Error("a failing selector's error was dropped")
	}
}

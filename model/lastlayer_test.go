package model_test

import (
	"context"
	"math"
	"testing"

	"cacheclip/model"
	"cacheclip/model/backendtest"
	"cacheclip/model/testmodel"
)

// Rows whose last-layer output nothing reads (no logits asked, no probe) stop
// after writing their keys and values there. The cache must then hold exactly
// what a call computing every row through the last layer writes, and the rows
// asked for must get the same logits, in every batch mix.
func TestLastLayerOnlyWhatIsRead(t *testing.T) {
	const n = 37
	cases := []struct {
		name   string
		logits [][]int // per sequence; nil: none asked
	}{
		{"last row of one sequence", [][]int{{n - 1}}},
		{"no logits at all", [][]int{nil}},
		{"two rows", [][]int{{3, n - 1}}},
		{"batch: one sequence asks, one does not", [][]int{{n - 1}, nil}},
		{"batch: rows in the middle", [][]int{{5}, {0, 20}}},
	}
	for _, name := range []string{"llama3", "qwen2"} {
		spec, ok := testmodel.Variant(name)
		if !ok {
			t.Fatalf("no variant %q", name)
		}
		m, err := testmodel.Build(spec)
		if err != nil {
			t.Fatal(err)
		}
		cfg := m.Config
		for _, tc := range cases {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				// run computes the sequences with the given logits rows per sequence.
				run := func(logits [][]int) ([]*model.Cache, []model.Output) {
					var seqs []*model.Seq
					var caches []*model.Cache
					for si, want := range logits {
						c := m.HostCache(n)
						if _, err := c.Alloc(n); err != nil {
							t.Fatal(err)
						}
						s := &model.Seq{Cache: c, Tokens: backendtest.RandTokens(uint64(si+1), n, cfg.Vocab), Pos: make([]int32, n), Slots: make([]int32, n), Logits: want}
						for i := range s.Pos {
							s.Pos[i], s.Slots[i] = int32(i), int32(i)
						}
						seqs = append(seqs, s)
						caches = append(caches, c)
					}
					out, err := m.Forward(context.Background(), seqs)
					if err != nil {
						t.Fatal(err)
					}
					return caches, out
				}
				every := make([][]int, len(tc.logits))
				for si := range every {
					for i := 0; i < n; i++ {
						every[si] = append(every[si], i)
					}
				}
				refCaches, refOut := run(every)
				caches, out := run(tc.logits)
				for si := range caches {
					for l := 0; l < cfg.Layers; l++ {
						k, v, _ := caches[si].ReadKV(l, 0, n)
						rk, rv, _ := refCaches[si].ReadKV(l, 0, n)
						for i := range k {
							if k[i] != rk[i] || v[i] != rv[i] {
								t.Fatalf("sequence %d layer %d: key or value %d differs (%g, %g; want %g, %g)", si, l, i, k[i], v[i], rk[i], rv[i])
							}
						}
					}
					if len(out[si].Logits) != len(tc.logits[si]) {
						t.Fatalf("sequence %d: %d logits rows, want %d", si, len(out[si].Logits), len(tc.logits[si]))
					}
					for j, row := range tc.logits[si] {
						got, want := out[si].Logits[j], refOut[si].Logits[row]
						for i := range got {
							if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*(1+math.Abs(float64(want[i]))) {
								t.Fatalf("sequence %d row %d: logit %d is %g, want %g", si, row, i, got[i], want[i])
							}
						}
					}
				}
			})
		}
	}
}

package model_test

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"cacheclip/model"
	"cacheclip/model/testmodel"
)

func loadVariant(t *testing.T, s testmodel.Spec) *model.Model {
	t.Helper()
	dir := filepath.Join(t.TempDir(), s.Name)
	if err := testmodel.Write(dir, s); err != nil {
		t.Fatal(err)
	}
	m, err := model.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func randTokens(seed uint64, n, vocab int) []int32 {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(r.IntN(vocab))
	}
	return out
}

// run computes rows [lo,hi) of toks at positions off+i into cache, returning logits of every row.
func run(t *testing.T, m *model.Model, c *model.Cache, toks []int32, lo, hi int, off int32) [][]float32 {
	t.Helper()
	first, _ := c.Alloc(hi - lo)
	s := &model.Seq{Cache: c}
	for i := lo; i < hi; i++ {
		s.Tokens = append(s.Tokens, toks[i])
		s.Pos = append(s.Pos, off+int32(i))
		s.Slots = append(s.Slots, int32(first+i-lo))
		s.Logits = append(s.Logits, i-lo)
	}
	out, err := m.Forward(context.Background(), []*model.Seq{s})
	if err != nil {
		t.Fatal(err)
	}
	return out[0].Logits
}

func maxRelDiff(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		num = math.Max(num, math.Abs(float64(a[i]-b[i])))
		den = math.Max(den, math.Abs(float64(b[i])))
	}
	return num / math.Max(den, 1e-6)
}

func TestPrefillChunkedDecodeAgree(t *testing.T) {
	for _, spec := range testmodel.Variants() {
		t.Run(spec.Name, func(t *testing.T) {
			m := loadVariant(t, spec)
			const n = 37
			toks := randTokens(spec.Seed, n, m.Config.Vocab)
			one := run(t, m, m.HostCache(n), toks, 0, n, 0)
			// Chunked prefill in uneven pieces.
			c := m.HostCache(4)
			var chunked [][]float32
			for lo := 0; lo < n; {
				hi := min(n, lo+1+lo%11)
				chunked = append(chunked, run(t, m, c, toks, lo, hi, 0)...)
				lo = hi
			}
			// Token by token.
			c2 := m.HostCache(n)
			var dec [][]float32
			for i := 0; i < n; i++ {
				dec = append(dec, run(t, m, c2, toks, i, i+1, 0)...)
			}
			for i := 0; i < n; i++ {
				if d := maxRelDiff(chunked[i], one[i]); d > 1e-4 {
					t.Errorf("row %d: chunked differs from one-call prefill by %.2e", i, d)
				}
				if d := maxRelDiff(dec[i], one[i]); d > 1e-4 {
					t.Errorf("row %d: decode differs from one-call prefill by %.2e", i, d)
				}
			}
		})
	}
}

// TestRerotation: a chunk computed alone at offset a, moved to offset b by
// re-rotating its keys, equals the chunk computed at b.
func TestRerotation(t *testing.T) {
	for _, spec := range testmodel.Variants() {
		t.Run(spec.Name, func(t *testing.T) {
			m := loadVariant(t, spec)
			const n = 20
			const a, b = 5, 300
			toks := randTokens(spec.Seed+9, n+1, m.Config.Vocab)
			ca := m.HostCache(n)
			run(t, m, ca, toks, 0, n, a)
			cb := m.HostCache(n + 1)
			run(t, m, cb, toks, 0, n, b)
			moved := m.HostCache(n + 1)
			first, _ := moved.Alloc(n)
			pos := make([]int32, n)
			from := make([]int32, n)
			for i := range pos {
				pos[i] = int32(b + i)
				from[i] = int32(a + i)
			}
			for l := 0; l < m.Config.Layers; l++ {
				if err := m.Fill(moved, l, first, pos, ca.K[l][:n*ca.KVDim], ca.V[l][:n*ca.KVDim], from); err != nil {
					t.Fatal(err)
				}
				if d := maxRelDiff(moved.K[l][:n*ca.KVDim], cb.K[l][:n*cb.KVDim]); d > 1e-4 {
					t.Errorf("layer %d: re-rotated keys differ from keys computed at %d by %.2e", l, b, d)
				}
				if d := maxRelDiff(moved.V[l][:n*ca.KVDim], cb.V[l][:n*cb.KVDim]); d > 1e-4 {
					t.Errorf("layer %d: values differ by %.2e", l, d)
				}
			}
			// A following row sees the same context either way.
			// Shift the question token to index n of toks at position b+n.
			got := run(t, m, moved, toks, n, n+1, b)
			want := run(t, m, cb, toks, n, n+1, b)
			if d := maxRelDiff(got[0], want[0]); d > 1e-4 {
				t.Errorf("next-token logits after a moved chunk differ by %.2e", d)
			}
		})
	}
}

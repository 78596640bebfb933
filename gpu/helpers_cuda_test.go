//go:build cuda

package gpu

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"cacheclip/kernels"
	"cacheclip/model"
)

// Tests and benchmarks under the cuda build tag need an NVIDIA GPU with the
// driver, cuBLAS and NVRTC; scripts/gpu-check.sh runs them. Without the tag the
// package's tests cover everything that needs no device.

func openDevice(t testing.TB) *Device {
	t.Helper()
	d, err := Open(context.Background(), 0)
	if err != nil {
		t.Fatalf("the cuda build tag needs a GPU: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func randF32(rng *rand.Rand, n int, scale float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(rng.NormFloat64() * scale)
	}
	return out
}

// maxRel is max|a-b| / max|b|: the error relative to the reference's scale.
func maxRel(a, b []float32) float64 {
	var num, den float64
	for i := range b {
		num = math.Max(num, math.Abs(float64(a[i]-b[i])))
		den = math.Max(den, math.Abs(float64(b[i])))
	}
	return num / math.Max(den, 1e-30)
}

func roundTo(dt kernels.DType, s []float32) []float32 {
	if dt == kernels.F32 {
		return append([]float32(nil), s...)
	}
	u := make([]uint16, len(s))
	kernels.FromF32(u, s, dt)
	out := make([]float32, len(s))
	kernels.ToF32(out, u, dt)
	return out
}

func encodeKV(dt kernels.DType, s []float32) []byte {
	if dt == kernels.F32 {
		b := make([]byte, 4*len(s))
		for i, v := range s {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		return b
	}
	u := make([]uint16, len(s))
	kernels.FromF32(u, s, dt)
	b := make([]byte, 2*len(u))
	for i, v := range u {
		binary.LittleEndian.PutUint16(b[2*i:], v)
	}
	return b
}

// bf16Weights returns a CPU model whose matrices are the bf16 rounding of m's:
// the reference the GPU (which stores matrices as bf16) is compared with.
func bf16Weights(t testing.TB, m *model.Model) *model.Model {
	t.Helper()
	conv := func(w kernels.Mat) kernels.Mat {
		return kernels.Mat{DType: kernels.BF16, Rows: w.Rows, Cols: w.Cols, U16: toBF16(w)}
	}
	w := m.W
	emb := w.Embed
	w.LMHead = conv(w.LMHead)
	if sameMat(m.W.Embed, m.W.LMHead) && emb.DType == kernels.BF16 {
		w.LMHead = emb
	}
	w.Layers = append([]model.Layer(nil), w.Layers...)
	for i := range w.Layers {
		L := &w.Layers[i]
		L.Wq, L.Wk, L.Wv, L.Wo = conv(L.Wq), conv(L.Wk), conv(L.Wv), conv(L.Wo)
		L.Wgate, L.Wup, L.Wdown = conv(L.Wgate), conv(L.Wup), conv(L.Wdown)
	}
	out, err := model.FromWeights(&m.Config, w)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// scenario is a prompt [P][chunk 1]…[chunk k][Q] run through the forward
// primitive the way the methods of docs/ARCHITECTURE.md do, on either backend.
type scenario struct {
	P      []int32
	Chunks [][]int32
	Q      []int32
	// kv[0] is P's cache, kv[i] chunk i-1's, computed as continuations of P.
	kv []segKV
}

type segKV struct {
	K, V    [][]float32 // [layer][tokens·KVDim]
	FromPos []int32
}

func (s *scenario) segments() [][]int32 { return append([][]int32{s.P}, s.Chunks...) }

// starts returns each segment's first slot (= position) and the Q start.
func (s *scenario) starts() ([]int, int) {
	var st []int
	o := 0
	for _, seg := range s.segments() {
		st = append(st, o)
		o += len(seg)
	}
	return st, o
}

func (s *scenario) total() int { _, q := s.starts(); return q + len(s.Q) }

func (s *scenario) contextLen() int {
	n := 0
	for _, c := range s.Chunks {
		n += len(c)
	}
	return n
}

func newScenario(seed uint64, vocab, p int, chunks []int, q int) *scenario {
	rng := rand.New(rand.NewPCG(seed, 9))
	toks := func(n int) []int32 {
		o := make([]int32, n)
		for i := range o {
			o[i] = int32(rng.IntN(vocab))
		}
		return o
	}
	s := &scenario{P: toks(p), Q: toks(q)}
	for _, c := range chunks {
		s.Chunks = append(s.Chunks, toks(c))
	}
	return s
}

// cpuKV computes P's and each chunk's cache on the CPU (chunk i after P at
// positions |P|, |P|+1, …), rounded to the shard dtype.
func (s *scenario) cpuKV(t testing.TB, m *model.Model, pool *kernels.Pool, dt kernels.DType) {
	t.Helper()
	s.kv = nil
	for i, seg := range s.segments() {
		toks := seg
		if i > 0 {
			toks = append(append([]int32(nil), s.P...), seg...)
		}
		c := m.HostCache(len(toks))
		c.Alloc(len(toks))
		sq := &model.Seq{Cache: c, Tokens: toks}
		for j := range toks {
			sq.Pos = append(sq.Pos, int32(j))
			sq.Slots = append(sq.Slots, int32(j))
		}
		if _, err := m.Forward(context.Background(), []*model.Seq{sq}); err != nil {
			t.Fatal(err)
		}
		from := len(toks) - len(seg)
		kd := c.KVDim
		var kv segKV
		for l := 0; l < c.Layers; l++ {
			kv.K = append(kv.K, roundTo(dt, c.K[l][from*kd:len(toks)*kd]))
			kv.V = append(kv.V, roundTo(dt, c.V[l][from*kd:len(toks)*kd]))
		}
		for j := from; j < len(toks); j++ {
			kv.FromPos = append(kv.FromPos, int32(j))
		}
		s.kv = append(s.kv, kv)
	}
}

// rows lists the rows a method computes: the selected context tokens (indices
// into the chunks' concatenation) and Q; logits are asked for Q's rows.
func (s *scenario) rows(sel []int) (tok, pos, slot []int32, logits []int) {
	st, qs := s.starts()
	idx := 0
	next := 0
	for ci, c := range s.Chunks {
		for j := range c {
			if next < len(sel) && sel[next] == idx {
				tok = append(tok, c[j])
				pos = append(pos, int32(st[ci+1]+j))
				slot = append(slot, int32(st[ci+1]+j))
				next++
			}
			idx++
		}
	}
	for j, q := range s.Q {
		logits = append(logits, len(tok))
		tok = append(tok, q)
		pos = append(pos, int32(qs+j))
		slot = append(slot, int32(qs+j))
	}
	return
}

// apeGroups: P and Q in group 0 (plain), the chunks in group 1 with APE's T = S = 0.9.
func (s *scenario) apeGroups() *model.AttnGroups {
	st, qs := s.starts()
	g := &model.AttnGroups{SlotGroup: make([]uint8, s.total()), Temp: []float32{1, 0.9}, LSEScale: []float32{1, 0.9}}
	for i := st[1]; i < qs; i++ {
		g.SlotGroup[i] = 1
	}
	return g
}

// cpuRun assembles the cache from s.kv and runs the rows of sel (nil sel with
// full=true: every row, fresh cache).
func (s *scenario) cpuRun(t testing.TB, m *model.Model, pool *kernels.Pool, sel []int, full bool, groups *model.AttnGroups, prune func(int, []int, []float32, []float32) []int) [][]float32 {
	t.Helper()
	n := s.total()
	c := m.HostCache(n)
	c.Alloc(n)
	var sq *model.Seq
	if full {
		sq = s.fullSeq()
		sq.Cache = c
	} else {
		st, _ := s.starts()
		for i, kv := range s.kv {
			pos := make([]int32, len(kv.FromPos))
			for j := range pos {
				pos[j] = int32(st[i] + j)
			}
			for l := 0; l < c.Layers; l++ {
				if err := m.Fill(c, l, st[i], pos, kv.K[l], kv.V[l], kv.FromPos); err != nil {
					t.Fatal(err)
				}
			}
		}
		tok, pos, slot, lg := s.rows(sel)
		sq = &model.Seq{Cache: c, Tokens: tok, Pos: pos, Slots: slot, Logits: lg, Groups: groups}
	}
	if prune != nil {
		sq.PruneLayer, sq.Prune = 1, prune
	}
	out, err := m.Forward(context.Background(), []*model.Seq{sq})
	if err != nil {
		t.Fatal(err)
	}
	return out[0].Logits
}

func (s *scenario) fullSeq() *model.Seq {
	sq := &model.Seq{}
	i := 0
	for _, seg := range append(s.segments(), s.Q) {
		for _, tk := range seg {
			sq.Tokens = append(sq.Tokens, tk)
			sq.Pos = append(sq.Pos, int32(i))
			sq.Slots = append(sq.Slots, int32(i))
			i++
		}
	}
	for j := range s.Q {
		sq.Logits = append(sq.Logits, len(sq.Tokens)-len(s.Q)+j)
	}
	return sq
}

// placements turns s.kv into loader placements with shard dtype dt.
func (s *scenario) placements(dt kernels.DType, keyPrefix string) []Placement {
	st, _ := s.starts()
	var ps []Placement
	for i, kv := range s.kv {
		kv := kv
		pos := make([]int32, len(kv.FromPos))
		for j := range pos {
			pos[j] = int32(st[i] + j)
		}
		ps = append(ps, Placement{First: st[i], Pos: pos, Chunk: StoredKV{
			Key: fmt.Sprintf("%s/%d", keyPrefix, i), DType: dt, Tokens: len(kv.FromPos), FromPos: kv.FromPos,
			Layer: func(l int) ([]byte, []byte) { return encodeKV(dt, kv.K[l]), encodeKV(dt, kv.V[l]) },
		}})
	}
	return ps
}

// gpuRun is cpuRun on the device, with the cache assembled through the loader
// (overlapped with the forward pass) unless full.
func (s *scenario) gpuRun(t testing.TB, gm *Model, ld *Loader, dt kernels.DType, sel []int, full bool, groups *model.AttnGroups, prune func(int, []int, []float32, []float32) []int) [][]float32 {
	t.Helper()
	ctx := context.Background()
	n := s.total()
	c, err := gm.DeviceCache(n)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Free()
	if _, err := c.Alloc(n); err != nil {
		t.Fatal(err)
	}
	sq := &model.Seq{Cache: c, Groups: groups}
	if full {
		f := s.fullSeq()
		sq.Tokens, sq.Pos, sq.Slots, sq.Logits = f.Tokens, f.Pos, f.Slots, f.Logits
	} else {
		pd, err := ld.Load(ctx, c, s.placements(dt, "scenario-"+dt.String()))
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := pd.Wait(); err != nil {
				t.Fatal(err)
			}
		}()
		c.Await(pd)
		sq.Tokens, sq.Pos, sq.Slots, sq.Logits = s.rows(sel)
	}
	if prune != nil {
		sq.PruneLayer, sq.Prune = 1, prune
	}
	out, err := gm.Forward(ctx, []*model.Seq{sq})
	if err != nil {
		t.Fatal(err)
	}
	return out[0].Logits
}

func flatten(x [][]float32) []float32 {
	var o []float32
	for _, r := range x {
		o = append(o, r...)
	}
	return o
}

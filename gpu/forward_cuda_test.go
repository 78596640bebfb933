//go:build cuda

package gpu

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"cacheclip/kernels"
	"cacheclip/model"
	"cacheclip/model/testmodel"
)

// Whole-model checks against the CPU backend. The CPU reference runs the same
// checkpoint with its matrices rounded to bf16 (the GPU stores them so); what
// remains is the GPU rounding GEMM inputs to bf16, so logits agree within
// bf16Tol of their scale. Checks that compare two GPU runs use gpuTol (f32
// accumulation order only, amplified through the layers).
const (
	bf16Tol = 3e-2
	gpuTol  = 5e-3
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

type variantSetup struct {
	cpu, ref *model.Model
	gm       *Model
	ld       *Loader
	pool     *kernels.Pool
}

func setupVariant(t *testing.T, d *Device, s testmodel.Spec) *variantSetup {
	m := loadVariant(t, s)
	gm, err := Upload(context.Background(), d, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gm.Close() })
	ld, err := NewLoader(gm, 64<<20, 3, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ld.Close)
	return &variantSetup{cpu: m, ref: bf16Weights(t, m), gm: gm, ld: ld, pool: kernels.NewPool(0)}
}

func TestForwardMatchesCPU(t *testing.T) {
	d := openDevice(t)
	for _, spec := range testmodel.Variants() {
		t.Run(spec.Name, func(t *testing.T) {
			v := setupVariant(t, d, spec)
			s := newScenario(spec.Seed, v.cpu.Config.Vocab, 5, []int{9, 14, 7}, 6)
			want := flatten(s.cpuRun(t, v.ref, v.pool, nil, true, nil, nil))
			got := flatten(s.gpuRun(t, v.gm, v.ld, kernels.F32, nil, true, nil, nil))
			if dd := maxRel(got, want); dd > bf16Tol {
				t.Fatalf("full prefill logits differ from the CPU by %.3g of their scale (tolerance %g)", dd, bf16Tol)
			}
			// The test can tell a broken forward from a right one.
			if dd := maxRel(flatten(s.cpuRun(t, v.ref, v.pool, nil, true, nil, nil)[1:]), flatten(s.cpuRun(t, v.ref, v.pool, nil, true, nil, nil)[:len(s.Q)-1])); dd < 10*bf16Tol {
				t.Fatalf("logits of different rows differ by only %.3g: tolerance too loose to mean anything", dd)
			}
		})
	}
}

func TestChunkedAndDecodeOnGPU(t *testing.T) {
	d := openDevice(t)
	spec := testmodel.Variants()[4] // qwen2: biases, GQA, tied
	v := setupVariant(t, d, spec)
	ctx := context.Background()
	const n = 29
	s := newScenario(3, v.cpu.Config.Vocab, n, nil, 1)
	toks := s.P
	run := func(c *Cache, lo, hi int) [][]float32 {
		sq := &model.Seq{Cache: c}
		for i := lo; i < hi; i++ {
			sq.Tokens = append(sq.Tokens, toks[i])
			sq.Pos = append(sq.Pos, int32(i))
			sq.Slots = append(sq.Slots, int32(i))
			sq.Logits = append(sq.Logits, i-lo)
		}
		out, err := v.gm.Forward(ctx, []*model.Seq{sq})
		if err != nil {
			t.Fatal(err)
		}
		return out[0].Logits
	}
	one, err := v.gm.DeviceCache(n)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Free()
	one.Alloc(n)
	whole := run(one, 0, n)
	c, err := v.gm.DeviceCache(2) // grows
	if err != nil {
		t.Fatal(err)
	}
	defer c.Free()
	var pieces [][]float32
	for lo := 0; lo < n; {
		hi := min(n, lo+1+lo%5)
		c.Alloc(hi - lo)
		pieces = append(pieces, run(c, lo, hi)...)
		lo = hi
	}
	if dd := maxRel(flatten(pieces), flatten(whole)); dd > gpuTol {
		t.Fatalf("chunked prefill and decode differ from one call by %.3g", dd)
	}
}

func TestMethodsOnGPU(t *testing.T) {
	d := openDevice(t)
	for _, spec := range testmodel.Variants() {
		t.Run(spec.Name, func(t *testing.T) {
			v := setupVariant(t, d, spec)
			s := newScenario(spec.Seed+10, v.cpu.Config.Vocab, 4, []int{11, 6, 13}, 5)
			N := s.contextLen()
			all := make([]int, N)
			for i := range all {
				all[i] = i
			}
			var half []int
			for i := 0; i < N; i += 2 {
				half = append(half, i)
			}
			for _, dt := range []kernels.DType{kernels.F32, kernels.BF16} {
				s.cpuKV(t, v.ref, v.pool, dt)
				full := flatten(s.gpuRun(t, v.gm, v.ld, dt, nil, true, nil, nil))
				reuse := flatten(s.gpuRun(t, v.gm, v.ld, dt, nil, false, nil, nil))
				// Methods invariants on the GPU: r = 1 equals full, r = 0 equals reuse.
				if dd := maxRel(flatten(s.gpuRun(t, v.gm, v.ld, dt, all, false, nil, nil)), full); dd > bf16Tol {
					t.Errorf("%v shards: cacheclip r=1 differs from full by %.3g", dt, dd)
				}
				if dd := maxRel(flatten(s.gpuRun(t, v.gm, v.ld, dt, []int{}, false, nil, nil)), reuse); dd > 1e-6 {
					t.Errorf("%v shards: cacheclip r=0 differs from reuse by %.3g", dt, dd)
				}
				if dd := maxRel(reuse, full); dd < 1e-3 {
					t.Errorf("reuse within %.3g of full: the scenario cannot tell methods apart", dd)
				}
				// Each method against the CPU with the same shards.
				prune := func(_ int, rows []int, _, _ []float32) []int {
					var keep []int
					for i := range rows {
						if i%3 != 1 || i >= len(rows)-len(s.Q) {
							keep = append(keep, i)
						}
					}
					return keep
				}
				for _, c := range []struct {
					name   string
					sel    []int
					groups bool
					prune  bool
				}{{"reuse", nil, false, false}, {"cacheclip r=0.5", half, false, false}, {"ape", nil, true, false}, {"cacheblend-like prune", all, false, true}} {
					var g *model.AttnGroups
					if c.groups {
						g = s.apeGroups()
					}
					var pr func(int, []int, []float32, []float32) []int
					if c.prune {
						pr = prune
					}
					want := flatten(s.cpuRun(t, v.ref, v.pool, c.sel, false, g, pr))
					got := flatten(s.gpuRun(t, v.gm, v.ld, dt, c.sel, false, g, pr))
					if dd := maxRel(got, want); dd > bf16Tol {
						t.Errorf("%v shards, %s: GPU differs from CPU by %.3g", dt, c.name, dd)
					}
				}
			}
			st := v.ld.Stats()
			if st.Hits == 0 || st.Misses == 0 {
				t.Errorf("loader stats %+v: repeated loads of the same chunks must hit the device cache", st)
			}
		})
	}
}

func TestFillAndProbeOnGPU(t *testing.T) {
	d := openDevice(t)
	spec := testmodel.Variants()[1] // llama3: rope scaling
	v := setupVariant(t, d, spec)
	cfg := v.cpu.Config
	s := newScenario(21, cfg.Vocab, 3, []int{8, 5}, 4)
	s.cpuKV(t, v.ref, v.pool, kernels.F32)
	n := s.total()
	st, _ := s.starts()
	// Fill (the synchronous path) gives the same cache as the CPU's Fill.
	cc := v.ref.HostCache(n)
	cc.Alloc(n)
	gc, err := v.gm.DeviceCache(n)
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Free()
	gc.Alloc(n)
	for i, kv := range s.kv {
		pos := make([]int32, len(kv.FromPos))
		for j := range pos {
			pos[j] = int32(st[i]+j) + 40 // moved further than assembly would, to exercise re-rotation
		}
		for l := 0; l < cfg.Layers; l++ {
			if err := v.ref.Fill(cc, l, st[i], pos, kv.K[l], kv.V[l], kv.FromPos); err != nil {
				t.Fatal(err)
			}
			if err := v.gm.Fill(gc, l, st[i], pos, kv.K[l], kv.V[l], kv.FromPos); err != nil {
				t.Fatal(err)
			}
		}
	}
	for l := 0; l < cfg.Layers; l++ {
		k, vv, err := gc.Download(l)
		if err != nil {
			t.Fatal(err)
		}
		if dd := maxRel(k, cc.K[l][:n*cfg.KVDim()]); dd > 1e-5 {
			t.Fatalf("layer %d: re-rotated keys differ from the CPU's by %.3g", l, dd)
		}
		if dd := maxRel(vv, cc.V[l][:n*cfg.KVDim()]); dd != 0 {
			t.Fatalf("layer %d: values changed by Fill", l)
		}
	}
	// Probe: attention probabilities of Q's rows at every layer.
	tok, pos, slot, lg := s.rows(nil)
	for i := range pos {
		pos[i] += 40
	}
	probes := map[int][]float32{}
	gprobes := map[int][]float32{}
	cs := &model.Seq{Cache: cc, Tokens: tok, Pos: pos, Slots: slot, Logits: lg, Probe: func(l int) []float32 {
		probes[l] = make([]float32, len(tok)*cfg.Heads*n)
		return probes[l]
	}}
	if _, err := v.ref.Forward(context.Background(), []*model.Seq{cs}); err != nil {
		t.Fatal(err)
	}
	gs := &model.Seq{Cache: gc, Tokens: tok, Pos: pos, Slots: slot, Logits: lg, Probe: func(l int) []float32 {
		gprobes[l] = make([]float32, len(tok)*cfg.Heads*n)
		return gprobes[l]
	}}
	if _, err := v.gm.Forward(context.Background(), []*model.Seq{gs}); err != nil {
		t.Fatal(err)
	}
	for l := 0; l < cfg.Layers; l++ {
		g, w := gprobes[l], probes[l]
		var worst float64
		for i := range w {
			worst = math.Max(worst, math.Abs(float64(g[i]-w[i])))
		}
		if worst > 5e-2 {
			t.Errorf("layer %d: probabilities differ by up to %.3g", l, worst)
		}
		for r := 0; r < len(tok)*cfg.Heads; r++ {
			var sum float64
			for _, p := range g[r*n : (r+1)*n] {
				sum += float64(p)
			}
			if math.Abs(sum-1) > 1e-4 {
				t.Fatalf("layer %d row·head %d: probabilities sum to %g", l, r, sum)
			}
		}
	}
}

func TestForwardBadInputOnGPU(t *testing.T) {
	d := openDevice(t)
	v := setupVariant(t, d, testmodel.Variants()[0])
	c, err := v.gm.DeviceCache(4)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Free()
	c.Alloc(4)
	for name, sq := range map[string]*model.Seq{
		"token out of vocab": {Cache: c, Tokens: []int32{int32(v.cpu.Config.Vocab)}, Pos: []int32{0}, Slots: []int32{0}},
		"slot out of cache":  {Cache: c, Tokens: []int32{1}, Pos: []int32{0}, Slots: []int32{4}},
		"duplicate slot":     {Cache: c, Tokens: []int32{1, 2}, Pos: []int32{0, 1}, Slots: []int32{1, 1}},
		"too many groups":    {Cache: c, Tokens: []int32{1}, Pos: []int32{0}, Slots: []int32{0}, Groups: &model.AttnGroups{SlotGroup: make([]uint8, 4), Temp: make([]float32, 5), LSEScale: make([]float32, 5)}},
	} {
		if _, err := v.gm.Forward(context.Background(), []*model.Seq{sq}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

package kernels

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"cacheclip/internal/cputime"
)

// benchMatMul times one product shape and reports GFLOP/s and weight bytes/s.
func benchMatMul(b *testing.B, p *Pool, d DType, n, k, out int) {
	rng := rand.New(rand.NewPCG(5, 6))
	w := randMat(rng, d, out, k)
	x := randVec(rng, n*k)
	dst := make([]float32, n*out)
	MatMul(p, dst, x, n, w)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		MatMul(p, dst, x, n, w)
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(2*float64(n)*float64(k)*float64(out)/sec/1e9, "GFLOP/s")
	b.ReportMetric(float64(w.Bytes())/sec/1e9, "weightGB/s")
}

// BenchmarkMatMul: the Qwen2.5-0.5B MLP up/gate shape at 2048 tokens on every
// kernel set, plus the opt-in VDPBF16PS path.
func BenchmarkMatMul(b *testing.B) {
	const n, k, out = 2048, 896, 4864
	for _, ks := range Available() {
		p, _ := NewPoolWith(PoolOptions{Kernels: ks.Name()})
		if ks.Name() == "generic" {
			// The portable path is benchmarked on a smaller n to keep runs short.
			for _, d := range []DType{F32, BF16} {
				b.Run(fmt.Sprintf("generic/%s/256x%dx%d", d, k, out), func(b *testing.B) { benchMatMul(b, p, d, 256, k, out) })
			}
			continue
		}
		for _, d := range []DType{F32, F16, BF16} {
			b.Run(fmt.Sprintf("%s/%s/%dx%dx%d", ks.Name(), d, n, k, out), func(b *testing.B) { benchMatMul(b, p, d, n, k, out) })
		}
	}
	if pf, _ := NewPoolWith(PoolOptions{FastBF16: true}); pf.bf16Dot {
		b.Run(fmt.Sprintf("%s/bf16-fast/%dx%dx%d", pf.Kernels().Name(), n, k, out), func(b *testing.B) { benchMatMul(b, pf, BF16, n, k, out) })
	}
}

// BenchmarkMatVec: decode-sized products on a 7B-class MLP matrix; weightGB/s is
// the figure of merit (the weights are streamed once).
func BenchmarkMatVec(b *testing.B) {
	const k, out = 4096, 14336
	p := NewPool(0)
	for _, d := range []DType{BF16, F16, F32} {
		for _, n := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/%s/%dx%dx%d", p.Kernels().Name(), d, n, k, out), func(b *testing.B) { benchMatMul(b, p, d, n, k, out) })
		}
	}
}

// BenchmarkAttention: causal prefill of 2048 rows over their own 2048 slots with
// the Qwen2.5-0.5B head layout. GFLOP/s counts 4·HeadDim flops per visible
// (row, head, slot) triple (q·k and p·v).
func BenchmarkAttention(b *testing.B) {
	const rows, H, KV, D = 2048, 14, 2, 64
	rng := rand.New(rand.NewPCG(11, 12))
	q, k, v := randVec(rng, rows*H*D), randVec(rng, rows*KV*D), randVec(rng, rows*KV*D)
	pos := make([]int32, rows)
	for i := range pos {
		pos[i] = int32(i)
	}
	out := make([]float32, rows*H*D)
	spec := AttnSpec{Heads: H, KVHeads: KV, HeadDim: D, Scale: 0.125}
	visible := float64(rows) * float64(rows+1) / 2
	for _, ks := range Available() {
		p, _ := NewPoolWith(PoolOptions{Kernels: ks.Name()})
		b.Run(ks.Name(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Attention(p, out, q, pos, k, v, pos, spec)
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(4*D*H*visible/sec/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkMatMulDown is the MLP down projection (k = 4864, out = 896), whose
// depth needs several kc blocks.
func BenchmarkMatMulDown(b *testing.B) {
	p := NewPool(0)
	for _, d := range []DType{F32, BF16} {
		b.Run(fmt.Sprintf("%s/%s/2048x4864x896", p.Kernels().Name(), d), func(b *testing.B) { benchMatMul(b, p, d, 2048, 4864, 896) })
	}
}

// BenchmarkAttentionVariants: 4 decode rows over 2048 cached slots, and the same
// prefill shape with Probs requested (the two-pass route the auxiliary scorer uses).
func BenchmarkAttentionVariants(b *testing.B) {
	const H, KV, D, slots = 14, 2, 64, 2048
	rng := rand.New(rand.NewPCG(13, 14))
	k, v := randVec(rng, slots*KV*D), randVec(rng, slots*KV*D)
	slotPos := make([]int32, slots)
	for i := range slotPos {
		slotPos[i] = int32(i)
	}
	p := NewPool(0)
	spec := AttnSpec{Heads: H, KVHeads: KV, HeadDim: D, Scale: 0.125}
	b.Run(p.Kernels().Name()+"/decode4", func(b *testing.B) {
		const rows = 4
		q, out := randVec(rng, rows*H*D), make([]float32, rows*H*D)
		rowPos := []int32{slots, slots + 1, slots + 2, slots + 3}
		for b.Loop() {
			Attention(p, out, q, rowPos, k, v, slotPos, spec)
		}
		sec := b.Elapsed().Seconds() / float64(b.N)
		b.ReportMetric(float64(2*slots*KV*D*4)/sec/1e9, "kvGB/s")
	})
	b.Run(p.Kernels().Name()+"/prefill-probs", func(b *testing.B) {
		q, out := randVec(rng, slots*H*D), make([]float32, slots*H*D)
		ps := spec
		ps.Probs = make([]float32, slots*H*slots)
		for b.Loop() {
			Attention(p, out, q, slotPos, k, v, slotPos, ps)
		}
		sec := b.Elapsed().Seconds() / float64(b.N)
		b.ReportMetric(4*D*H*float64(slots)*float64(slots+1)/2/sec/1e9, "GFLOP/s")
	})
}

// linearShapes are the prefill products of the supported architectures (Q, K/V
// with GQA, O, gate/up, down) at 2048 tokens: Qwen2.5-0.5B and SmolLM2-135M, and
// Llama-3.2-1B at 512 tokens to keep one iteration short; and the LM heads
// (vocabulary × hidden) at 256 rows, as scoring every position of a sequence
// or a label job's rows needs them (prefill proper applies the head to its
// last row only, a matrix–vector product). The first tunedShapes are the
// shapes the kernel rules were measured and chosen on; the rest are
// held-out checks that no rule was tuned on.
var linearShapes = []struct {
	name      string
	n, k, out int
}{
	// The shapes.
	{"qwen-q/o", 2048, 896, 896}, {"qwen-kv", 2048, 896, 128},
	{"qwen-up", 2048, 896, 4864}, {"qwen-down", 2048, 4864, 896},
	{"smol-q/o", 2048, 576, 576}, {"smol-kv", 2048, 576, 192},
	{"smol-up", 2048, 576, 1536}, {"smol-down", 2048, 1536, 576},
	{"llama1b-q/o", 512, 2048, 2048}, {"llama1b-kv", 512, 2048, 512},
	{"llama1b-up", 512, 2048, 8192}, {"llama1b-down", 512, 8192, 2048},
	{"qwen-lmhead", 256, 896, 151936}, {"smol-lmhead", 256, 576, 49152},
	// Shapes added as held-out checks in parts Q, P and S of issue 21 that
	// part S's rules were then measured and chosen on (readInPlace's
	// 16-tile bound from Gemma-2B's K/V, copyPanels and narrowForRows on
	// Llama-3 K/V, Phi-3 and Mistral down, the team on Qwen2.5-1.5B's
	// K/V, the 4-row path on every 256/512-row shape), so tuned shapes
	// now: Qwen2.5-1.5B's K/V (1536 → 256 under GQA), Llama-3-8B's and
	// Mistral-7B's K/V (4096 → 1024) and down projection (14336 → 4096),
	// Phi-3-mini's Q/O (3072 → 3072) and down projection (8192 → 3072),
	// Llama-3.2-3B's K/V (3072 → 1024), Qwen2.5-3B's down projection
	// (11008 → 2048) and Gemma-2B's K/V (one 256-wide KV head, 2048 → 256).
	{"qwen1.5b-kv", 2048, 1536, 256}, {"llama8b-kv", 512, 4096, 1024},
	{"mistral-down", 256, 14336, 4096}, {"phi3-q/o", 512, 3072, 3072},
	{"llama3b-kv", 512, 3072, 1024}, {"qwen3b-down", 512, 11008, 2048},
	{"gemma2b-kv", 2048, 2048, 256}, {"phi3-down", 512, 8192, 3072},
	// Held out (issue 21 part S2), no rule measured on them: Qwen2-7B's
	// K/V (3584 → 512 under GQA) and down projection (18944 → 3584), a
	// 13B Llama's Q/O (5120 → 5120, K aliasing as 1024's multiples do),
	// and Phi-2's Q/O at 777 rows (2560 → 2560: rows off every tile).
	{"qwen7b-kv", 512, 3584, 512}, {"qwen7b-down", 512, 18944, 3584},
	{"llama13b-q/o", 512, 5120, 5120}, {"phi2-q/o-777", 777, 2560, 2560},
}

// tunedShapes is how many of linearShapes, from the first, the kernel rules
// were tuned on (the rest are held-out checks).
const tunedShapes = 22

// BenchmarkMatMulShapes runs every linear shape once per iteration, in turn, so
// that all of them see the same load, and reports each shape's best iteration
// as GFLOP/s and as a fraction of the fastest shape's (ofBest; the issue's
// target is ≥ 0.9 for every shape), by wall time and by CPU time (cpu-: the
// flops over the process's CPU seconds per worker). Under load the wall
// figure favours the short shapes, whose best iteration is likelier to have
// run undisturbed; the CPU-time figure is blind to that (and to a worker
// idling at the end of a product), so it says how fast each shape runs while
// it has the cores. A quiet machine gives both the same ratios. The weights
// are in panel layout, as the loaders keep them (Pack); rows-* runs the
// same shapes on row-major weights, which each product packs itself.
//
// A shape's turn is a run of back-to-back products lasting at least
// shapeTurn (one product for the long shapes, 14 for Qwen's K/V), timed as a
// whole: one product of the short shapes lasts 1.5 ms, and a single timed
// call then measured the start of its second worker more than the product
// (docs/BENCHMARKS.md, issue 21 part S: Qwen K/V at 0.25–0.33 of the best
// here while two other benchmarks gave it 0.95). first- is the best first
// product of a turn alone, busy the CPU seconds over wall seconds and
// workers of the best turn (1: both workers ran throughout; 0.5: one did),
// route the product's route (productRoute).
func BenchmarkMatMulShapes(b *testing.B) {
	p := NewPool(0)
	for _, lay := range []string{"", "rows-"} {
		for _, d := range []DType{F32, BF16} {
			b.Run(fmt.Sprintf("%s/%s%s", p.Kernels().Name(), lay, d), func(b *testing.B) { benchShapes(b, p, d, lay == "") })
		}
	}
}

// shapeTurn is the least time of one shape's turn in benchShapes.
const shapeTurn = 20 * time.Millisecond

// benchShapes is one run of BenchmarkMatMulShapes over weights of dtype d,
// packed into panels or not.
func benchShapes(b *testing.B, p *Pool, d DType, panels bool) {
	rng := rand.New(rand.NewPCG(9, 10))
	type run struct {
		w                Mat
		x                []float32
		dst              []float32
		reps             int
		best, cpu, first time.Duration
		busy             float64
	}
	runs := make([]run, len(linearShapes))
	for i, s := range linearShapes {
		w := randMat(rng, d, s.out, s.k)
		if panels {
			w = Pack(w)
		}
		r := run{w: w, x: randVec(rng, s.n*s.k), dst: make([]float32, s.n*s.out), best: 1 << 62, cpu: 1 << 62, first: 1 << 62}
		// The turn's length from a second product (the first faults in
		// dst and the pool's buffers).
		MatMul(p, r.dst, r.x, s.n, r.w)
		t := time.Now()
		MatMul(p, r.dst, r.x, s.n, r.w)
		dur := max(time.Since(t), time.Microsecond)
		r.reps = int((shapeTurn + dur - 1) / dur)
		runs[i] = r
	}
	for b.Loop() {
		for i, s := range linearShapes {
			r := &runs[i]
			c := cputime.Process()
			t := time.Now()
			MatMul(p, r.dst, r.x, s.n, r.w)
			r.first = min(r.first, time.Since(t))
			for k := 1; k < r.reps; k++ {
				MatMul(p, r.dst, r.x, s.n, r.w)
			}
			wall, cpu := time.Since(t)/time.Duration(r.reps), (cputime.Process()-c)/time.Duration(r.reps)
			if wall < r.best {
				r.best, r.busy = wall, cpu.Seconds()/wall.Seconds()/float64(p.Threads())
			}
			r.cpu = min(r.cpu, cpu)
		}
	}
	n := len(linearShapes)
	wall, cpu, first := make([]float64, n), make([]float64, n), make([]float64, n)
	topWall, topCPU := 0.0, 0.0
	for i, s := range linearShapes {
		fl := 2 * float64(s.n) * float64(s.k) * float64(s.out) / 1e9
		wall[i] = fl / runs[i].best.Seconds()
		cpu[i] = fl / (runs[i].cpu.Seconds() / float64(p.Threads()))
		first[i] = fl / runs[i].first.Seconds()
		topWall, topCPU = max(topWall, wall[i]), max(topCPU, cpu[i])
	}
	var tab strings.Builder
	fmt.Fprintf(&tab, "\n%-13s %21s  %-12s %5s %21s  %13s  %12s  %4s", "shape", "rows × K → out", "route", "turn", "wall GFLOP/s (÷best)", "cpu (÷best)", "first (÷best)", "busy")
	within := [2]int{} // the tuned shapes, the held-out ones
	for i, s := range linearShapes {
		r := runs[i]
		b.ReportMetric(wall[i], s.name+"-GFLOP/s")
		b.ReportMetric(wall[i]/topWall, s.name+"-ofBest")
		b.ReportMetric(cpu[i], s.name+"-cpuGFLOP/s")
		b.ReportMetric(cpu[i]/topCPU, s.name+"-cpuOfBest")
		if wall[i]/topWall >= 0.9 {
			within[min(i/tunedShapes, 1)]++
		}
		fmt.Fprintf(&tab, "\n%-13s %5d × %5d → %6d  %-12s %5d %12.1f (%.3f)  %6.1f (%.3f)  %6.1f (%.3f)  %4.2f",
			s.name, s.n, s.k, s.out, productRoute(p, p.Kernels(), s.n, r.w), r.reps, wall[i], wall[i]/topWall, cpu[i], cpu[i]/topCPU, first[i], first[i]/topWall, r.busy)
	}
	fmt.Fprintf(&tab, "\nwithin 0.9 of the best by wall time (unrounded): %d of the %d tuned shapes, %d of %d held-out", within[0], tunedShapes, within[1], n-tunedShapes)
	b.Log(tab.String())
}

// BenchmarkMatMulNarrow compares, alternately in one run, the two f32 product
// splits on narrow and wide outputs: over output columns (matMulPacked) and over
// activation rows (matMulRows); MatMul picks rows when there are more rows
// than output columns and the packed weights fit in three quarters of L2
// (rowsFit). rowsOverCols > 1 means the row split is faster.
func BenchmarkMatMulNarrow(b *testing.B) {
	p := NewPool(0)
	ks := p.Kernels()
	for _, s := range [][3]int{{2048, 896, 128}, {2048, 576, 192}, {2048, 576, 576}, {2048, 1536, 576}, {512, 2048, 512}, {2048, 896, 896}} {
		n, k, out := s[0], s[1], s[2]
		b.Run(fmt.Sprintf("%s/%dx%dx%d", ks.Name(), n, k, out), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(3, 4))
			w, x, dst := randMat(rng, F32, out, k), randVec(rng, n*k), make([]float32, n*out)
			cols, rows := time.Duration(1<<62), time.Duration(1<<62)
			for b.Loop() {
				t := time.Now()
				matMulPacked(p, ks, dst, x, n, w)
				cols = min(cols, time.Since(t))
				t = time.Now()
				matMulRows(p, ks, dst, x, n, w)
				rows = min(rows, time.Since(t))
			}
			fl := 2 * float64(n) * float64(k) * float64(out) / 1e9
			b.ReportMetric(fl/cols.Seconds(), "cols-GFLOP/s")
			b.ReportMetric(fl/rows.Seconds(), "rows-GFLOP/s")
			b.ReportMetric(cols.Seconds()/rows.Seconds(), "rowsOverCols")
		})
	}
}

// BenchmarkAttentionVsMatMul: causal prefill attention (Qwen2.5-0.5B head
// layout, keys kept blocked as the engine's cache keeps them) of 512, 2048 and
// 4096 rows over their own slots, alternated in one run with the bare matrix
// product of the MLP's up projection (2048 × 896 · 896 × 4864), so that both
// see the same load. GFLOP/s counts 4·HeadDim flops per visible (row, head,
// slot) triple (q·k and p·v); ofMatMul is attention's rate over the product's,
// by wall time and by CPU time (cpuOfMatMul; the process's CPU seconds, which
// the machine's other load inflates far less).
func BenchmarkAttentionVsMatMul(b *testing.B) {
	const H, KV, D = 14, 2, 64
	p := NewPool(0)
	rng := rand.New(rand.NewPCG(31, 32))
	const mn, mk, mo = 2048, 896, 4864
	w, x, y := randMat(rng, F32, mo, mk), randVec(rng, mn*mk), make([]float32, mn*mo)
	for _, n := range []int{512, 2048, 4096} {
		b.Run(fmt.Sprintf("%s/n=%d", p.Kernels().Name(), n), func(b *testing.B) {
			q, k, v := randVec(rng, n*H*D), randVec(rng, n*KV*D), randVec(rng, n*KV*D)
			kb := make([]float32, BlockedKeysLen(n, KV*D))
			PutKeys(kb, 0, KV*D, k)
			pos := make([]int32, n)
			for i := range pos {
				pos[i] = int32(i)
			}
			out := make([]float32, n*H*D)
			spec := AttnSpec{Heads: H, KVHeads: KV, HeadDim: D, Scale: 0.125}
			var tA, tM, cA, cM time.Duration
			for b.Loop() {
				c, t := cputime.Process(), time.Now()
				MatMul(p, y, x, mn, w)
				tM, cM = tM+time.Since(t), cM+cputime.Process()-c
				c, t = cputime.Process(), time.Now()
				AttentionBlocked(p, out, q, pos, kb, v, pos, spec)
				tA, cA = tA+time.Since(t), cA+cputime.Process()-c
			}
			af := 4 * D * H * float64(n) * float64(n+1) / 2 * float64(b.N) / 1e9
			mf := 2 * float64(mn) * mk * mo * float64(b.N) / 1e9
			b.ReportMetric(af/tA.Seconds(), "attnGFLOP/s")
			b.ReportMetric(mf/tM.Seconds(), "matmulGFLOP/s")
			b.ReportMetric(af/tA.Seconds()/(mf/tM.Seconds()), "ofMatMul")
			if cA > 0 && cM > 0 {
				b.ReportMetric(af/cA.Seconds()/(mf/cM.Seconds()), "cpuOfMatMul")
			}
		})
	}
}

// BenchmarkMatMulLayouts alternates, per shape of linearShapes, the product
// over the same weights row-major (packed by each call) and in panel layout
// (packed at load), so that the layouts' ratio comes from one run under one
// load: panelsOverRows > 1 means the panel layout is faster (best iteration
// of each, wall time).
func BenchmarkMatMulLayouts(b *testing.B) {
	p := NewPool(0)
	for _, d := range []DType{F32, BF16} {
		for _, s := range linearShapes {
			b.Run(fmt.Sprintf("%s/%s/%s", p.Kernels().Name(), d, s.name), func(b *testing.B) {
				rng := rand.New(rand.NewPCG(9, 10))
				w := randMat(rng, d, s.out, s.k)
				pw := Pack(w)
				x, dst := randVec(rng, s.n*s.k), make([]float32, s.n*s.out)
				rows, panels := time.Duration(1<<62), time.Duration(1<<62)
				for b.Loop() {
					t := time.Now()
					MatMul(p, dst, x, s.n, w)
					rows = min(rows, time.Since(t))
					t = time.Now()
					MatMul(p, dst, x, s.n, pw)
					panels = min(panels, time.Since(t))
				}
				fl := 2 * float64(s.n) * float64(s.k) * float64(s.out) / 1e9
				b.ReportMetric(fl/rows.Seconds(), "rows-GFLOP/s")
				b.ReportMetric(fl/panels.Seconds(), "panels-GFLOP/s")
				b.ReportMetric(rows.Seconds()/panels.Seconds(), "panelsOverRows")
			})
		}
	}
}

// BenchmarkMatMulAhead alternates, per shape of linearShapes, the product
// over panel weights three ways: as before part Z (none: no next-block
// prefetch, the column split on Run), with the next weight block prefetched
// where fetchAhead allows (ahead), and with that and the column split on the
// pool's team (team). The ratios come from one run under one load; > 1
// means faster than none (best of each, wall time).
func BenchmarkMatMulAhead(b *testing.B) {
	none, ahead, team := NewPool(0), NewPool(0), NewPool(0)
	none.noAhead, none.colsRun = true, true
	ahead.colsRun = true
	for _, d := range []DType{F32, BF16} {
		for _, s := range linearShapes {
			b.Run(fmt.Sprintf("%s/%s/%s", team.Kernels().Name(), d, s.name), func(b *testing.B) {
				rng := rand.New(rand.NewPCG(9, 10))
				w := Pack(randMat(rng, d, s.out, s.k))
				x, dst := randVec(rng, s.n*s.k), make([]float32, s.n*s.out)
				pools := []*Pool{none, ahead, team}
				best := []time.Duration{1 << 62, 1 << 62, 1 << 62}
				for _, p := range pools {
					MatMul(p, dst, x, s.n, w)
				}
				for b.Loop() {
					for i, p := range pools {
						// Two products back to back, the second timed, as
						// in a forward's run of products.
						MatMul(p, dst, x, s.n, w)
						t := time.Now()
						MatMul(p, dst, x, s.n, w)
						best[i] = min(best[i], time.Since(t))
					}
				}
				fl := 2 * float64(s.n) * float64(s.k) * float64(s.out) / 1e9
				b.ReportMetric(fl/best[0].Seconds(), "none-GFLOP/s")
				b.ReportMetric(best[0].Seconds()/best[1].Seconds(), "ahead/none")
				b.ReportMetric(best[0].Seconds()/best[2].Seconds(), "team/none")
			})
		}
	}
}

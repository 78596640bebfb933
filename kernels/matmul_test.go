package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// testPools returns one two-worker pool per kernel set this machine runs, so one
// `go test` run covers the generic fallback and every SIMD path.
func testPools(t testing.TB) []*Pool {
	t.Helper()
	var out []*Pool
	for _, k := range Available() {
		p, err := NewPoolWith(PoolOptions{Threads: 2, Kernels: k.Name()})
		if err != nil {
			t.Fatal(err)
		}
		if p.Kernels().Name() != k.Name() {
			t.Fatalf("asked for %s, got %s", k.Name(), p.Kernels().Name())
		}
		out = append(out, p)
	}
	return out
}

// pinnedPools is testPools with every set's cache geometry pinned to this
// project's reference machine (refGeometry), for tests whose
// routes and blocks depend on it: the host's own sizes (1.25 MiB L2 on Ice
// Lake-SP, 512 KiB on Zen 3, unknown in a container) would change them.
func pinnedPools(t testing.TB) []*Pool {
	t.Helper()
	var out []*Pool
	for _, p := range testPools(t) {
		ks := *p.Kernels()
		refGeometry(&ks)
		out = append(out, &Pool{threads: p.Threads(), k: &ks})
	}
	return out
}

// refGeometry sets ks's caches to the machine the rules were measured on:
// 48 KiB 12-way L1d, 2 MiB 16-way L2.
func refGeometry(ks *Kernels) { ks.l1d, ks.l2, ks.l1Ways, ks.l2Ways = 48<<10, 2<<20, 12, 16 }

// iceLakeGeometry sets ks's caches to an Ice Lake-SP core's: 48 KiB 12-way
// L1d, 1.25 MiB 20-way L2 (sets 64 KiB apart).
func iceLakeGeometry(ks *Kernels) { ks.l1d, ks.l2, ks.l1Ways, ks.l2Ways = 48<<10, 1280<<10, 12, 20 }

// randMat returns a weight matrix whose backing slice starts at an odd offset.
func randMat(rng *rand.Rand, d DType, rows, cols int) Mat {
	m := Mat{DType: d, Rows: rows, Cols: cols}
	switch d {
	case F32:
		buf := make([]float32, rows*cols+1)
		for i := range buf {
			buf[i] = rng.Float32()*2 - 1
		}
		m.F32 = buf[1:]
	default:
		buf := make([]uint16, rows*cols+1)
		for i := range buf {
			f := rng.Float32()*2 - 1
			if d == F16 {
				buf[i] = F32ToF16(f)
			} else {
				buf[i] = F32ToBF16(f)
			}
		}
		m.U16 = buf[1:]
	}
	return m
}

func randVec(rng *rand.Rand, n int) []float32 {
	buf := make([]float32, n+3)
	for i := range buf {
		buf[i] = rng.Float32()*2 - 1
	}
	return buf[3:]
}

// refMatMul is the naive float64 product and the magnitude Σ|x·w| of each output,
// which bounds the rounding error of any f32 summation order.
func refMatMul(x []float32, n int, w Mat) (out, mag []float64) {
	out = make([]float64, n*w.Rows)
	mag = make([]float64, n*w.Rows)
	row := make([]float32, w.Cols)
	for o := 0; o < w.Rows; o++ {
		w.RowF32(o, row)
		for i := 0; i < n; i++ {
			var s, m float64
			for c, v := range row {
				p := float64(v) * float64(x[i*w.Cols+c])
				s += p
				m += math.Abs(p)
			}
			out[i*w.Rows+o] = s
			mag[i*w.Rows+o] = m
		}
	}
	return out, mag
}

func TestMatMulMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	shapes := [][3]int{ // n, k, out
		{1, 1, 1}, {1, 31, 5}, {1, 64, 4}, {1, 97, 13}, {3, 130, 33},
		{8, 256, 40}, {9, 33, 17}, {12, 32, 32}, {13, 300, 65}, {25, 257, 100},
		{40, 513, 70}, {7, 1000, 9}, {30, 17, 600}, {20, 2100, 40},
		// batched decode: whole and partial groups of six rows, k with and
		// without a tail past the last 32-block, outputs not a multiple of 4
		{6, 64, 8}, {32, 1000, 37}, {17, 128, 12}, {11, 4864 / 8, 9},
		// K equal to the AVX-512 panel height; a row split over several kc blocks
		{24, 12, 40}, {36, 1100, 70},
	}
	for i := 0; i < 6; i++ {
		shapes = append(shapes, [3]int{1 + rng.IntN(40), 1 + rng.IntN(600), 1 + rng.IntN(120)})
	}
	for _, p := range testPools(t) {
		for _, d := range []DType{F32, F16, BF16} {
			for _, sh := range shapes {
				n, k, o := sh[0], sh[1], sh[2]
				t.Run(fmt.Sprintf("%s/%s/%dx%dx%d", p.Kernels().Name(), d, n, k, o), func(t *testing.T) {
					w := randMat(rng, d, o, k)
					x := randVec(rng, n*k)
					want, mag := refMatMul(x, n, w)
					// The dispatcher, and both paths forced, whatever n is.
					for _, path := range []struct {
						name string
						run  func(dst []float32)
					}{
						{"MatMul", func(dst []float32) { MatMul(p, dst, x, n, w) }},
						{"matVec", func(dst []float32) { matVec(p, p.Kernels(), dst, x, n, w) }},
						{"packed", func(dst []float32) { matMulPacked(p, p.Kernels(), dst, x, n, w) }},
						{"rows", func(dst []float32) { matMulRows(p, p.Kernels(), dst, x, n, w) }},
						{"rows-packedA", func(dst []float32) { matMulRowsWith(p, p.Kernels(), dst, x, n, w, false) }},
					} {
						dst := randVec(rng, n*o) // garbage must be overwritten
						path.run(dst)
						for j := range want {
							if diff := math.Abs(float64(dst[j]) - want[j]); diff > 1e-5*mag[j]+1e-6 {
								t.Fatalf("%s out %d: got %g want %g (|x·w| %g)", path.name, j, dst[j], want[j], mag[j])
							}
						}
					}
				})
			}
		}
	}
}

func TestMatMulFastBF16(t *testing.T) {
	p, err := NewPoolWith(PoolOptions{Threads: 2, FastBF16: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Kernels().HasBF16Dot() != p.bf16Dot {
		t.Fatalf("FastBF16 pool on %s: VDPBF16PS path enabled = %v", p.Kernels().Name(), p.bf16Dot)
	}
	// Without VDPBF16PS a FastBF16 pool must simply run the exact path.
	run, tol := func(dst, x []float32, n int, w Mat) { MatMul(p, dst, x, n, w) }, 1e-5
	if p.bf16Dot {
		// bf16 activations: each product is off by at most 2⁻⁸ relative.
		run, tol = func(dst, x []float32, n int, w Mat) { matMulBF16Dot(p, p.Kernels(), dst, x, n, w) }, 4e-3
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, sh := range [][3]int{{1, 2, 1}, {9, 33, 17}, {13, 300, 65}, {40, 513, 70}, {25, 1, 40}, {100, 896, 97}, {17, 2000, 33}, {20, 2001, 40}} {
		n, k, o := sh[0], sh[1], sh[2]
		w := randMat(rng, BF16, o, k)
		x := randVec(rng, n*k)
		dst := randVec(rng, n*o)
		run(dst, x, n, w)
		want, mag := refMatMul(x, n, w)
		for j := range want {
			if diff := math.Abs(float64(dst[j]) - want[j]); diff > tol*mag[j]+1e-6 {
				t.Fatalf("%v out %d: got %g want %g (|x·w| %g)", sh, j, dst[j], want[j], mag[j])
			}
		}
	}
}

func TestMatMulZeroCols(t *testing.T) {
	for _, p := range testPools(t) {
		dst := []float32{1, 2, 3, 4, 5, 6}
		MatMul(p, dst, nil, 2, Mat{DType: F32, Rows: 3, Cols: 0})
		for _, v := range dst {
			if v != 0 {
				t.Fatalf("%s: want zeros, got %v", p.Kernels().Name(), dst)
			}
		}
	}
}

func TestSelectUnknownSet(t *testing.T) {
	k, err := Select("nonesuch")
	if err == nil || k == nil {
		t.Fatalf("want fallback set and error, got %v, %v", k, err)
	}
	g, err := Select("generic")
	if err != nil || g.Name() != "generic" {
		t.Fatalf("generic: %v %v", g, err)
	}
}

func TestEnvForcesGeneric(t *testing.T) {
	t.Setenv(EnvKernels, "generic")
	if got := NewPool(1).Kernels().Name(); got != "generic" {
		t.Fatalf("CACHECLIP_KERNELS=generic gave %s", got)
	}
}

func TestMatMulRejectsShortWeights(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("MatMul accepted a 4×64 f32 matrix backed by 200 floats")
		}
	}()
	MatMul(NewPool(1), make([]float32, 4), make([]float32, 64), 1, Mat{DType: F32, Rows: 4, Cols: 64, F32: make([]float32, 200)})
}

// TestMatMulPackedBlockEdges forces block depths and widths that leave partial
// blocks everywhere (kc not dividing K, nc not a multiple of nr, one-deep
// blocks) and checks the column-split product against the reference.
func TestMatMulPackedBlockEdges(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 11))
	for _, p := range pinnedPools(t) {
		ks := p.Kernels()
		for _, d := range []DType{F32, BF16} {
			// n = 40 and 20 end in a short panel of whole 4-row groups
			// (the 4-row kernel's path where the set has one). 40 × 1024 →
			// 600 is the copied f32 panel block (copyPanels, asserted
			// below): 19 panels over two workers, 10 and 9 pieces a block
			// with nc unbounded, K = 1024 aliasing; kc = 7 and 100 leave
			// a last block 2 and 24 deep.
			for _, sh := range [][3]int{{37, 300, 150}, {13, 97, 65}, {25, 64, 33}, {40, 300, 150}, {20, 97, 65}, {40, 1024, 300}, {40, 1024, 600}} {
				n, k, o := sh[0], sh[1], sh[2]
				w, x := randMat(rng, d, o, k), randVec(rng, n*k)
				want, mag := refMatMul(x, n, w)
				blocks := [][2]int{{1, 1}, {7, ks.nr + 3}, {16, 2 * ks.nr}, {64, 5 * ks.nr}, {k, 1 << 20}}
				if o == 600 {
					// Only unbounded blocks copy; the K tails go through it.
					blocks = [][2]int{{7, 1 << 20}, {100, 1 << 20}, {k, 1 << 20}}
					if pieces := ((o+PanelWidth-1)/PanelWidth + 1) / 2; !copyPanels(ks, k, pieces) {
						t.Fatalf("%v: %d pieces a block are not copied", sh, pieces)
					}
				}
				for _, m := range []Mat{w, Pack(w)} {
					for _, b := range blocks {
						for _, inPlace := range []bool{false, true} {
							dst := randVec(rng, n*o)
							matMulPackedWith(p, ks, dst, x, n, m, b[0], b[1], inPlace)
							for j := range want {
								if diff := math.Abs(float64(dst[j]) - want[j]); diff > 1e-5*mag[j]+1e-6 {
									t.Fatalf("%s/%s %v panels=%v kc=%d nc=%d inPlace=%v out %d: got %g want %g", ks.Name(), d, sh, m.Panels, b[0], b[1], inPlace, j, dst[j], want[j])
								}
							}
						}
					}
				}
			}
		}
	}
}

// TestCopyPanelsRule: f32 panel blocks are copied only when more of their
// pieces start in one L2 set than half its ways: on the reference 2 MiB
// 16-way L2 (sets 128 KiB apart) more than 8 pieces with K a multiple of
// 1024, and more than 16 with K an odd multiple of 512 (two sets take
// them), which blocking's 512-wide blocks never reach; on Ice Lake-SP's
// 1.25 MiB 20-way L2 (64 KiB) more than 10 with K a multiple of 512.
func TestCopyPanelsRule(t *testing.T) {
	ks := *Available()[0]
	for _, c := range []struct {
		geo       func(*Kernels)
		K, pieces int
		want      bool
	}{
		{refGeometry, 1024, 9, true}, {refGeometry, 2048, 16, true}, {refGeometry, 8192, 16, true},
		{refGeometry, 3072, 10, true}, {refGeometry, 1024, 1 << 10, true},
		{refGeometry, 2048, 8, false}, {refGeometry, 14336, 8, false}, {refGeometry, 2048, 4, false},
		{refGeometry, 1536, 16, false}, {refGeometry, 1536, 17, true}, {refGeometry, 2560, 16, false},
		{refGeometry, 896, 16, false}, {refGeometry, 4864, 16, false}, {refGeometry, 11008, 16, false},
		{refGeometry, 1000, 40, false},
		{iceLakeGeometry, 1024, 10, false}, {iceLakeGeometry, 1024, 11, true}, {iceLakeGeometry, 2048, 16, true},
		{iceLakeGeometry, 1536, 11, true}, {iceLakeGeometry, 2560, 16, true}, {iceLakeGeometry, 1536, 10, false},
		{iceLakeGeometry, 896, 16, false}, {iceLakeGeometry, 4864, 16, false},
	} {
		c.geo(&ks)
		if got := copyPanels(&ks, c.K, c.pieces); got != c.want {
			t.Errorf("L2 %d KiB %d-way: copyPanels(%d, %d) = %v, want %v", ks.l2>>10, ks.l2Ways, c.K, c.pieces, got, c.want)
		}
	}
}

// TestCacheWays: the associativity sysfs gives is kept; where it is
// missing, L1d sets repeat every aliasPeriod and L2 is 16-way.
func TestCacheWays(t *testing.T) {
	for _, c := range []struct{ l1d, l2, l1Ways, l2Ways, want1, want2 int }{
		{48 << 10, 2 << 20, 12, 16, 12, 16}, {48 << 10, 1280 << 10, 12, 20, 12, 20},
		{48 << 10, 2 << 20, 0, 0, 12, 16}, {32 << 10, 512 << 10, 0, 0, 8, 16}, {0, 0, 0, 0, 8, 16},
		{0, 0, 12, 20, 8, 16},
	} {
		ks := Kernels{l1d: c.l1d, l2: c.l2, l1Ways: c.l1Ways, l2Ways: c.l2Ways}
		if w1, w2 := ks.cacheWays(); w1 != c.want1 || w2 != c.want2 {
			t.Errorf("%+v: cacheWays = %d, %d, want %d, %d", c, w1, w2, c.want1, c.want2)
		}
	}
}

// TestRowsFit: the row split takes a packed weight matrix up to three
// quarters of L2 (whole panels of nr columns), whatever the shape.
func TestRowsFit(t *testing.T) {
	for _, base := range Available() {
		ks := *base
		refGeometry(&ks)
		nr := ks.nr
		for _, c := range []struct {
			n, k int
			want bool
		}{
			{128, 896, true}, {576, 576, true}, {nr, (3 << 19) / (4 * nr), true},
			{nr, (3<<19)/(4*nr) + 1, false}, {576, 1536, false}, {896, 896, false},
		} {
			if got := rowsFit(&ks, c.n, c.k); got != c.want {
				t.Errorf("%s: rowsFit(%d × %d) = %v, want %v", ks.Name(), c.n, c.k, got, c.want)
			}
		}
	}
}

// TestBlockingFitsCaches checks the blocking rule's invariants on the cache
// sizes of common x86 cores: the blocks cover K evenly, the activation
// micro-panel fits half of L1d and the weight block half of L2 (but for the
// one-panel minimum), and nc is whole panels.
func TestBlockingFitsCaches(t *testing.T) {
	for _, c := range [][2]int{{32 << 10, 1 << 20}, {48 << 10, 2 << 20}, {48 << 10, 1280 << 10}, {0, 0}} {
		for _, base := range Available() {
			ks := *base
			ks.l1d, ks.l2 = c[0], c[1]
			l1, l2 := ks.caches()
			for _, K := range []int{1, 31, 576, 896, 1536, 2048, 4864, 8192, 14336} {
				for _, elem := range []int{2, 4} {
					kc, nc := blocking(&ks, K, elem)
					nb := (K + kc - 1) / kc
					if kc < 1 || kc > K || (nb-1)*kc >= K || kc-(K+nb-1)/nb != 0 {
						t.Errorf("%s caches %v K=%d: kc=%d does not split K into %d equal blocks", ks.Name(), c, K, kc, nb)
					}
					if nb > 1 && kc*ks.mr*elem > l1/2 {
						t.Errorf("%s caches %v K=%d elem %d: micro-panel %d B over half of L1d", ks.Name(), c, K, elem, kc*ks.mr*elem)
					}
					if nc%ks.nr != 0 || nc < ks.nr || (nc > ks.nr && nc*kc*elem > l2/2) {
						t.Errorf("%s caches %v K=%d elem %d: nc=%d (kc %d) not whole panels within half of L2", ks.Name(), c, K, elem, nc, kc)
					}
				}
			}
		}
	}
}

func TestParseCacheSize(t *testing.T) {
	for in, want := range map[string]int{"48K": 48 << 10, "2048K": 2 << 20, "2M": 2 << 20, "512": 512, "": 0, "x": 0, "-1K": 0} {
		if got := parseCacheSize(in); got != want {
			t.Errorf("parseCacheSize(%q) = %d, want %d", in, got, want)
		}
	}
}

// TestMatVecRowsRule: the matrix-vector path takes up to 32 rows only where
// the set has the four-by-four kernel for those 16-bit weights and the
// product is exact; everything else switches to the packed product above 16.
func TestMatVecRowsRule(t *testing.T) {
	rows := func(batchKernel bool) int {
		if batchKernel {
			return 32
		}
		return 16
	}
	for _, ks := range Available() {
		p, _ := NewPoolWith(PoolOptions{Threads: 2, Kernels: ks.Name()})
		pf, _ := NewPoolWith(PoolOptions{Threads: 2, Kernels: ks.Name(), FastBF16: true})
		for _, c := range []struct {
			p    *Pool
			d    DType
			want int
		}{
			{p, F32, 16},
			{p, F16, rows(ks.gemv44F16 != nil)},
			{p, BF16, rows(ks.gemv44BF16s != nil)},
			{pf, BF16, rows(ks.gemv44BF16s != nil && !pf.bf16Dot)},
		} {
			if got := matVecRows(c.p, c.p.Kernels(), c.d); got != c.want {
				t.Errorf("%s %s fast=%v: matVecRows = %d, want %d", ks.Name(), c.d, c.p.bf16Dot, got, c.want)
			}
		}
	}
}

// TestSplitEvenOdd checks every set's split against the definition: element
// 32b+j of the result is src[32b+2j] for j < 16 and src[32b+2(j-16)+1] after.
func TestSplitEvenOdd(t *testing.T) {
	src := make([]float32, 32*5)
	for i := range src {
		src[i] = float32(i)
	}
	for _, ks := range Available() {
		split := ks.splitEvenOdd
		if split == nil {
			split = splitEvenOdd
		}
		for _, n := range []int{0, 32, 64, 160} {
			dst := make([]float32, n)
			split(dst, src[:n])
			for i, v := range dst {
				b, j := i/32, i%32
				want := 32*b + 2*j
				if j >= 16 {
					want = 32*b + 2*(j-16) + 1
				}
				if v != float32(want) {
					t.Fatalf("%s n=%d: dst[%d] = %v, want %d", ks.Name(), n, i, v, want)
				}
			}
		}
	}
}

// TestReadInPlaceRule: activation panels are packed only when more of the
// 12 rows' values at one column share an L1d set than half its ways and
// they serve packTiles tiles or more. A 48 KiB 12-way L1d (sets 4 KiB
// apart) takes K a multiple of 1024 (12 rows a set); a 32 KiB 8-way one
// also K an odd multiple of 512 (6 rows a set, over its 4).
func TestReadInPlaceRule(t *testing.T) {
	var ks Kernels
	for _, k := range Available() {
		if k.mr == 12 {
			ks = *k
		}
	}
	if ks.mr != 12 {
		ks = Kernels{mr: 12, nr: 32}
	}
	for _, c := range []struct {
		K, tiles    int
		want, want8 bool // 12-way (reference, Ice Lake), 8-way 32 KiB
	}{
		{896, 64, true, true}, {4864, 16, true, true}, {11008, 16, true, true},
		{1536, 100, true, false}, {2560, 16, true, false}, {1536, 15, true, true},
		{1024, 16, false, false}, {2048, 16, false, false}, {8192, 40, false, false},
		{14336, 16, false, false}, {5120, 16, false, false},
		{2048, 4, true, true}, {2048, packTiles - 1, true, true}, {3072, 8, true, true},
	} {
		for _, g := range []struct {
			geo  func(*Kernels)
			want bool
		}{{refGeometry, c.want}, {iceLakeGeometry, c.want}, {func(k *Kernels) { k.l1d, k.l1Ways = 32<<10, 8 }, c.want8}} {
			g.geo(&ks)
			if got := readInPlace(&ks, c.K, c.tiles); got != g.want {
				t.Errorf("L1d %d KiB %d-way: readInPlace(%d, %d) = %v, want %v", ks.l1d>>10, ks.l1Ways, c.K, c.tiles, got, g.want)
			}
		}
	}
	// A 4-row tile fills at most 4 ways of a set: read in place.
	refGeometry(&ks)
	ks.mr = 4
	if !readInPlace(&ks, 1024, 16) {
		t.Error("4-row tiles: K = 1024 packed")
	}
}

// TestNarrowForRows: the block width stays whole tiles, never wider than
// blocking's, and is narrowed only when the activation block fits in a
// quarter of L2 — then activations and weights share half of L2.
func TestNarrowForRows(t *testing.T) {
	for _, base := range Available() {
		ks := *base
		refGeometry(&ks)
		_, l2 := ks.caches()
		for _, K := range []int{576, 896, 2048, 8192, 14336} {
			kc, nc := blocking(&ks, K, 4)
			for _, n := range []int{33, 256, 512, 2048} {
				got := narrowForRows(&ks, n, kc, nc, 4)
				a := n * kc * 4
				switch {
				case got%ks.nr != 0 || got < ks.nr || got > nc:
					t.Errorf("%s K=%d n=%d: nc %d not whole tiles within [nr, %d]", ks.Name(), K, n, got, nc)
				case a > l2/4 && got != nc:
					t.Errorf("%s K=%d n=%d: activation block %d B over L2/4 but nc narrowed %d → %d", ks.Name(), K, n, a, nc, got)
				case a <= l2/4 && got > ks.nr && a+got*kc*4 > l2/2:
					t.Errorf("%s K=%d n=%d: activations %d B + weights %d B over half of L2", ks.Name(), K, n, a, got*kc*4)
				case a <= l2/4 && got < nc && a+(got+ks.nr)*kc*4 <= l2/2:
					t.Errorf("%s K=%d n=%d: narrowed to %d though %d more columns fit in half of L2", ks.Name(), K, n, got, ks.nr)
				}
			}
		}
	}
}

// TestMatMulPackedActivations: products whose activation rows are 4 KiB
// apart (K a multiple of 1024) over enough output tiles take the packed
// activation panels (readInPlace false; the sets without gemmRows pack
// every panel anyway) and, over f32 panels on the 12-row sets, copied
// weight blocks (copyPanels), on every kernel set and weight
// layout, with rows off the mr tiles and outputs off the panels. The cache
// geometry is pinned (pinnedPools): the blocks, and so the tiles a panel
// serves, follow L1d and L2.
func TestMatMulPackedActivations(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 29))
	for _, p := range pinnedPools(t) {
		ks := p.Kernels()
		for _, d := range []DType{F32, F16, BF16} {
			for _, sh := range [][3]int{{261, 1024, 1061}} {
				n, k, o := sh[0], sh[1], sh[2]
				w, x := randMat(rng, d, o, k), randVec(rng, n*k)
				if r := productRoute(p, ks, n, Pack(w)); r != routePacked {
					t.Fatalf("%s %v: route %v, not the column split", ks.Name(), sh, r)
				}
				for _, m := range []Mat{w, Pack(w)} {
					_, nc, inPlace := packedBlocks(p, ks, n, m)
					if ks.gemmRows != nil && inPlace {
						t.Fatalf("%s %v panels=%v: activation panels read in place, not packed", ks.Name(), sh, m.Panels)
					}
					// The 12-row sets' blocks are 512 wide here (16 pieces);
					// generic's 4-row tiles make them 256 (8, in place).
					if m.Panels && ks.mr == 12 && !copyPanels(ks, k, nc/PanelWidth) {
						t.Fatalf("%s %v: f32 panel blocks of %d columns not copied", ks.Name(), sh, nc)
					}
				}
				want, mag := refMatMul(x, n, w)
				for _, m := range []Mat{w, Pack(w)} {
					dst := randVec(rng, n*o)
					MatMul(p, dst, x, n, m)
					for j := range want {
						if diff := math.Abs(float64(dst[j]) - want[j]); diff > 1e-5*mag[j]+1e-6 {
							t.Fatalf("%s/%s %v panels=%v out %d: got %g want %g", ks.Name(), d, sh, m.Panels, j, dst[j], want[j])
						}
					}
				}
			}
		}
	}
}

// TestFetchAheadRule: the next weight block is prefetched only where the
// activation block stays in a quarter of L2 and two weight blocks fit
// beside it — the 256-row products at the rule's blocks on the reference
// 2 MiB L2, not 512 or 2,048 rows, nor on a 1.25 MiB L2 at K = 896 — and
// only by a set with the prefetching micro-kernels.
func TestFetchAheadRule(t *testing.T) {
	for _, base := range Available() {
		for _, c := range []struct {
			geo     func(*Kernels)
			n, K, N int
			want    bool
		}{
			{refGeometry, 256, 896, 151936, true}, {refGeometry, 256, 576, 49152, true},
			{refGeometry, 256, 14336, 4096, true}, {refGeometry, 100, 2048, 512, true},
			{refGeometry, 512, 2048, 512, false}, {refGeometry, 512, 896, 4864, false},
			{refGeometry, 2048, 896, 896, false}, {refGeometry, 300, 896, 4864, false},
			{iceLakeGeometry, 256, 896, 151936, false}, {iceLakeGeometry, 128, 896, 151936, true},
		} {
			ks := *base
			c.geo(&ks)
			p := &Pool{threads: 2, k: &ks}
			w := Mat{DType: F32, Rows: c.N, Cols: c.K, Panels: true}
			kc, nc, _ := packedBlocks(p, &ks, c.n, w)
			want := c.want && ks.gemmRowsPfB != nil
			if got := fetchAhead(&ks, c.n, kc, nc); got != want {
				t.Errorf("%s L2 %d KiB %d × %d → %d (kc %d, nc %d): fetchAhead %v, want %v", ks.Name(), ks.l2>>10, c.n, c.K, c.N, kc, nc, got, want)
			}
			if _, l2 := ks.caches(); fetchAhead(&ks, c.n, kc, nc) && (c.n*kc*4 > l2/4 || c.n*kc*4+2*nc*kc*4 > l2) {
				t.Errorf("%s %d × %d: prefetching with activations %d B and two blocks %d B in a %d B L2", ks.Name(), c.n, c.K, c.n*kc*4, 2*nc*kc*4, l2)
			}
		}
	}
}

// TestBlockAheadCovers: the chunks a block's tiles take are its last tiles'
// (one each), start inside the next block's panel pieces and together
// cover every byte of them, in order, when there are tiles enough; with
// fewer tiles, every tile takes one, from the first piece on; row-major
// weights hand out nothing.
func TestBlockAheadCovers(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 43))
	for _, d := range []DType{F32, BF16} {
		const K, N = 300, 200
		w := Pack(randMat(rng, d, N, K))
		elem, base := 4, uintptr(0)
		if d == F32 {
			base = uintptr(unsafe.Pointer(&w.F32[0]))
		} else {
			elem, base = 2, uintptr(unsafe.Pointer(&w.U16[0]))
		}
		for _, c := range []struct{ jc, nc, pc, kc, chunk, tiles int }{
			{64, 96, 100, 150, aheadChunk(150), 400}, {0, 200, 0, 300, aheadChunk(300), 1000},
			{32, 64, 37, 50, 1000, 10}, {0, 200, 0, 300, aheadChunk(300), 5},
		} {
			b := newBlockAhead(w, c.jc, c.nc, c.pc, c.kc, c.chunk, c.tiles)
			runs, run := (c.nc+PanelWidth-1)/PanelWidth, c.kc*PanelWidth*elem
			chunks := runs * ((run + c.chunk - 1) / c.chunk)
			var got []uintptr
			first := -1
			for i := 0; i < c.tiles; i++ {
				if p := b.take(); p != nil {
					if first < 0 {
						first = i
					}
					got = append(got, uintptr(p)-base)
				} else if first >= 0 {
					t.Fatalf("%s %+v: tile %d took nothing after tile %d took a chunk", d, c, i, first)
				}
			}
			if len(got) != min(chunks, c.tiles) || (len(got) > 0 && first != c.tiles-len(got)) {
				t.Fatalf("%s %+v: %d chunks from tile %d, want %d from tile %d", d, c, len(got), first, min(chunks, c.tiles), c.tiles-min(chunks, c.tiles))
			}
			// The expected chunks: each piece from its start, chunk bytes apart.
			var want []uintptr
			for q := c.jc / PanelWidth; q < c.jc/PanelWidth+runs; q++ {
				start := uintptr((q*K*PanelWidth + c.pc*PanelWidth) * elem)
				for off := 0; off < run; off += c.chunk {
					want = append(want, start+uintptr(off))
				}
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%s %+v: chunk %d at byte %d, want %d", d, c, i, got[i], want[i])
				}
			}
		}
		if b := newBlockAhead(w.RowMajor(), 0, N, 0, K, aheadChunk(K), 100); b.take() != nil {
			t.Fatalf("%s: row-major weights handed out a chunk", d)
		}
	}
	var zero *blockAhead
	if zero.take() != nil || (&blockAhead{}).take() != nil {
		t.Fatal("nil or zero blockAhead handed out a chunk")
	}
}

// TestPrefetchKernelsSame: the micro-kernels that prefetch the next block
// compute exactly what the ones without do (the same FMAs in the same
// order), on whole 16-step groups and tails, fresh and accumulating.
func TestPrefetchKernelsSame(t *testing.T) {
	rng := rand.New(rand.NewPCG(47, 53))
	for _, ks := range Available() {
		if ks.gemmRowsPfB == nil || ks.gemmPfB == nil {
			continue
		}
		mr, nr := ks.mr, ks.nr
		for _, kc := range []int{1, 15, 16, 17, 100, 448} {
			const lda = 1000
			a, b, ap, pb := randVec(rng, mr*lda), randVec(rng, kc*nr), randVec(rng, kc*mr), make([]float32, 16*kc)
			for _, acc := range []int{0, 1} {
				c0 := randVec(rng, mr*nr)
				want, got := append([]float32(nil), c0...), append([]float32(nil), c0...)
				ks.gemmRowsPf(kc, &a[0], lda, &b[0], &a[1], &want[0], nr, acc)
				ks.gemmRowsPfB(kc, &a[0], lda, &b[0], &a[1], unsafe.Pointer(&pb[0]), &got[0], nr, acc)
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("%s rows kc=%d acc=%d: out %d %g, want %g", ks.Name(), kc, acc, i, got[i], want[i])
					}
				}
				want, got = append(want[:0], c0...), append(got[:0], c0...)
				ks.gemm(kc, &ap[0], mr, &b[0], nr, &want[0], nr, acc)
				ks.gemmPfB(kc, &ap[0], mr, &b[0], nr, unsafe.Pointer(&pb[0]), &got[0], nr, acc)
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("%s packed kc=%d acc=%d: out %d %g, want %g", ks.Name(), kc, acc, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestMatMulFetchAhead: products that prefetch their next weight blocks
// (fetchAhead, pinned geometry), over several column and depth blocks a
// worker, activations in place and packed (K = 1024 with 16 tiles a
// panel), rows off the tiles, equal the reference on every set and dtype.
func TestMatMulFetchAhead(t *testing.T) {
	rng := rand.New(rand.NewPCG(59, 61))
	for _, p := range pinnedPools(t) {
		ks := p.Kernels()
		for _, d := range []DType{F32, F16, BF16} {
			for _, sh := range [][3]int{{60, 700, 3000}, {40, 1024, 1100}, {37, 1500, 2100}} {
				n, k, o := sh[0], sh[1], sh[2]
				w, x := Pack(randMat(rng, d, o, k)), randVec(rng, n*k)
				kc, nc, _ := packedBlocks(p, ks, n, w)
				if productRoute(p, ks, n, w) != routePacked || (ks.gemmRowsPfB != nil) != fetchAhead(ks, n, kc, nc) {
					t.Fatalf("%s %v: route %v, fetchAhead %v", ks.Name(), sh, productRoute(p, ks, n, w), fetchAhead(ks, n, kc, nc))
				}
				want, mag := refMatMul(x, n, w)
				dst := randVec(rng, n*o)
				MatMul(p, dst, x, n, w)
				for j := range want {
					if diff := math.Abs(float64(dst[j]) - want[j]); diff > 1e-5*mag[j]+1e-6 {
						t.Fatalf("%s/%s %v out %d: got %g want %g", ks.Name(), d, sh, j, dst[j], want[j])
					}
				}
			}
		}
	}
}

package kernels

import "unsafe"

// gemvMaxRows is the largest activation count served by the matrix-vector path,
// which streams each weight row once and widens it on the fly instead of packing
// it. Measured on 896×4864 (bf16 and f32): the packed product only wins from
// about 24 rows, where packing the weights is amortised.
const gemvMaxRows = 16

// gemvMaxRows16 is the same bound for 16-bit weights on the exact path, where
// the set multiplies four weight rows by four activation rows at a time
// (gemv44F16, gemv44BF16s): packing 16-bit weights costs a widening pass and
// writes twice their bytes, while the matrix-vector path reads them at half
// the f32 bytes, so it serves up to 32 rows (a batch of 32 decoding
// sequences). BenchmarkBatchedDecode alternates both paths at 32 rows: the
// matrix-vector one ran 1.0–3.2× the packed one for bf16 and f16 (and 0.84×
// for f32, which keeps gemvMaxRows).
const gemvMaxRows16 = 32

// matVecRows is the largest n that MatMul serves with matVec for weights of
// dtype d.
func matVecRows(p *Pool, ks *Kernels, d DType) int {
	switch {
	case d == F16 && ks.gemv44F16 != nil, d == BF16 && ks.gemv44BF16s != nil && (p == nil || !p.bf16Dot):
		return gemvMaxRows16
	}
	return gemvMaxRows
}

// MatMul computes dst[i*w.Rows+o] = Σ_c x[i*w.Cols+c] · W[o][c] for i < n: n
// activation rows times the transposed weight matrix. dst is overwritten. Weights
// are read in their stored dtype and widened exactly to f32 (unless the Pool opted
// into FastBF16); accumulation is f32. Work is split over output features so each
// worker streams its slice of W once.
func MatMul(p *Pool, dst, x []float32, n int, w Mat) {
	if n <= 0 || w.Rows == 0 {
		return
	}
	// The assembly reads whole rows past the Go bounds checks, so a short backing
	// slice must stop here rather than read out of bounds.
	if err := w.Validate(); err != nil {
		panic("kernels: MatMul: " + err.Error())
	}
	_ = dst[n*w.Rows-1]
	if w.Cols == 0 {
		clear(dst[:n*w.Rows])
		return
	}
	_ = x[n*w.Cols-1]
	ks := p.Kernels()
	if w.DType.Quantized() {
		matMulQuant(p, ks, dst, x, n, w)
		return
	}
	switch productRoute(p, ks, n, w) {
	case routePanelsSmall:
		matMulPanelsSmall(p, ks, dst, x, n, w)
	case routeMatVec:
		matVec(p, ks, dst, x, n, w)
	case routeBF16Dot:
		matMulBF16Dot(p, ks, dst, x, n, w)
	case routeRows:
		matMulRows(p, ks, dst, x, n, w)
	default:
		matMulPacked(p, ks, dst, x, n, w)
	}
}

// route is the way MatMul computes a (non-quantized) product.
type route int

const (
	routePacked      route = iota // matMulPacked: column split, blocked
	routeRows                     // matMulRows: row split, weights in L2
	routePanelsSmall              // matMulPanelsSmall: ≤ 32 rows over panels
	routeMatVec                   // matVec: ≤ matVecRows rows, row-major
	routeBF16Dot                  // matMulBF16Dot: opt-in VDPBF16PS
)

func (r route) String() string {
	return [...]string{"cols", "rows", "panels-small", "matvec", "bf16dot"}[r]
}

// productRoute is the route MatMul takes for n activation rows over w (the
// benchmarks print it beside each shape's rate).
func productRoute(p *Pool, ks *Kernels, n int, w Mat) route {
	switch {
	case w.Panels && n <= panelSmallRows:
		return routePanelsSmall
	case !w.Panels && n <= matVecRows(p, ks, w.DType):
		return routeMatVec
	case w.DType == BF16 && p != nil && p.bf16Dot:
		return routeBF16Dot
	case n > w.Rows && rowsFit(ks, w.Rows, w.Cols):
		return routeRows
	}
	return routePacked
}

// matVec serves decode and batched decode: groups of four weight rows are
// streamed from memory once and dotted with the n (≤ matVecRows)
// activation rows, four at a time, while they are still in L1.
func matVec(p *Pool, ks *Kernels, dst, x []float32, n int, w Mat) {
	K, N := w.Cols, w.Rows
	k32 := K &^ 31
	groups := (N + 3) / 4
	has44 := (w.DType == F32 && ks.gemv44F32 != nil) || (w.DType == F16 && ks.gemv44F16 != nil) ||
		(w.DType == BF16 && ks.gemv44BF16 != nil)
	// For bf16 weights and four or more rows, the activations are split
	// even/odd once here (n·k32 floats) so that every weight group widens
	// with half the ops (gemv44BF16s).
	var xs []float32
	if k32 > 0 && n >= 4 && w.DType == BF16 && ks.gemv44BF16s != nil {
		buf := p.getBuf(n * k32)
		defer p.putBuf(buf)
		xs = *buf
		split := ks.splitEvenOdd
		if split == nil {
			split = splitEvenOdd
		}
		for i := 0; i < n; i++ {
			split(xs[i*k32:(i+1)*k32], x[i*K:i*K+k32])
		}
	}
	p.Run(groups, 16, func(lo, hi int) {
		// One result buffer per worker: it escapes (the kernels are func values),
		// so declaring it per group would allocate per group.
		res := new([20]float32)
		out, out16 := (*[4]float32)(res[:4]), (*[16]float32)(res[4:])
		// tail adds the columns past k32 to a kernel's sum s of row o and vector i.
		tail := func(s float32, o, i int) float32 {
			if k32 < K {
				s += rowDot(w, o, k32, K, x[i*K+k32:(i+1)*K])
			}
			return s
		}
		for g := lo; g < hi; g++ {
			o0 := g * 4
			if o0+4 > N {
				for o := o0; o < N; o++ {
					for i := 0; i < n; i++ {
						dst[i*N+o] = rowDot(w, o, 0, K, x[i*K:(i+1)*K])
					}
				}
				continue
			}
			i := 0
			if k32 > 0 && has44 {
				for ; i+4 <= n; i += 4 {
					switch {
					case w.DType == F32:
						ks.gemv44F32(k32, &w.F32[o0*K], K, &x[i*K], K, &out16[0])
					case w.DType == F16:
						ks.gemv44F16(k32, &w.U16[o0*K], K, &x[i*K], K, &out16[0])
					case xs != nil:
						ks.gemv44BF16s(k32, &w.U16[o0*K], K, &xs[i*k32], k32, &out16[0])
					default:
						ks.gemv44BF16(k32, &w.U16[o0*K], K, &x[i*K], K, &out16[0])
					}
					for r := 0; r < 4; r++ {
						for j := 0; j < 4; j++ {
							dst[(i+j)*N+o0+r] = tail(out16[4*r+j], o0+r, i+j)
						}
					}
				}
			}
			for ; i < n; i++ {
				xi := x[i*K : (i+1)*K]
				if k32 > 0 {
					switch w.DType {
					case F32:
						ks.gemv4F32(k32, &w.F32[o0*K], K, &xi[0], &out[0])
					case F16:
						ks.gemv4F16(k32, &w.U16[o0*K], K, &xi[0], &out[0])
					default:
						ks.gemv4BF16(k32, &w.U16[o0*K], K, &xi[0], &out[0])
					}
				} else {
					*out = [4]float32{}
				}
				for r := 0; r < 4; r++ {
					dst[i*N+o0+r] = tail(out[r], o0+r, i)
				}
			}
		}
	})
}

// splitEvenOdd copies src (a multiple of 32 long) into dst with each 32-block
// reordered as its 16 even elements then its 16 odd ones, the order in which
// gemv44BF16s widens a 32-weight load.
func splitEvenOdd(dst, src []float32) {
	dst = dst[:len(src)]
	for b := 0; b+32 <= len(src); b += 32 {
		s, d := (*[32]float32)(src[b:b+32]), (*[32]float32)(dst[b:b+32])
		for j := 0; j < 16; j++ {
			d[j], d[16+j] = s[2*j], s[2*j+1]
		}
	}
}

// rowDot is Σ_{c∈[c0,c1)} W[o][c]·x[c-c0] for tails and edge rows.
func rowDot(w Mat, o, c0, c1 int, x []float32) float32 {
	var s float32
	off := o * w.Cols
	switch w.DType {
	case F32:
		return dotGo(w.F32[off+c0:off+c1], x)
	case F16:
		for c := c0; c < c1; c++ {
			s += F16ToF32(w.U16[off+c]) * x[c-c0]
		}
	default:
		for c := c0; c < c1; c++ {
			s += BF16ToF32(w.U16[off+c]) * x[c-c0]
		}
	}
	return s
}

// blocking chooses the depth kc and the width nc of the packed blocks of a
// product with inner dimension K whose packed elements take elem bytes, from
// the cache sizes of the kernel set's machine (the same rule for every shape):
//   - the mr×kc activation micro-panel takes at most half of L1d, so it stays
//     there while the weight micro-panels stream past it: kc ≤ L1d/2/(mr·elem),
//     and K is split into equal blocks under that bound;
//   - the nc×kc packed weight block takes at most half of L2, leaving the rest
//     for the activation panels and output tiles passing through: nc ≤
//     L2/2/(kc·elem), a multiple of nr.
//
// On the test machine (48 KiB L1d, 2 MiB L2, f32, mr = 12) kc ≤ 512 and a
// 448-deep block is 576 wide. The previous fixed kc ≤ 1024, nc = 512 filled
// L1 with the micro-panel (K = 896 to 4864 gave 43–47 KiB) and nearly all of
// L2 with the weight block; alternated on the shapes of BenchmarkMatMulShapes
// by CPU time under load (docs/BENCHMARKS.md), kc ≈ 450–510 ran 4–10% faster
// than kc ≈ 900–1000 on the down and Llama shapes and level on the rest.
func blocking(ks *Kernels, K, elem int) (kc, nc int) {
	l1, l2 := ks.caches()
	kcMax := max(64, l1/2/(ks.mr*elem)&^15)
	nb := (K + kcMax - 1) / kcMax
	kc = max(1, (K+nb-1)/nb)
	nc = max(1, l2/2/(kc*elem)/ks.nr) * ks.nr
	return kc, nc
}

// matMulPacked is the Goto-style blocked product, split over output columns:
// each worker packs (and widens) blocks of kc×nc of its weight rows, sized by
// blocking to stay in its L2, and sweeps every activation panel over each
// block; the micro-kernel reads the panel's kc columns of activations in place
// (or, without gemmRows, packs them into an L1-sized buffer right before use),
// so the whole packed activation matrix is never written to memory and read
// back (40 MiB for 2048 rows of the 4864-wide down projection).
func matMulPacked(p *Pool, ks *Kernels, dst, x []float32, n int, w Mat) {
	kc, nc, inPlace := packedBlocks(p, ks, n, w)
	matMulPackedWith(p, ks, dst, x, n, w, kc, nc, inPlace)
}

// packedBlocks is matMulPacked's blocking of n rows over w: the block depth
// and width and whether activation panels are read in place.
func packedBlocks(p *Pool, ks *Kernels, n int, w Mat) (kc, nc int, inPlace bool) {
	kc, nc = blocking(ks, w.Cols, 4)
	nc = narrowForRows(ks, n, kc, nc, 4)
	// The tiles each activation panel serves: a block's width, or a
	// worker's share of the columns when that is narrower.
	unit := ks.nr
	if w.Panels {
		unit = PanelWidth
	}
	units := (w.Rows + unit - 1) / unit
	share := (units + min(p.Threads(), units) - 1) / min(p.Threads(), units) * unit
	return kc, nc, readInPlace(ks, w.Cols, min(nc, share)/ks.nr)
}

// narrowForRows is the weight block width nc for a product of n activation
// rows and kc-deep blocks of elem-byte weights: blocking's width, unless the
// n × kc activation block fits in a quarter of L2 (the 256-row LM heads and
// other short products). Then the activation block and the weight block
// share the half of L2 that blocking gives the weight block alone, so each
// worker's activation rows stay in L2 across its weight blocks instead of
// being read again from L3 for every block. Alternated by wall time on panel
// weights at 256 rows, the narrower block ran 1.02–1.03× (f32) and 0.99–
// 1.01× (bf16) on the LM heads and 1.00–1.03× on Mistral's down projection
// (docs/BENCHMARKS.md, issue 21 part S).
func narrowForRows(ks *Kernels, n, kc, nc, elem int) int {
	_, l2 := ks.caches()
	a := n * kc * 4
	if a > l2/4 {
		return nc
	}
	return min(nc, max(1, (l2/2-a)/(kc*elem)/ks.nr)*ks.nr)
}

// aliasPeriod is the address period of an L1d set on the x86 cores we run on
// (48 KiB 12-way and 32 KiB 8-way alike: 4 KiB), which is also the distance
// at which loads falsely wait on earlier stores (4K aliasing); cacheWays
// assumes it where sysfs does not give the associativity.
const aliasPeriod = 4096

// packTiles is the number of tiles an activation panel must serve before
// packing it pays for the aliasing it avoids (readInPlace).
const packTiles = 16

// readInPlace reports whether the micro-kernel reads an mr-row activation
// panel in place (rows K floats apart) rather than packing it, for a panel
// that serves tiles output tiles. Packing is chosen when more of the mr
// rows' values at one column fall in one L1 set than half its ways
// (rowsPerL1Set; with 12-row tiles on a 48 KiB 12-way L1d: K a multiple
// of 1024; on a 32 KiB 8-way one also an odd multiple of 512, 6 rows a
// set over its 4), so each step of the kernel evicts what
// the last one loaded, and the panel serves at least packTiles tiles, over
// which the packing is spread. Alternated on panel weights by wall time
// (docs/BENCHMARKS.md, issue 21 part S): with 16 tiles per panel packing
// ran 0.98–1.06×, 1.02× on average, against reading in place (the K =
// 2048–8192 shapes with 16: Llama-3.2-1B's Q/O, up and down, Phi-3's Q/O
// and down, Llama-3's and Llama-3.2-3B's K/V), with 8 level (Llama-3.2-
// 1B's K/V; Mistral's down projection has 8 after narrowForRows), with 4
// (Gemma-2B's K/V, 256 outputs over two workers) 0.92×; on the other
// shapes in place stays 1.01–1.11× ahead. The bound of 16 was set on those
// shapes, so they are the benchmark's tuned shapes, not held-out ones;
// only the 48 KiB 12-way geometry was measured.
func readInPlace(ks *Kernels, K, tiles int) bool {
	l1Ways, _ := ks.cacheWays()
	return rowsPerL1Set(ks, K) <= l1Ways/2 || tiles < packTiles
}

// rowsPerL1Set is how many of an mr-row panel's rows, K f32 values apart,
// share the L1d set of their values at one column: the rows' addresses
// repeat modulo the set period (L1d size over ways) every period/g rows,
// g = gcd(row stride, period).
func rowsPerL1Set(ks *Kernels, K int) int {
	l1d, _ := ks.caches()
	l1Ways, _ := ks.cacheWays()
	return sharingSet(ks.mr, 4*K, l1d/l1Ways)
}

// sharingSet is how many of n blocks stride bytes apart start in the same
// set of a cache whose sets repeat every period bytes.
func sharingSet(n, stride, period int) int {
	if period <= 0 {
		return n
	}
	g := gcd(stride, period)
	return (n*g + period - 1) / period
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// matMulPackedWith is matMulPacked with the block sizes given; inPlace lets
// the micro-kernel read activation rows in place (panelA) instead of packing
// them. Alternated by CPU time on the shapes of BenchmarkMatMulShapes under
// load, reading in place ran 1.01–1.11× packing on every shape, the most on
// the down projection (K = 4864) and the narrow outputs, where each packed
// panel serves few tiles.
func matMulPackedWith(p *Pool, ks *Kernels, dst, x []float32, n int, w Mat, kcB, ncMax int, inPlace bool) {
	K, N := w.Cols, w.Rows
	mr, nr := ks.mr, ks.nr
	panels := (n + mr - 1) / mr
	// unit is the column split's step: whole stored panels for a matrix in
	// panel layout, so that each worker's blocks start on one.
	unit := nr
	if w.Panels {
		unit = PanelWidth
	}
	nb := (N + unit - 1) / unit
	ahead0 := !p.noAhead && fetchAhead(ks, n, kcB, min(ncMax, (nb+p.Threads()-1)/p.Threads()*unit))
	// On the team: after another product the second worker starts from a
	// spinning helper; on Run it started 30–120 µs late, 3–4 % of a 3 ms
	// product (docs/BENCHMARKS.md, part Z).
	p.runTeamSplit(nb, func(lo, hi int) {
		c0, c1 := lo*unit, min(hi*unit, N)
		ncB := min(max(ncMax/unit, 1)*unit, (c1-c0+unit-1)/unit*unit)
		wpBuf := p.getBuf(ncB*kcB + nr*kcB + mr*nr + mr*kcB)
		defer p.putBuf(wpBuf)
		buf := *wpBuf
		wp, buf := buf[:ncB*kcB], buf[ncB*kcB:]
		rowBuf, buf := buf[:nr*kcB], buf[nr*kcB:]
		tile, ap := buf[:mr*nr], buf[mr*nr:]
		var ahead blockAhead
		for jc := c0; jc < c1; jc += ncB {
			nc := min(ncB, c1-jc)
			for pc := 0; pc < K; pc += kcB {
				kc := min(kcB, K-pc)
				blk := loadB(ks, wp, w, jc, nc, pc, kc, rowBuf)
				// The worker's next block: the next depth of these columns,
				// else the first depth of its next columns.
				njc, npc := jc, pc+kcB
				if npc >= K {
					njc, npc = jc+ncB, 0
				}
				if ahead0 {
					ahead = newBlockAhead(w, njc, min(ncB, c1-njc), npc, min(kcB, K-npc), aheadChunk(kc), n/mr*(nc/nr))
				}
				acc := 0
				if pc > 0 {
					acc = 1
				}
				for ip := 0; ip < panels; ip++ {
					rows := min(mr, n-ip*mr)
					if rows < mr && rows%4 == 0 && ks.gemm4Rows != nil {
						// A short last panel of whole 4-row groups: the 4-row
						// kernel on its rows in place rather than an mr-row
						// tile of mostly zero rows (n = 256 = 21·12 + 4).
						// Alternated by wall time: 1.01–1.035× on the 256-
						// and 512-row shapes but Llama-3.2-1B's K/V in f32
						// (0.98×; docs/BENCHMARKS.md, part S).
						for r := ip * mr; r < n; r += 4 {
							for jr := 0; jr < nc; jr += nr {
								tileCall(ks.gemm4Rows, 4, nr, kc, &x[r*K+pc], K, blk.at(jr), blk.width, dst, r*N+jc+jr, N, 4, min(nr, nc-jr), acc, tile)
							}
						}
						continue
					}
					a := panelA(ks, ap, x, n, K, ip*mr, pc, kc, inPlace).withNext(x, n, K, (ip+1)*mr, pc)
					for jr := 0; jr < nc; jr += nr {
						cols := min(nr, nc-jr)
						ci := ip*mr*N + jc + jr
						microTile(ks, kc, a, blk.at(jr), blk.width, dst, ci, N, rows, cols, acc, tile, &ahead)
					}
				}
			}
		}
	})
}

// microTile runs the micro-kernel on the output tile at dst[ci] (rows × cols of
// an mr × nr tile, row stride N), through the scratch tile when it is partial;
// acc != 0 adds to what is there. a is an activation panel as aPanel returns it,
// b the weight panel with rows ldb floats apart. A whole tile takes its share
// of ahead, the next weight block to prefetch (nil: none).
func microTile(ks *Kernels, kc int, a aPanel, b *float32, ldb int, dst []float32, ci, N, rows, cols, acc int, tile []float32, ahead *blockAhead) {
	mr, nr := ks.mr, ks.nr
	if rows == mr && cols == nr {
		a.gemm(ks, kc, b, ldb, &dst[ci], N, acc, ahead.take())
		return
	}
	if acc != 0 {
		for i := 0; i < rows; i++ {
			copy(tile[i*nr:i*nr+cols], dst[ci+i*N:ci+i*N+cols])
		}
	}
	a.gemm(ks, kc, b, ldb, &tile[0], nr, acc, nil)
	for i := 0; i < rows; i++ {
		copy(dst[ci+i*N:ci+i*N+cols], tile[i*nr:i*nr+cols])
	}
}

// aPanel is one mr-row activation panel over a kc block as the micro-kernel
// reads it: packed [kc][mr] (ld = mr) or, when inPlace, the rows of x
// themselves (ld = K, for ks.gemmRows).
type aPanel struct {
	p       *float32
	ld      int
	inPlace bool
	// pf, when not nil, is the next in-place panel's first row at the same
	// columns, for gemmRowsPf to prefetch.
	pf *float32
}

// gemm runs the micro-kernel that reads the panel as it is laid out, on B
// rows of nr values ldb floats apart ([kc][nr] packed when ldb = nr),
// prefetching aheadChunk(kc) bytes at pb into L2 where pb is not nil and the
// set has the kernel for it.
func (a aPanel) gemm(ks *Kernels, kc int, b *float32, ldb int, c *float32, ldc, acc int, pb unsafe.Pointer) {
	switch {
	case pb != nil && a.inPlace && ks.gemmRowsPfB != nil && ldb == ks.nr:
		// The last panel has no next one: it prefetches its own rows
		// (already in L1) to take its share of the block.
		pf := a.pf
		if pf == nil {
			pf = a.p
		}
		ks.gemmRowsPfB(kc, a.p, a.ld, b, pf, pb, c, ldc, acc)
	case pb != nil && !a.inPlace && ks.gemmPfB != nil:
		ks.gemmPfB(kc, a.p, a.ld, b, ldb, pb, c, ldc, acc)
	case a.pf != nil && ks.gemmRowsPf != nil && ldb == ks.nr:
		ks.gemmRowsPf(kc, a.p, a.ld, b, a.pf, c, ldc, acc)
	case a.inPlace:
		ks.gemmRows(kc, a.p, a.ld, b, ldb, c, ldc, acc)
	default:
		ks.gemm(kc, a.p, a.ld, b, ldb, c, ldc, acc)
	}
}

// fetchAhead reports whether matMulPackedWith prefetches each worker's next
// weight block (blockAhead) for n activation rows over kc × nc blocks: when
// the n × kc activation block stays in L2 (at most a quarter of it, as in
// narrowForRows) and two f32 weight blocks fit beside it, so that the next
// block arriving does not evict the current one or the activations. Then
// each block serves at most L2/(16·kc) rows (292 at kc = 448 on a 2 MiB
// L2), few enough that waiting on it from memory is a visible part of the
// product. Longer products stream their activations through L2 beside a
// block of half of it and have no room for a second; alternated there
// (2,048-row shapes, 512-row ones at kc = 512), the prefetch ran
// 0.97–1.01×.
func fetchAhead(ks *Kernels, n, kc, nc int) bool {
	_, l2 := ks.caches()
	a := n * kc * 4
	return ks.gemmRowsPfB != nil && a <= l2/4 && a+2*nc*kc*4 <= l2
}

// aheadChunk is how many bytes of the next weight block one tile's
// micro-kernel prefetches over kc steps (gemmRowsPfB, gemmPfB): four 64-byte
// lines per 16 steps. At kc = 448 that is 7 KiB a tile, 1/8 of an f32 panel
// piece (kc × 32 floats), 1/4 of a 16-bit one.
func aheadChunk(kc int) int { return kc / 16 * 256 }

// blockAhead hands the last whole tiles of a weight block, one chunk each,
// the next block's source to prefetch into L2 (the panels that loadB will
// read in place, copy or widen), so that the block after arrives while this
// one is multiplied. Measured (docs/BENCHMARKS.md, part Z): without it the
// first activation panel over each block ran at 40–55 GFLOP/s per core
// against 160–185 for the others, waiting on the block from memory: 13–19 %
// of a 256-row f32 product, whose blocks serve only n/12 ≈ 21 panels (and
// the 16-bit block's widening, loadB, 7–9 %), against 1–2 % at 2,048 rows.
// A burst of prefetches between tiles or panels held up the tiles' own
// loads as much as it saved (0.93–1.02×), so the micro-kernel issues a few
// lines per step group; the chunks go to the block's last tiles, so the
// prefetched lines wait in L2 the shortest time before they are used (ahead
// of the current block's, which the tiles keep touching, they are the first
// evicted). The zero value hands out nothing.
type blockAhead struct {
	base              unsafe.Pointer
	runs, stride, run int // runs contiguous runs of run bytes, stride apart
	chunk             int // bytes per chunk (aheadChunk)
	chunks, tiles     int // chunks in all, tiles that will ask
	r, off, asked     int // the next chunk's run and offset; tiles that asked
}

// newBlockAhead describes weight columns [jc, jc+nc) × depth [pc, pc+kc) of
// w in panel layout for tiles whole tiles, chunk bytes a tile (nothing where
// nc ≤ 0, chunk is 0 or w is row-major: its rows, a fraction of a chunk
// long, would need one prefetch stream per row).
func newBlockAhead(w Mat, jc, nc, pc, kc, chunk, tiles int) blockAhead {
	if !w.Panels || nc <= 0 || kc <= 0 || chunk <= 0 || tiles <= 0 {
		return blockAhead{}
	}
	K, elem := w.Cols, 4
	off := (jc/PanelWidth)*K*PanelWidth + pc*PanelWidth
	var base unsafe.Pointer
	if w.DType == F32 {
		base = unsafe.Pointer(&w.F32[off])
	} else {
		elem = 2
		base = unsafe.Pointer(&w.U16[off])
	}
	runs, run := (nc+PanelWidth-1)/PanelWidth, kc*PanelWidth*elem
	return blockAhead{base: base, runs: runs, stride: K * PanelWidth * elem, run: run, chunk: chunk,
		chunks: runs * ((run + chunk - 1) / chunk), tiles: tiles}
}

// take is the chunk for the tile that asks now, or nil: the last chunks of
// the tiles asking take one each (all of them, when there are more chunks
// than tiles; the rest are then not prefetched).
func (b *blockAhead) take() unsafe.Pointer {
	if b == nil || b.r >= b.runs {
		return nil
	}
	if b.asked++; b.asked <= b.tiles-b.chunks {
		return nil
	}
	p := unsafe.Add(b.base, b.r*b.stride+b.off)
	if b.off += b.chunk; b.off >= b.run {
		b.r, b.off = b.r+1, 0
	}
	return p
}

// withNext sets the panel to prefetch the rows of the panel at r0 (the one
// the worker runs next) when it is read in place. Alternated with cold
// activations by CPU time under load, the prefetch ran 1.15× on 2048 × 896 →
// 128, 1.10× on 2048 × 576 → 192, 1.09× on 2048 × 576 → 576, 1.02× on
// 2048 × 896 → 896 and 1.03× on the LM head: a narrow product reads its
// activations at 2N flops per 4 bytes, and the first tile of each panel
// otherwise waits on 12 row streams from memory. Prefetching the next weight
// block the same way (or in bursts before tiles or panels) made the LM heads
// 0.92–0.95×: it evicts the packed block that the tiles are reading.
func (a aPanel) withNext(x []float32, n, K, r0, pc int) aPanel {
	if a.inPlace && r0 < n {
		a.pf = &x[r0*K+pc]
	}
	return a
}

// panelA returns rows [r0, r0+mr) × columns [pc, pc+kc) of x for the
// micro-kernel: in place when the kernel set reads rows directly and the panel
// is whole (a short last panel reads past n, so it is packed with zero rows),
// else packed into ap (mr·kc floats).
func panelA(ks *Kernels, ap, x []float32, n, K, r0, pc, kc int, inPlace bool) aPanel {
	if inPlace && ks.gemmRows != nil && r0+ks.mr <= n {
		return aPanel{p: &x[r0*K+pc], ld: K, inPlace: true}
	}
	packA(ks, ap, x, n, K, r0, ks.mr, pc, kc)
	return aPanel{p: &ap[0], ld: ks.mr}
}

// matMulRows serves outputs with fewer columns than rows whose packed weights
// stay in L2 (the K/V projections under GQA, small models' Q/O): the split is
// over activation rows instead of output columns. Each worker then reads only
// its share of the activations, the larger operand, once, and the weights,
// the smaller, are packed once and shared; the column split has every worker
// read all the activations for its few tiles. Per worker the row split reads
// n·K/T + N·K values against the column split's n·K + N·K/T, so it reads less
// when n > N. The weights are packed in one parallel pass,
// [K/kc][N/nr][kc][nr], and each worker takes each of its panels through every
// kc block before the next panel, so it reads its activation rows once, front
// to back, with the next panel prefetched (one fork/join for the packing, one
// for the product). The activations are read in place where the set has
// gemmRows.
func matMulRows(p *Pool, ks *Kernels, dst, x []float32, n int, w Mat) {
	// Always in place: readInPlace's packing needs 16 tiles (N ≥ 512) of an
	// aliasing K (≥ 1024), 2 MiB of packed weights, which rowsFit sends to
	// the column split below an L2 of 2.67 MiB; it was never measured here.
	matMulRowsWith(p, ks, dst, x, n, w, true)
}

// rowsFit reports whether the N×K packed weights of the row split stay in L2
// with a quarter of it left for the activation rows and the tiles passing
// through. Measured with cold activations by CPU time under load: on
// 2048 × 576 → 576 (1.3 MiB packed) the row split ran 1.10× the column split;
// on larger matrices, which it must stream through in kc × nc blocks with a
// fork/join per block (or one per block and a barrier), it ran 0.93–1.04× by
// CPU time and down to 0.78× by wall time on a loaded machine (2048 × 1536 →
// 576), so those keep the column split.
func rowsFit(ks *Kernels, N, K int) bool {
	_, l2 := ks.caches()
	return (N+ks.nr-1)/ks.nr*ks.nr*K*4 <= l2/4*3
}

// matMulRowsWith is matMulRows with the activations packed (inPlace false)
// or read in place where the kernel set allows. Its passes go to the pool's
// team (runTeam), as decode's products do: a row-split product lasts 1.5–
// 10 ms, and Run's goroutine start — waking a parked thread — is a visible
// part of it. Alternated after another product, as in a forward, the team
// ran 1.00–1.07× Run on the rows-route shapes, f32 and bf16 (qwen-kv,
// smol-q/o, smol-kv, qwen1.5b-kv; docs/BENCHMARKS.md, issue 21 part S).
func matMulRowsWith(p *Pool, ks *Kernels, dst, x []float32, n int, w Mat, inPlace bool) {
	K, N := w.Cols, w.Rows
	mr, nr := ks.mr, ks.nr
	kcB, _ := blocking(ks, K, 4)
	npan := (N + nr - 1) / nr
	// bAt is where the weight panel of columns [jp·nr, jp·nr+nr) starts at
	// depth pc, its rows ldb floats apart.
	var bAt func(pc, kc, jp int) *float32
	ldb := nr
	if w.Panels {
		// Stored panels: f32 is read where it lies, 16-bit is widened once
		// into the same layout (N×K fits L2: rowsFit).
		src := w.F32
		if w.DType != F32 {
			q := (N + PanelWidth - 1) / PanelWidth
			wpBuf := p.getBuf(q * PanelWidth * K)
			defer p.putBuf(wpBuf)
			src = *wpBuf
			p.runTeam(q, 1, func(lo, hi int) { widenPanels(ks, src[lo*K*PanelWidth:], w, lo, hi-lo, 0, K) })
		}
		ldb = PanelWidth
		bAt = func(pc, _, jp int) *float32 {
			c := jp * nr
			return &src[(c/PanelWidth)*K*PanelWidth+pc*PanelWidth+c%PanelWidth]
		}
	} else {
		wpBuf := p.getBuf(npan * nr * K)
		defer p.putBuf(wpBuf)
		wp := *wpBuf
		blocks := (K + kcB - 1) / kcB
		p.runTeam(blocks*npan, 1, func(lo, hi int) {
			rowBuf := p.getBuf(nr * kcB)
			defer p.putBuf(rowBuf)
			for it := lo; it < hi; it++ {
				bi, jp := it/npan, it%npan
				pc := bi * kcB
				kc := min(kcB, K-pc)
				packB(ks, wp[pc*npan*nr+jp*kc*nr:], w, jp*nr, min(nr, N-jp*nr), pc, kc, nr, *rowBuf)
			}
		})
		bAt = func(pc, kc, jp int) *float32 { return &wp[pc*npan*nr+jp*kc*nr] }
	}
	panels := (n + mr - 1) / mr
	p.runTeam(panels, 1, func(lo, hi int) {
		buf := p.getBuf(mr*kcB + mr*nr)
		defer p.putBuf(buf)
		ap, tile := (*buf)[:mr*kcB], (*buf)[mr*kcB:]
		for ip := lo; ip < hi; ip++ {
			rows := min(mr, n-ip*mr)
			for pc := 0; pc < K; pc += kcB {
				kc := min(kcB, K-pc)
				acc := 0
				if pc > 0 {
					acc = 1
				}
				a := panelA(ks, ap, x, n, K, ip*mr, pc, kc, inPlace).withNext(x, n, K, (ip+1)*mr, pc)
				for jp := 0; jp < npan; jp++ {
					microTile(ks, kc, a, bAt(pc, kc, jp), ldb, dst, ip*mr*N+jp*nr, N, rows, min(nr, N-jp*nr), acc, tile, nil)
				}
			}
		}
	})
}

// packA writes columns [pc, pc+kc) of rows [r0, r0+mr) of x (zero beyond n)
// as [kc][mr].
func packA(ks *Kernels, dst, x []float32, n, K, r0, mr, pc, kc int) {
	if k16 := kc &^ 15; ks.packRows != nil && k16 > 0 && r0+mr <= n {
		// Full panel: 16-column blocks transposed in assembly, the tail here.
		ks.packRows(k16, &x[r0*K+pc], K, &dst[0])
		for i := 0; i < mr; i++ {
			row := x[(r0+i)*K+pc : (r0+i)*K+pc+kc]
			for c := k16; c < kc; c++ {
				dst[c*mr+i] = row[c]
			}
		}
		return
	}
	for i := 0; i < mr; i++ {
		r := r0 + i
		if r >= n {
			for c := 0; c < kc; c++ {
				dst[c*mr+i] = 0
			}
			continue
		}
		row := x[r*K+pc : r*K+pc+kc]
		for c, v := range row {
			dst[c*mr+i] = v
		}
	}
}

// packB writes weight rows [jc, jc+nc) × columns [pc, pc+kc) widened to f32 as
// panels [nc/nr][kc][nr], zero-padding the last panel. 16-bit rows are widened
// into rowBuf (nr×kc) first; the transposition then reads nr short row streams and
// writes the panel sequentially.
func packB(ks *Kernels, dst []float32, w Mat, jc, nc, pc, kc, nr int, rowBuf []float32) {
	K := w.Cols
	panels := (nc + nr - 1) / nr
	var rowsArr [32][]float32
	rows := rowsArr[:0]
	if nr > len(rowsArr) {
		rows = make([][]float32, 0, nr)
	}
	for jp := 0; jp < panels; jp++ {
		pan := dst[jp*kc*nr : (jp+1)*kc*nr]
		valid := min(nr, nc-jp*nr)
		o0 := jc + jp*nr
		if pp16 := ks.packPanelBF16; w.DType != F32 && valid == nr && kc >= 16 && pp16 != nil && ks.packPanelF16 != nil {
			// Full 16-bit panel: widened and transposed in one pass, the last
			// kc%16 columns here.
			if w.DType == F16 {
				pp16 = ks.packPanelF16
			}
			kc16 := kc &^ 15
			pp16(kc16, &w.U16[o0*K+pc], K, &pan[0])
			for r := 0; r < nr; r++ {
				row := w.U16[(o0+r)*K+pc : (o0+r)*K+pc+kc]
				for t := kc16; t < kc; t++ {
					if w.DType == F16 {
						pan[t*nr+r] = F16ToF32(row[t])
					} else {
						pan[t*nr+r] = BF16ToF32(row[t])
					}
				}
			}
			continue
		}
		if valid == nr && ks.packPanel != nil && kc >= 16 {
			// Full panel: widen 16-bit rows into rowBuf, transpose 16-column
			// blocks in assembly and the last kc%16 columns here.
			src, lds := rowBuf, kc
			if w.DType == F32 {
				src, lds = w.F32[o0*K+pc:], K
			} else {
				for r := 0; r < nr; r++ {
					o := o0 + r
					if w.DType == F16 {
						ks.f16F32(rowBuf[r*kc:(r+1)*kc], w.U16[o*K+pc:o*K+pc+kc])
					} else {
						ks.bf16F32(rowBuf[r*kc:(r+1)*kc], w.U16[o*K+pc:o*K+pc+kc])
					}
				}
			}
			kc16 := kc &^ 15
			ks.packPanel(kc16, &src[0], lds, &pan[0])
			for r := 0; r < nr; r++ {
				row := src[r*lds : r*lds+kc]
				for t := kc16; t < kc; t++ {
					pan[t*nr+r] = row[t]
				}
			}
			continue
		}
		rows = rows[:valid]
		for r := range rows {
			o := o0 + r
			switch w.DType {
			case F32:
				rows[r] = w.F32[o*K+pc : o*K+pc+kc]
			case F16:
				rows[r] = rowBuf[r*kc : (r+1)*kc]
				ks.f16F32(rows[r], w.U16[o*K+pc:o*K+pc+kc])
			default:
				rows[r] = rowBuf[r*kc : (r+1)*kc]
				ks.bf16F32(rows[r], w.U16[o*K+pc:o*K+pc+kc])
			}
		}
		if valid < nr {
			clear(pan)
		}
		for r, row := range rows {
			col := pan[r:]
			for t, v := range row {
				col[t*nr] = v
			}
		}
	}
}

// asU16 views a float32 scratch buffer as uint16 storage (twice as many elements).
func asU16(f []float32) []uint16 {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&f[0])), 2*len(f))
}

// Dot is the f32 inner product.
func Dot(a, b []float32) float32 { return defaultKernels.dot(a, b[:len(a)]) }

// Axpy computes y += a·x.
func Axpy(a float32, x, y []float32) { defaultKernels.axpy(a, x, y[:len(x)]) }

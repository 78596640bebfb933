package kernels

import "unsafe"

// panelBatchRows is the tile height of the batched panel kernels
// (gemmPanel8*): the activation rows that meet one widened weight row.
const panelBatchRows = 8

// panelBatchKC is the deepest piece of a panel one kernel call covers: a
// panel is streamed from memory by the first group of eight rows and read
// again from L2 by the others, so a piece (2,048 rows of 32: 128 KiB of
// 16-bit weights, 256 KiB of f32) and the rows' activations over it (64 KiB
// per group of eight, 8 × 2,048 × 4 bytes) must stay in L2 for the whole
// batch: about 384 KiB at 32 rows of 16-bit weights, 320 KiB at 8 of f32.
// Models up to 2,048 columns run in one piece, and each output then sums
// its K products in order, as the one-row kernels' quarters do within
// theirs.
const panelBatchKC = 2048

// panelBatchKernel is one eight-row panel product: c[i][0:32] (+)=
// Σ_{t<kc} x[i·ldx+t] · W[t][0:32] for i < 8, W the kc rows of the panel
// starting at element off of the matrix, c rows ldc floats apart; acc != 0
// adds to c. Along with the weights it prefetches the panel rows starting
// at element pfOff of the matrix (a hint: pfOff may lie past its end; the
// kernels' pf is that address).
type panelBatchKernel func(kc, off int, x []float32, ldx int, c []float32, ldc, acc, pfOff int)

// panelBatch returns the set's eight-row kernel for w's dtype (nil when the
// set has none): the AVX-512 set's in-register widening kernels, or the
// portable set's Go loop.
func panelBatch(ks *Kernels, w Mat) panelBatchKernel {
	// The prefetch address is computed, never dereferenced, in Go: a
	// uintptr, so that one past the matrix is no pointer the GC sees.
	f32 := uintptr(unsafe.Pointer(unsafe.SliceData(w.F32)))
	u16 := uintptr(unsafe.Pointer(unsafe.SliceData(w.U16)))
	switch {
	case w.DType == F32 && ks.gemmPanel8F32 != nil:
		return func(kc, off int, x []float32, ldx int, c []float32, ldc, acc, pfOff int) {
			ks.gemmPanel8F32(kc, &w.F32[off], &x[0], ldx, &c[0], ldc, acc, f32+uintptr(4*pfOff))
		}
	case w.DType == BF16 && ks.gemmPanel8BF16 != nil:
		return func(kc, off int, x []float32, ldx int, c []float32, ldc, acc, pfOff int) {
			ks.gemmPanel8BF16(kc, &w.U16[off], &x[0], ldx, &c[0], ldc, acc, u16+uintptr(2*pfOff))
		}
	case w.DType == F16 && ks.gemmPanel8F16 != nil:
		return func(kc, off int, x []float32, ldx int, c []float32, ldc, acc, pfOff int) {
			ks.gemmPanel8F16(kc, &w.U16[off], &x[0], ldx, &c[0], ldc, acc, u16+uintptr(2*pfOff))
		}
	case ks.name == "generic" && (w.DType == F32 || w.DType == BF16 || w.DType == F16):
		return func(kc, off int, x []float32, ldx int, c []float32, ldc, acc, _ int) {
			gemmPanel8Go(w, kc, off, x, ldx, c, ldc, acc)
		}
	}
	return nil
}

// panelBatchMax is the most activation rows matMulPanelsBatch serves for
// weights of dtype d. 16-bit panels: panelSmallRows, as the path it replaces
// (the widening pass and the GEMM kernels above 8 rows measured 0.5–1.1×
// the eight-row kernels). f32 panels need no widening, and above eight rows
// the GEMM path's 12-row kernel, which reads each weight row once for 12
// activation rows, ran 1.2× the eight-row kernels (BenchmarkBatchedDecode,
// 7B up, M = 16 and 32): the eight-row kernel serves f32 up to 8 rows
// (1.25× the GEMM path there).
func panelBatchMax(d DType) int {
	if d == F32 {
		return panelBatchRows
	}
	return panelSmallRows
}

// matMulPanelsBatch serves 2 to panelBatchMax activation rows over panel
// weights (a batched decode step): the work is split over panels, each
// panel is read once from memory in pieces of up to panelBatchKC rows, and
// every group of eight activation rows meets each piece with the weights
// widened in registers (no widened copy is written). A row count that is not
// a multiple of eight is padded with rows of zeros, copied once per call,
// whose outputs are dropped. It reports false, doing nothing, when the set
// has no kernel for w's dtype.
func matMulPanelsBatch(p *Pool, ks *Kernels, dst, x []float32, n int, w Mat) bool {
	kern := panelBatch(ks, w)
	if kern == nil || n < 2 || n > panelBatchMax(w.DType) {
		return false
	}
	K, N := w.Cols, w.Rows
	const pr, pw = panelBatchRows, PanelWidth
	xs := x
	if np := (n + pr - 1) / pr * pr; np != n {
		buf := p.getBuf(np * K)
		defer p.putBuf(buf)
		xs = *buf
		copy(xs, x[:n*K])
		clear(xs[n*K : np*K])
	}
	kcB := min(K, panelBatchKC)
	p.Run((N+pw-1)/pw, 1, func(lo, hi int) {
		var tile [pr * pw]float32
		for q := lo; q < hi; q++ {
			cols := min(pw, N-q*pw)
			for pc := 0; pc < K; pc += kcB {
				kc, acc := min(kcB, K-pc), 0
				if pc > 0 {
					acc = 1
				}
				off := q*K*pw + pc*pw
				// The group that streams the piece prefetches 32 panel rows
				// ahead in it; the others, which find it in cache, fetch the
				// next piece of this worker's; after its last they repeat
				// the first group's hint (lines already in cache: a wasted
				// hint, no more).
				next := off + 32*pw
				switch {
				case pc+kcB < K:
					next = off + kcB*pw
				case q+1 < hi:
					next = (q + 1) * K * pw
				}
				for r := 0; r < n; r += pr {
					rows, ci := min(pr, n-r), r*N+q*pw
					pfOff := next
					if r == 0 {
						pfOff = off + 32*pw
					}
					if rows == pr && cols == pw {
						kern(kc, off, xs[r*K+pc:], K, dst[ci:], N, acc, pfOff)
						continue
					}
					// A partial tile goes through the scratch tile.
					if acc != 0 {
						for i := 0; i < rows; i++ {
							copy(tile[i*pw:i*pw+cols], dst[ci+i*N:ci+i*N+cols])
						}
					}
					kern(kc, off, xs[r*K+pc:], K, tile[:], pw, acc, pfOff)
					for i := 0; i < rows; i++ {
						copy(dst[ci+i*N:ci+i*N+cols], tile[i*pw:i*pw+cols])
					}
				}
			}
		}
	})
	return true
}

// gemmPanel8Go is the portable set's eight-row panel product (see
// panelBatchKernel): each panel row is widened once and meets the eight
// rows' activations, every output summing its kc products in order.
func gemmPanel8Go(w Mat, kc, off int, x []float32, ldx int, c []float32, ldc, acc int) {
	const pr, pw = panelBatchRows, PanelWidth
	var sum [pr][pw]float32
	var row [pw]float32
	conv := BF16ToF32
	if w.DType == F16 {
		conv = F16ToF32
	}
	for t := 0; t < kc; t++ {
		if w.DType == F32 {
			copy(row[:], w.F32[off+t*pw:off+(t+1)*pw])
		} else {
			for j, v := range w.U16[off+t*pw : off+(t+1)*pw] {
				row[j] = conv(v)
			}
		}
		for i := range sum {
			xv, s := x[i*ldx+t], &sum[i]
			for j, v := range row {
				s[j] += xv * v
			}
		}
	}
	for i := range sum {
		out := c[i*ldc : i*ldc+pw]
		if acc != 0 {
			for j := range out {
				out[j] += sum[i][j]
			}
		} else {
			copy(out, sum[i][:])
		}
	}
}

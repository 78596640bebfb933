package kernels

import "fmt"

// PanelWidth is the number of output features per column panel of a weight
// matrix stored in panel layout (Mat.Panels): the AVX-512 micro-kernels'
// tile width nr. Sets with a narrower tile (16) read half a panel at a time
// with a row stride of PanelWidth, so one stored layout serves every set.
const PanelWidth = 32

// Pack returns m in panel layout: rows (output features) grouped by
// PanelWidth, each group stored column by column, [⌈Rows/32⌉][Cols][32], the
// last group padded with zero rows. This is the order in which the GEMM
// micro-kernels read the weights (B, one 32-wide row per step of the inner
// dimension), so a product no longer packs them per call (the packing took
// up to 15% of a worker's time on the narrow and LM-head shapes), and a
// decode step streams each panel front to back. The values are the same,
// permuted: products over m and Pack(m) are equal up to summation order.
// Quantized and already packed matrices are returned as they are. The new
// backing slice is allocated here; m's is not referenced after the call.
func Pack(m Mat) Mat {
	if m.Panels || m.DType.Quantized() || m.Rows == 0 || m.Cols == 0 {
		return m
	}
	K := m.Cols
	out := Mat{DType: m.DType, Rows: m.Rows, Cols: K, Panels: true}
	size := panelRows(m.Rows) * K
	switch m.DType {
	case F32:
		out.F32 = make([]float32, size)
		for o := 0; o < m.Rows; o++ {
			base, j := (o/PanelWidth)*K*PanelWidth, o%PanelWidth
			for c, v := range m.F32[o*K : (o+1)*K] {
				out.F32[base+c*PanelWidth+j] = v
			}
		}
	default:
		out.U16 = make([]uint16, size)
		for o := 0; o < m.Rows; o++ {
			base, j := (o/PanelWidth)*K*PanelWidth, o%PanelWidth
			for c, v := range m.U16[o*K : (o+1)*K] {
				out.U16[base+c*PanelWidth+j] = v
			}
		}
	}
	return out
}

// RowMajor returns m with rows stored one after another: m itself unless it
// is in panel layout, else a new copy (for consumers that upload or write
// the matrix as a whole, such as the GPU backend).
func (m Mat) RowMajor() Mat {
	if !m.Panels {
		return m
	}
	K := m.Cols
	out := Mat{DType: m.DType, Rows: m.Rows, Cols: K}
	switch m.DType {
	case F32:
		out.F32 = make([]float32, m.Rows*K)
	default:
		out.U16 = make([]uint16, m.Rows*K)
	}
	for o := 0; o < m.Rows; o++ {
		base, j := (o/PanelWidth)*K*PanelWidth, o%PanelWidth
		for c := 0; c < K; c++ {
			if m.DType == F32 {
				out.F32[o*K+c] = m.F32[base+c*PanelWidth+j]
			} else {
				out.U16[o*K+c] = m.U16[base+c*PanelWidth+j]
			}
		}
	}
	return out
}

// Index is where the element at row-major position i (row i/Cols, column
// i%Cols) is stored in m's slice.
func (m Mat) Index(i int) int {
	if !m.Panels {
		return i
	}
	o, c := i/m.Cols, i%m.Cols
	return (o/PanelWidth)*m.Cols*PanelWidth + c*PanelWidth + o%PanelWidth
}

// panelRows is rows rounded up to whole panels.
func panelRows(rows int) int { return (rows + PanelWidth - 1) / PanelWidth * PanelWidth }

// validatePanels checks the backing slice of a panel-layout matrix.
func (m Mat) validatePanels() error {
	n := panelRows(m.Rows) * m.Cols
	switch m.DType {
	case F32:
		if len(m.F32) != n {
			return fmt.Errorf("f32 panel matrix %dx%d has %d elements, want %d", m.Rows, m.Cols, len(m.F32), n)
		}
	case F16, BF16:
		if len(m.U16) != n {
			return fmt.Errorf("%s panel matrix %dx%d has %d elements, want %d", m.DType, m.Rows, m.Cols, len(m.U16), n)
		}
	default:
		return fmt.Errorf("panel layout is for f32, f16 and bf16 matrices, not %v", m.DType)
	}
	return nil
}

// panelRowF32 writes row o of a panel-layout matrix widened to f32 into dst
// (len Cols): one strided gather (embedding lookups, edge rows).
func (k *Kernels) panelRowF32(m Mat, o int, dst []float32) {
	K := m.Cols
	base := (o/PanelWidth)*K*PanelWidth + o%PanelWidth
	dst = dst[:K]
	switch m.DType {
	case F32:
		for c := range dst {
			dst[c] = m.F32[base+c*PanelWidth]
		}
	case F16:
		for c := range dst {
			dst[c] = F16ToF32(m.U16[base+c*PanelWidth])
		}
	default:
		for c := range dst {
			dst[c] = BF16ToF32(m.U16[base+c*PanelWidth])
		}
	}
}

// panelSmallRows is the largest activation count that matMulPanelsSmall
// serves: decode and batched decode (up to 32 sequences), where each worker
// streams its panels once and every activation row meets each piece of a
// panel while it is in L1.
const panelSmallRows = 32

// panelSmallKC is the depth of the pieces matMulPanelsSmall cuts a panel
// into: 256 × 32 f32 (32 KiB, a 16-bit panel's piece widened) stays in L1
// while the activation rows pass over it.
const panelSmallKC = 256

// bBlock is a kc-deep block of weight panels as the micro-kernel reads it:
// the panel holding block column jr starts at buf[off + (jr/width)·pstride +
// jr%width], its rows width floats apart.
type bBlock struct {
	buf                 []float32
	off, pstride, width int
}

func (b bBlock) at(jr int) *float32 { return &b.buf[b.off+(jr/b.width)*b.pstride+jr%b.width] }

// loadB returns weight columns [jc, jc+nc) × depth [pc, pc+kc) for the
// micro-kernel: packed (and widened) into wp from a row-major matrix; read
// where they lie from f32 panels, unless copyPanels says to copy them into
// wp; widened into wp, panel by panel, a contiguous run each, from 16-bit
// panels (jc a multiple of PanelWidth).
func loadB(ks *Kernels, wp []float32, w Mat, jc, nc, pc, kc int, rowBuf []float32) bBlock {
	if !w.Panels {
		packB(ks, wp, w, jc, nc, pc, kc, ks.nr, rowBuf)
		return bBlock{wp, 0, kc * ks.nr, ks.nr}
	}
	K, q0, pieces := w.Cols, jc/PanelWidth, (nc+PanelWidth-1)/PanelWidth
	if w.DType == F32 && !copyPanels(ks, K, pieces) {
		return bBlock{w.F32, q0*K*PanelWidth + pc*PanelWidth, K * PanelWidth, PanelWidth}
	}
	widenPanels(ks, wp, w, q0, pieces, pc, kc)
	return bBlock{wp, 0, kc * PanelWidth, PanelWidth}
}

// copyPanels reports whether loadB copies a block of pieces f32 panel
// pieces of depth K into the worker's buffer rather than reading them in
// place: when more of them start in one L2 set than half its ways (panels
// K·128 B apart; on a 2 MiB 16-way L2, whose sets repeat every 128 KiB,
// K a multiple of 1024 puts them all in one set and the bound is 8 pieces).
// Read in place, such pieces evict each other, so every activation panel
// reads part of the block from L3 again; the other half of the ways is
// left to the activation panels and output tiles that pass through the
// same sets. Alternated by wall time in two runs (docs/BENCHMARKS.md,
// issue 21 part S), the copy ran 1.00–1.08× on the shapes with 16 pieces
// (Llama-3.2-1B's Q/O, up and down, Phi-3's Q/O and down, Llama-3's and
// Llama-3.2-3B's K/V) and 0.96× with 8 (Llama-3.2-1B's K/V, which stays in
// place, as do Mistral's down projection, 8 pieces after narrowForRows,
// and Gemma-2B's K/V, 4); only the 2 MiB 16-way geometry was measured.
func copyPanels(ks *Kernels, K, pieces int) bool {
	_, l2 := ks.caches()
	_, l2Ways := ks.cacheWays()
	return sharingSet(pieces, K*PanelWidth*4, l2/l2Ways) > l2Ways/2
}

// widenPanels writes depth [pc, pc+kc) of the panels [q0, q0+nq) widened
// to f32 (f32 ones copied) into dst, kc × PanelWidth floats per panel.
func widenPanels(ks *Kernels, dst []float32, w Mat, q0, nq, pc, kc int) {
	K := w.Cols
	if w.DType == F32 {
		for q := 0; q < nq; q++ {
			copy(dst[q*kc*PanelWidth:(q+1)*kc*PanelWidth], w.F32[(q0+q)*K*PanelWidth+pc*PanelWidth:])
		}
		return
	}
	conv := ks.bf16F32
	if w.DType == F16 {
		conv = ks.f16F32
	}
	for q := 0; q < nq; q++ {
		src := w.U16[(q0+q)*K*PanelWidth+pc*PanelWidth:][:kc*PanelWidth]
		conv(dst[q*kc*PanelWidth:(q+1)*kc*PanelWidth], src)
	}
}

// matMulPanelsSmall serves up to panelSmallRows activation rows over panel
// weights: the work is split over panels, and each panel is taken in
// panelSmallKC-deep pieces (16-bit ones widened into L1 first) that every
// activation row is multiplied with before the next piece — 12 rows at a
// time through the GEMM micro-kernel, then 4, then single rows (the 4-row
// kernel reading one row four times), so a lone decode step reads the
// weights once at the 4-row kernel's cost and a batch of 8 to 32 at the
// GEMM kernels' rate.
func matMulPanelsSmall(p *Pool, ks *Kernels, dst, x []float32, n int, w Mat) {
	// A set with eight-row panel kernels widens in registers instead
	// (panels_batch.go); the pieces below serve the others.
	if n > 1 && matMulPanelsBatch(p, ks, dst, x, n, w) {
		return
	}
	K, N := w.Cols, w.Rows
	mr, nr := ks.mr, ks.nr
	const pw = PanelWidth
	kcB := min(K, panelSmallKC)
	npan := (N + pw - 1) / pw
	p.Run(npan, 1, func(lo, hi int) {
		var parts [3][]float32
		sb := p.getScratch([]int{kcB * pw, max(mr, 4) * nr, mr * kcB}, parts[:])
		defer p.putBuf(sb)
		wb, tile, ap := parts[0], parts[1], parts[2]
		for q := lo; q < hi; q++ {
			cols := min(pw, N-q*pw)
			if n == 1 && gemvPanel(ks, w, q, x, tile) {
				copy(dst[q*pw:q*pw+cols], tile[:cols])
				continue
			}
			for pc := 0; pc < K; pc += kcB {
				kc := min(kcB, K-pc)
				b := wb
				if w.DType == F32 {
					b = w.F32[q*K*pw+pc*pw:]
				} else {
					widenPanels(ks, wb, w, q, 1, pc, kc)
				}
				acc := 0
				if pc > 0 {
					acc = 1
				}
				for sub := 0; sub < cols; sub += nr {
					c := min(nr, cols-sub)
					ci := q*pw + sub
					r := 0
					if ks.gemmRows != nil {
						for ; r+mr <= n; r += mr {
							tileCall(ks.gemmRows, mr, nr, kc, &x[r*K+pc], K, &b[sub], pw, dst, r*N+ci, N, mr, c, acc, tile)
						}
					}
					if ks.gemm4Rows != nil {
						for ; r+4 <= n; r += 4 {
							tileCall(ks.gemm4Rows, 4, nr, kc, &x[r*K+pc], K, &b[sub], pw, dst, r*N+ci, N, 4, c, acc, tile)
						}
						for ; r < n; r++ {
							tileCall(ks.gemm4Rows, 4, nr, kc, &x[r*K+pc], 0, &b[sub], pw, dst, r*N+ci, N, 1, c, acc, tile)
						}
					}
					for ; r < n; r += mr {
						packA(ks, ap, x, n, K, r, mr, pc, kc)
						tileCall(ks.gemm, mr, nr, kc, &ap[0], mr, &b[sub], pw, dst, r*N+ci, N, min(mr, n-r), c, acc, tile)
					}
				}
			}
		}
	})
}

// tileCall runs kern, a kr × nr micro-kernel, on the output tile at dst[ci]
// (rows × cols valid, row stride N), through the scratch tile when it is
// partial; acc != 0 adds to what is there.
func tileCall(kern func(kc int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, acc int),
	kr, nr, kc int, a *float32, lda int, b *float32, ldb int, dst []float32, ci, N, rows, cols, acc int, tile []float32) {
	if rows == kr && cols == nr {
		kern(kc, a, lda, b, ldb, &dst[ci], N, acc)
		return
	}
	if acc != 0 {
		for i := 0; i < rows; i++ {
			copy(tile[i*nr:i*nr+cols], dst[ci+i*N:ci+i*N+cols])
		}
	}
	kern(kc, a, lda, b, ldb, &tile[0], nr, acc)
	for i := 0; i < rows; i++ {
		copy(dst[ci+i*N:ci+i*N+cols], tile[i*nr:i*nr+cols])
	}
}

// gemvPanel writes out[0:32] = x · panel q of w with the set's one-row panel
// kernel, reporting false when the set has none for w's dtype.
func gemvPanel(ks *Kernels, w Mat, q int, x, out []float32) bool {
	K := w.Cols
	off := q * K * PanelWidth
	switch {
	case w.DType == F32 && ks.gemvPanelF32 != nil:
		ks.gemvPanelF32(K, &w.F32[off], &x[0], &out[0], 0)
	case w.DType == BF16 && ks.gemvPanelBF16 != nil:
		ks.gemvPanelBF16(K, &w.U16[off], &x[0], &out[0], 0)
	case w.DType == F16 && ks.gemvPanelF16 != nil:
		ks.gemvPanelF16(K, &w.U16[off], &x[0], &out[0], 0)
	case ks.name == "generic":
		// The portable set has no matrix–vector kernel of its own: its
		// micro-kernel would run one row padded to four (4× the
		// multiply-adds), so one row walks the panel in Go instead.
		gemvPanelGo(w, q, x, out)
	default:
		return false
	}
	return true
}

// gemvPanelGo is out[0:PanelWidth] = the product of row x with panel q of w:
// the panel's K rows of PanelWidth values, each scaled by its x value and
// summed in order over K.
func gemvPanelGo(w Mat, q int, x, out []float32) {
	K := w.Cols
	off := q * K * PanelWidth
	var acc [PanelWidth]float32
	switch w.DType {
	case F32:
		p := w.F32[off : off+K*PanelWidth]
		for c, xv := range x[:K] {
			row := p[c*PanelWidth : (c+1)*PanelWidth : (c+1)*PanelWidth]
			for j, v := range row {
				acc[j] += xv * v
			}
		}
	default:
		conv := BF16ToF32
		if w.DType == F16 {
			conv = F16ToF32
		}
		p := w.U16[off : off+K*PanelWidth]
		for c, xv := range x[:K] {
			row := p[c*PanelWidth : (c+1)*PanelWidth : (c+1)*PanelWidth]
			for j, v := range row {
				acc[j] += xv * conv(v)
			}
		}
	}
	copy(out, acc[:])
}

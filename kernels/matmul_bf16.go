package kernels

import "unsafe"

// matMulBF16Dot is the opt-in (PoolOptions.FastBF16) product for bf16 weights:
// activations are rounded to bf16 and VDPBF16PS multiplies pairs of bf16 at twice the
// f32 FMA rate, accumulating in f32. Rounding x to 8 significant bits gives errors of
// about 2⁻⁹ per product, ~1e-3 to 1e-2 relative on outputs.
func matMulBF16Dot(p *Pool, ks *Kernels, dst, x []float32, n int, w Mat) {
	K, N := w.Cols, w.Rows
	mr, nr := ks.mr, ks.nr
	Kp := (K + 1) / 2
	panels := (n + mr - 1) / mr
	// Each panel holds Kp pairs of mr bf16 values: Kp·mr·2 uint16 = Kp·mr floats.
	xpBuf := p.getBuf(panels * mr * Kp)
	defer p.putBuf(xpBuf)
	xp := asU16(*xpBuf)
	p.Run(panels, 4, func(lo, hi int) {
		rowBuf := p.getBuf(Kp)
		defer p.putBuf(rowBuf)
		for ip := lo; ip < hi; ip++ {
			packABF16(ks, xp[ip*mr*Kp*2:(ip+1)*mr*Kp*2], x, n, K, ip*mr, mr, asU16(*rowBuf))
		}
	})
	kcB, ncMax := blocking(ks, K, 2)
	kcB = (kcB + 1) &^ 1
	nb := (N + nr - 1) / nr
	p.Run(nb, 1, func(lo, hi int) {
		c0, c1 := lo*nr, min(hi*nr, N)
		ncB := min(ncMax, (c1-c0+nr-1)/nr*nr)
		wpBuf := p.getBuf(ncB*kcB/2 + mr*nr)
		defer p.putBuf(wpBuf)
		wp := asU16((*wpBuf)[:ncB*kcB/2])
		tile := (*wpBuf)[ncB*kcB/2:]
		for jc := c0; jc < c1; jc += ncB {
			nc := min(ncB, c1-jc)
			for pc := 0; pc < K; pc += kcB {
				kc := min(kcB, K-pc)
				kp := (kc + 1) / 2
				packBBF16(wp, w, jc, nc, pc, kc, nr)
				acc := 0
				if pc > 0 {
					acc = 1
				}
				for ip := 0; ip < panels; ip++ {
					a := &xp[ip*mr*Kp*2+(pc/2)*mr*2]
					rows := min(mr, n-ip*mr)
					for jr := 0; jr < nc; jr += nr {
						cols := min(nr, nc-jr)
						b := &wp[(jr/nr)*kp*nr*2]
						ci := ip*mr*N + jc + jr
						if rows == mr && cols == nr {
							ks.gemmBF16(kp, a, b, &dst[ci], N, acc)
							continue
						}
						if acc != 0 {
							for i := 0; i < rows; i++ {
								copy(tile[i*nr:i*nr+cols], dst[ci+i*N:ci+i*N+cols])
							}
						}
						ks.gemmBF16(kp, a, b, &tile[0], nr, acc)
						for i := 0; i < rows; i++ {
							copy(dst[ci+i*N:ci+i*N+cols], tile[i*nr:i*nr+cols])
						}
					}
				}
			}
		}
	})
}

// packABF16 writes rows [r0, r0+mr) of x rounded to bf16 as [Kp][mr][2]: each
// row is narrowed into rowBuf (Kp pairs) and its pairs, one 32-bit word each, are
// scattered mr words apart.
func packABF16(ks *Kernels, dst []uint16, x []float32, n, K, r0, mr int, rowBuf []uint16) {
	Kp := (K + 1) / 2
	d32 := asU32(dst[:Kp*mr*2])
	for i := 0; i < mr; i++ {
		r := r0 + i
		if r >= n {
			for c := 0; c < Kp; c++ {
				d32[c*mr+i] = 0
			}
			continue
		}
		rb := rowBuf[:2*Kp]
		ks.f32BF16(rb[:K], x[r*K:(r+1)*K])
		if K&1 != 0 {
			rb[K] = 0
		}
		for c, v := range asU32(rb) {
			d32[c*mr+i] = v
		}
	}
}

// packBBF16 writes bf16 weight rows [jc, jc+nc) × columns [pc, pc+kc) as panels
// [nc/nr][kp][nr][2], zero-padding rows past the block and the odd last column.
// A row's column pairs are copied as 32-bit words (x86 allows the unaligned
// loads when the row starts at an odd element).
func packBBF16(dst []uint16, w Mat, jc, nc, pc, kc, nr int) {
	K := w.Cols
	kp := (kc + 1) / 2
	full := kc / 2
	panels := (nc + nr - 1) / nr
	for jp := 0; jp < panels; jp++ {
		pan := asU32(dst[jp*kp*nr*2 : (jp+1)*kp*nr*2])
		valid := min(nr, nc-jp*nr)
		if valid < nr {
			clear(pan)
		}
		if w.Panels {
			// Stored panels: the pair (c, c+1) of row o is two values
			// PanelWidth apart in o's panel.
			for r := 0; r < valid; r++ {
				o := jc + jp*nr + r
				col := w.U16[(o/PanelWidth)*K*PanelWidth+pc*PanelWidth+o%PanelWidth:]
				for t := 0; t < full; t++ {
					pan[t*nr+r] = uint32(col[2*t*PanelWidth]) | uint32(col[(2*t+1)*PanelWidth])<<16
				}
				if kc&1 != 0 {
					pan[full*nr+r] = uint32(col[(kc-1)*PanelWidth])
				}
			}
			continue
		}
		for r := 0; r < valid; r++ {
			o := jc + jp*nr + r
			seg := w.U16[o*K+pc : o*K+pc+kc]
			col := pan[r:]
			if full > 0 {
				for t, v := range unsafe.Slice((*uint32)(unsafe.Pointer(&seg[0])), full) {
					col[t*nr] = v
				}
			}
			if kc&1 != 0 {
				col[full*nr] = uint32(seg[kc-1])
			}
		}
	}
}

// asU32 views an even-length uint16 slice as 32-bit words (little-endian pairs).
func asU32(u []uint16) []uint32 {
	if len(u) < 2 {
		return nil
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(&u[0])), len(u)/2)
}

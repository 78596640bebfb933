package kernels

import (
	"math"
	"unsafe"
)

// The integer matrix–vector path (Mat.Q8Act): the activation row is rounded
// to 8-bit blocks of QuantBlock values with one f32 scale each (ggml's Q8_0
// activation, as llama.cpp multiplies its 4- and 8-bit weights), and every
// weight block is dotted with its activation block in integers (VPDPBUSD on
// AVX-512 VNNI: 64 byte products a instruction, against 16 f32 FMAs after an
// unpack on the exact path). Per block the float work is then one product:
//
//	Q8_0: d·dx·Σ q·qx
//	Q4_1: d·dx·Σ q·qx + m·Σx   (Σx the exact f32 sum of the activation block)
//
// The rounding of x to qx is the only numeric change: |x − dx·qx| ≤ dx/2 with
// dx = max|x_block|/127.
//
// Both kernel sets give the same bits: the integer sums are exact, and the
// float part is fixed as 16 f32 lanes, lane l taking the blocks b ≡ l (mod
// 16) in order, each block adding round(round(isum·S)) with S = round(d·dx)
// and then (Q4_1) round(m·sx) — separate multiplies and adds, no FMA —
// and the lanes summed by the tree of hsum16.

// q8Act is one activation row quantized for the integer kernels. Every slice
// is padded with zeros to nbPad = nb rounded up to 16 blocks, so the kernels
// read whole groups of 16 blocks.
type q8Act struct {
	qs []int8    // nbPad·32 quants
	d  []float32 // nbPad scales dx
	s  []float32 // nbPad exact f32 block sums Σx (Q4_1's minimums multiply them)
}

// q8Floats is the float32 scratch one q8Act of nb blocks takes (quants
// packed four to a float32 slot).
func q8Floats(nb int) int {
	nbPad := (nb + 15) &^ 15
	return nbPad*8 + 2*nbPad
}

// carveQ8 lays a q8Act for nb blocks over buf (len ≥ q8Floats(nb)).
func carveQ8(buf []float32, nb int) q8Act {
	nbPad := (nb + 15) &^ 15
	qs := unsafe.Slice((*int8)(unsafe.Pointer(&buf[0])), nbPad*32)
	return q8Act{qs: qs, d: buf[nbPad*8 : nbPad*9], s: buf[nbPad*9 : nbPad*10]}
}

// quantizeQ8 rounds x (len a multiple of QuantBlock) into a: per block
// dx = max|x|/127 and qx = round-half-even(x·(127/max|x|)), so the largest
// element maps to ±127 and no quant is −128 (the Q8_0 kernel negates them).
func quantizeQ8(a q8Act, x []float32) {
	nb := len(x) / QuantBlock
	for b := 0; b < nb; b++ {
		xb := x[b*32 : b*32+32]
		var amax, sum float32
		for _, v := range xb {
			amax = max(amax, float32(math.Abs(float64(v))))
			sum += v
		}
		q := a.qs[b*32 : b*32+32]
		a.s[b] = sum
		if amax == 0 || amax > math.MaxFloat32 || amax != amax {
			// Zero: every quant 0. Inf or NaN: a NaN scale, so the outputs
			// are NaN as an exact product's would be non-finite.
			a.d[b] = 0
			if amax != 0 {
				a.d[b] = float32(math.NaN())
			}
			clear(q)
			continue
		}
		a.d[b] = amax / 127
		inv := 127 / amax
		for j, v := range xb {
			q[j] = int8(math.RoundToEven(float64(v * inv)))
		}
	}
	clear(a.qs[nb*32:])
	clear(a.d[nb:])
	clear(a.s[nb:])
}

// isumQ41 is Σ q·qx over one Q4_1 block: byte j of the 16 holds element j in
// its low nibble and element j+16 in its high one.
func isumQ41(qs []byte, x []int8) int32 {
	var s int32
	for j, q := range qs[:16] {
		s += int32(q&0xF)*int32(x[j]) + int32(q>>4)*int32(x[j+16])
	}
	return s
}

func isumQ80(qs []byte, x []int8) int32 {
	var s int32
	for j, q := range qs[:32] {
		s += int32(int8(q)) * int32(x[j])
	}
	return s
}

// hsum16 adds the 16 lanes in the order of the assembly's QHSUM: halves of
// 512, then of 256 bits, then two horizontal pair adds.
func hsum16(l *[16]float32) float32 {
	var y [8]float32
	for i := range y {
		y[i] = l[i] + l[i+8]
	}
	var z [4]float32
	for i := range z {
		z[i] = y[i] + y[i+4]
	}
	return (z[0] + z[1]) + (z[2] + z[3])
}

// dotQ8Row is one planar row of nb blocks against a: the fixed order of the
// package comment above.
func dotQ8Row(dt DType, row []byte, nb int, a q8Act) float32 {
	var lanes [16]float32
	nbPad := (nb + 15) &^ 15
	for b := 0; b < nbPad; b++ {
		var isum int32
		var d, m float32
		if b < nb {
			switch dt {
			case Q4_1:
				isum = isumQ41(row[b*16:], a.qs[b*32:])
				d, m = f16At(row[nb*16:], b), f16At(row[nb*18:], b)
			case Q8_0:
				isum = isumQ80(row[b*32:], a.qs[b*32:])
				d = f16At(row[nb*32:], b)
			}
		}
		l := &lanes[b%16]
		s := float32(d * a.d[b])
		*l += float32(float32(isum) * s)
		if dt == Q4_1 {
			*l += float32(m * a.s[b])
		}
	}
	return hsum16(&lanes)
}

func gemv4Q8Generic(dt DType) func(nb int, w *byte, ldw int, xq *int8, xd, sx, out *float32) {
	return func(nb int, w *byte, ldw int, xq *int8, xd, sx, out *float32) {
		nbPad := (nb + 15) &^ 15
		rb := QuantRowBytes(dt, nb*QuantBlock)
		all := rowBytes(w, 3*ldw+rb)
		a := q8Act{qs: unsafe.Slice(xq, nbPad*32), d: floats(xd, nbPad), s: floats(sx, nbPad)}
		o := floats(out, 4)
		for r := 0; r < 4; r++ {
			o[r] = dotQ8Row(dt, all[r*ldw:r*ldw+rb], nb, a)
		}
	}
}

// matVecQ8 is matVecQuant for a Q8Act matrix: each activation row is
// quantized once, then every group of four weight rows is dotted with it in
// integers. A last group of one to three rows repeats its final row (ldw 0
// for the missing ones), so the kernels never read past the matrix.
func matVecQ8(p *Pool, ks *Kernels, dst, x []float32, n int, w Mat) {
	K, N := w.Cols, w.Rows
	nb := K / QuantBlock
	rb := QuantRowBytes(w.DType, K)
	per := q8Floats(nb)
	buf := p.getBuf(n * per)
	defer p.putBuf(buf)
	acts := make([]q8Act, n)
	for i := range acts {
		acts[i] = carveQ8((*buf)[i*per:(i+1)*per], nb)
		quantizeQ8(acts[i], x[i*K:(i+1)*K])
	}
	gemv := ks.quant().gemv4Q8[w.DType]
	groups := (N + 3) / 4
	p.runTeam(groups, 16, func(lo, hi int) {
		var out [4]float32
		for g := lo; g < hi; g++ {
			o0 := g * 4
			rows := min(4, N-o0)
			for i, a := range acts {
				if rows == 4 {
					gemv(nb, &w.Q[o0*rb], rb, &a.qs[0], &a.d[0], &a.s[0], &out[0])
					copy(dst[i*N+o0:i*N+o0+4], out[:])
					continue
				}
				for r := 0; r < rows; r++ {
					gemv(nb, &w.Q[(o0+r)*rb], 0, &a.qs[0], &a.d[0], &a.s[0], &out[0])
					dst[i*N+o0+r] = out[0]
				}
			}
		}
	})
}

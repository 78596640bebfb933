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

// quantizeQ8 rounds x (len a multiple of QuantBlock) into a with ks's
// routine and zeroes a's padding.
func (k *quantKernels) quantizeQ8(a q8Act, x []float32) {
	nb := len(x) / QuantBlock
	if nb > 0 {
		k.quantize(nb, &x[0], &a.qs[0], &a.d[0], &a.s[0])
	}
	clear(a.qs[nb*32:])
	clear(a.d[nb:])
	clear(a.s[nb:])
}

// q8NaN is the scale of a block holding an Inf or NaN: its outputs are NaN,
// as an exact product's would be non-finite.
const q8NaN = 0x7fc00000

// q8TinyBits is 2⁻¹²⁰ as bits: a block whose largest magnitude is below it
// counts as zero (scale 0, quants 0), since 127/amax would overflow to +Inf
// there and the quants would be NaN·0 — garbage that the two quantizers
// turned into different bytes. The values dropped are below 1e-36.
const q8TinyBits = 0x03800000

// quantizeQ8Go is the portable quantizer; the assembly one gives the same
// bits. Per block: s = the f32 sum in hsum16's order over the lanes
// x[l] + x[l+16]; amax = max|x| (compared as bit patterns, so an Inf or NaN
// anywhere is seen); dx = amax/127 and qx = round-half-even(x·(127/amax)),
// so the largest element maps to ±127 and no quant is −128; a block with
// amax < 2⁻¹²⁰ (q8TinyBits) is all zero quants with scale 0.
func quantizeQ8Go(nb int, xp *float32, qp *int8, dp, sp *float32) {
	x, qs, d, s := floats(xp, nb*32), unsafe.Slice(qp, nb*32), floats(dp, nb), floats(sp, nb)
	for b := 0; b < nb; b++ {
		xb := x[b*32 : b*32+32]
		var lanes [16]float32
		var bits uint32
		for l := 0; l < 16; l++ {
			lanes[l] = xb[l] + xb[l+16]
			bits = max(bits, math.Float32bits(xb[l])&0x7fffffff, math.Float32bits(xb[l+16])&0x7fffffff)
		}
		s[b] = hsum16(&lanes)
		q := qs[b*32 : b*32+32]
		switch {
		case bits < q8TinyBits:
			d[b] = 0
			clear(q)
			continue
		case bits >= 0x7f800000:
			d[b] = math.Float32frombits(q8NaN)
			clear(q)
			continue
		}
		amax := math.Float32frombits(bits)
		d[b] = amax / 127
		inv := 127 / amax
		for j, v := range xb {
			// Round half to even in f32: |v| ≤ 127 < 2²², so adding
			// 1.5·2²³ leaves units in the last place (the conversions keep
			// the compiler from fusing or widening).
			r := float32(float32(v*inv)+12582912) - 12582912
			q[j] = int8(r)
		}
	}
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

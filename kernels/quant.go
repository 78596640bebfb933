package kernels

import (
	"encoding/binary"
	"fmt"
	"unsafe"
)

// Block-quantized weight types, held as Mat.Q in a planar layout of this
// package: every row of Cols values is Cols/QuantBlock blocks of QuantBlock
// values, stored as all the blocks' quants, then all the blocks' f16 scales d,
// then (Q4_1 only) all the blocks' f16 minimums m:
//
//	Q4_1: nb·16 bytes of nibbles (byte j of a block holds element j in its low
//	      nibble and element j+16 in its high one), nb·2 bytes d, nb·2 bytes m;
//	      element = d·q + m, q ∈ [0, 15].
//	Q8_0: nb·32 int8 quants, nb·2 bytes d; element = d·q.
//
// These are ggml's Q4_1 and Q8_0 blocks (and Q4_0, which is Q4_1 with m = −8d,
// exact in f16 unless |d| > 8188) with the scales moved out of the quants: the
// matrix–vector kernels then convert sixteen blocks' scales with one
// instruction. Rows are independent, so whole-row permutations (the RoPE
// un-permutation of a GGUF's Q and K) apply to them as they are.
const (
	Q4_1 DType = 16 + iota
	Q8_0
)

// QuantBlock is the number of values per block of every quantized DType.
const QuantBlock = 32

// Quantized reports whether d is a block-quantized type held in Mat.Q.
func (d DType) Quantized() bool { return d == Q4_1 || d == Q8_0 }

func quantName(d DType) (string, bool) {
	switch d {
	case Q4_1:
		return "q4_1", true
	case Q8_0:
		return "q8_0", true
	}
	return "", false
}

// QuantRowBytes is the planar size of one row of cols values (cols a multiple
// of QuantBlock).
func QuantRowBytes(d DType, cols int) int {
	nb := cols / QuantBlock
	switch d {
	case Q4_1:
		return nb * 20
	case Q8_0:
		return nb * 34
	}
	return 0
}

func (m Mat) validateQuant() error {
	if m.Cols%QuantBlock != 0 {
		return fmt.Errorf("%s matrix %dx%d: %d columns are not whole blocks of %d", m.DType, m.Rows, m.Cols, m.Cols, QuantBlock)
	}
	if want := m.Rows * QuantRowBytes(m.DType, m.Cols); len(m.Q) != want {
		return fmt.Errorf("%s matrix %dx%d has %d bytes, want %d", m.DType, m.Rows, m.Cols, len(m.Q), want)
	}
	return nil
}

// quantKernels are the routines over quantized rows of one kernel set.
type quantKernels struct {
	// gemv4 computes out[r] = Σ_c W[r][c]·x[c] for the four rows starting at w
	// (ldw bytes apart) over nb blocks. sx holds the per-block sums of x, zero
	// padded to a multiple of 16 (the Q4_1 minimums multiply them).
	gemv4 map[DType]func(nb int, w *byte, ldw int, x, sx, out *float32)
	// dequant widens one row of nb blocks into dst (nb·32 floats).
	dequant map[DType]func(nb int, row *byte, dst *float32)
	// gemv4Q8 is gemv4 against a quantized activation (quant_q8.go): xq its
	// quants, xd its block scales, sx its exact block sums, all padded with
	// zeros to a multiple of 16 blocks.
	gemv4Q8 map[DType]func(nb int, w *byte, ldw int, xq *int8, xd, sx, out *float32)
	// intSIMD says gemv4Q8 is the AVX-512 VNNI kernels, not the portable
	// integer loops an AVX-512 CPU without VNNI keeps (HasQ8ActSIMD).
	intSIMD bool
	// quantize rounds nb blocks of x to 8 bits for gemv4Q8 (quantizeQ8Go).
	quantize func(nb int, x *float32, qs *int8, d, s *float32)
}

// HasQuantSIMD reports whether the set reads quantized weights with SIMD
// kernels; the portable ones decode several times slower than an f32 product,
// so a model's loader keeps f32 weights by default where this is false.
func (k *Kernels) HasQuantSIMD() bool { return k.quant() != genericQuant }

// HasQ8ActSIMD reports whether the set multiplies quantized weights by 8-bit
// activations (Mat.Q8Act) in SIMD integer kernels; without them those
// products run portable loops, slower than the exact SIMD kernels.
func (k *Kernels) HasQ8ActSIMD() bool { return k.quant().intSIMD }

// quant returns the set's quantized routines: the AVX-512 ones for the
// avx512 set, the portable ones otherwise.
func (k *Kernels) quant() *quantKernels {
	if k.name == "avx512" && avx512Quant != nil {
		return avx512Quant
	}
	return genericQuant
}

var genericQuant = &quantKernels{
	gemv4: map[DType]func(nb int, w *byte, ldw int, x, sx, out *float32){
		Q4_1: gemv4Generic(Q4_1), Q8_0: gemv4Generic(Q8_0),
	},
	dequant: map[DType]func(nb int, row *byte, dst *float32){
		Q4_1: func(nb int, row *byte, dst *float32) { dequantQ41(rowBytes(row, nb*20), floats(dst, nb*32)) },
		Q8_0: func(nb int, row *byte, dst *float32) { dequantQ80(rowBytes(row, nb*34), floats(dst, nb*32)) },
	},
	gemv4Q8: map[DType]func(nb int, w *byte, ldw int, xq *int8, xd, sx, out *float32){
		Q4_1: gemv4Q8Generic(Q4_1), Q8_0: gemv4Q8Generic(Q8_0),
	},
	quantize: quantizeQ8Go,
}

func f16At(b []byte, i int) float32 { return F16ToF32(binary.LittleEndian.Uint16(b[2*i:])) }

// dequantQ41 is the reference widening of one planar Q4_1 row: d·q + m with
// d·q exact in f32 (an 11-bit significand times a 4-bit integer), so every
// path that rounds d·q + m once (an FMA) gives the same bits.
func dequantQ41(row []byte, dst []float32) {
	nb := len(dst) / QuantBlock
	ds, ms := row[nb*16:nb*18], row[nb*18:nb*20]
	for b := 0; b < nb; b++ {
		d, m := f16At(ds, b), f16At(ms, b)
		qs := row[b*16 : b*16+16]
		y := dst[b*32 : b*32+32]
		for j, q := range qs {
			y[j] = float32(q&0xF)*d + m
			y[j+16] = float32(q>>4)*d + m
		}
	}
}

func dequantQ80(row []byte, dst []float32) {
	nb := len(dst) / QuantBlock
	ds := row[nb*32 : nb*34]
	for b := 0; b < nb; b++ {
		d := f16At(ds, b)
		for j, q := range row[b*32 : b*32+32] {
			dst[b*32+j] = float32(int8(q)) * d
		}
	}
}

// dotQuantRow is Σ_c W[c]·x[c] over one planar row: per block d·Σq·x (+ m·Σx).
func dotQuantRow(d DType, row []byte, x, sx []float32) float32 {
	nb := len(x) / QuantBlock
	var acc float32
	switch d {
	case Q4_1:
		ds, ms := row[nb*16:nb*18], row[nb*18:nb*20]
		for b := 0; b < nb; b++ {
			xb := x[b*32 : b*32+32]
			var s float32
			for j, q := range row[b*16 : b*16+16] {
				s += float32(q&0xF)*xb[j] + float32(q>>4)*xb[j+16]
			}
			acc += f16At(ds, b)*s + f16At(ms, b)*sx[b]
		}
	case Q8_0:
		ds := row[nb*32 : nb*34]
		for b := 0; b < nb; b++ {
			xb := x[b*32 : b*32+32]
			var s float32
			for j, q := range row[b*32 : b*32+32] {
				s += float32(int8(q)) * xb[j]
			}
			acc += f16At(ds, b) * s
		}
	}
	return acc
}

func gemv4Generic(d DType) func(nb int, w *byte, ldw int, x, sx, out *float32) {
	return func(nb int, w *byte, ldw int, x, sx, out *float32) {
		rb := QuantRowBytes(d, nb*QuantBlock)
		all := rowBytes(w, 3*ldw+rb)
		xs, sxs, o := floats(x, nb*QuantBlock), floats(sx, nb), floats(out, 4)
		for r := 0; r < 4; r++ {
			o[r] = dotQuantRow(d, all[r*ldw:r*ldw+rb], xs, sxs)
		}
	}
}

// blockSums writes the per-block sums of x into sx (len ≥ len(x)/32, rounded
// up to 16 and zero padded).
func blockSums(sx, x []float32) {
	nb := len(x) / QuantBlock
	for b := 0; b < nb; b++ {
		var s float32
		for _, v := range x[b*32 : b*32+32] {
			s += v
		}
		sx[b] = s
	}
	clear(sx[nb:])
}

// dequantRow widens row i of a quantized matrix into dst (len Cols).
func (k *Kernels) dequantRow(m Mat, i int, dst []float32) {
	rb := QuantRowBytes(m.DType, m.Cols)
	if m.Cols == 0 {
		return
	}
	_ = dst[m.Cols-1]
	k.quant().dequant[m.DType](m.Cols/QuantBlock, &m.Q[i*rb], &dst[0])
}

// quantChunkFloats bounds the f32 copy a many-row product over quantized
// weights widens at a time (8 MiB): every layer matrix of the supported
// shapes fits in one chunk; a vocabulary-sized LM head goes in slices.
const quantChunkFloats = 2 << 20

// matMulQuant is MatMul over quantized weights. Decode-sized products read
// the blocks directly (dequantizing in registers), so the weights cross the
// memory bus at 4.5–8.5 bits each; larger ones widen the weights to f32 a
// chunk of rows at a time (once per product, in parallel) and run the f32
// product, whose cost per weight grows with the rows while the widening's does
// not.
func matMulQuant(p *Pool, ks *Kernels, dst, x []float32, n int, w Mat) {
	if w.Q8Act || (n <= gemvMaxRows && !widensQuant(ks, n)) {
		runPlans(p, ks, n, []Product{{Dst: dst, X: x, W: w}})
		return
	}
	if n <= gemvMaxRows {
		matVecQuant(p, ks, dst, x, n, w)
		return
	}
	matMulQuantChunked(p, ks, dst, x, n, w, quantChunkFloats)
}

// matMulQuantChunked widens at most chunkFloats weights at a time.
func matMulQuantChunked(p *Pool, ks *Kernels, dst, x []float32, n int, w Mat, chunkFloats int) {
	K, N := w.Cols, w.Rows
	chunk := max(4, min(N, chunkFloats/K))
	wbuf := p.getBuf(chunk * K)
	defer p.putBuf(wbuf)
	var tmp []float32
	if chunk < N {
		tb := p.getBuf(n * chunk)
		defer p.putBuf(tb)
		tmp = *tb
	}
	for o0 := 0; o0 < N; o0 += chunk {
		rows := min(chunk, N-o0)
		wf := (*wbuf)[:rows*K]
		p.Run(rows, 16, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				ks.dequantRow(w, o0+r, wf[r*K:(r+1)*K])
			}
		})
		sub := Mat{DType: F32, Rows: rows, Cols: K, F32: wf}
		if rows == N {
			MatMul(p, dst, x, n, sub)
			return
		}
		MatMul(p, tmp[:n*rows], x, n, sub)
		for i := 0; i < n; i++ {
			copy(dst[i*N+o0:i*N+o0+rows], tmp[i*rows:(i+1)*rows])
		}
	}
}

// quantBatchRows is the activation count from which matVecQuant widens each
// group of four weight rows into an L1 buffer once and runs the f32 4×4
// kernel over it, instead of dequantizing the group in registers once per
// activation row (the in-register kernel spends about four times an f32
// product's instructions per weight, so it pays only where one row reads the
// weights once; see BenchmarkQuantMatVec's rows=N cases).
const quantBatchRows = 2

// widensQuant reports whether a decode-sized product of n exact rows widens
// each group of four weight rows into an L1 buffer (matVecQuant) rather than
// dequantizing it in registers once per row (quantPlan).
func widensQuant(ks *Kernels, n int) bool { return n >= quantBatchRows && ks.gemv44F32 != nil }

// matVecQuant widens each group of four weight rows once into L1 and dots it
// with every activation row (f32 4×4 kernel) while it is there.
func matVecQuant(p *Pool, ks *Kernels, dst, x []float32, n int, w Mat) {
	K, N := w.Cols, w.Rows
	nb := K / QuantBlock
	rb := QuantRowBytes(w.DType, K)
	dequant := ks.quant().dequant[w.DType]
	groups := (N + 3) / 4
	p.runTeam(groups, 16, func(lo, hi int) {
		res := new([20]float32)
		out, out16 := (*[4]float32)(res[:4]), (*[16]float32)(res[4:])
		wb := p.getBuf(4 * K)
		defer p.putBuf(wb)
		wf := *wb
		for g := lo; g < hi; g++ {
			o0 := g * 4
			if o0+4 > N {
				for o := o0; o < N; o++ {
					row := make([]float32, K)
					ks.dequantRow(w, o, row)
					for i := 0; i < n; i++ {
						dst[i*N+o] = dotGo(row, x[i*K:(i+1)*K])
					}
				}
				continue
			}
			for r := 0; r < 4; r++ {
				dequant(nb, &w.Q[(o0+r)*rb], &wf[r*K])
			}
			i := 0
			for ; i+4 <= n; i += 4 {
				ks.gemv44F32(K, &wf[0], K, &x[i*K], K, &out16[0])
				for r := 0; r < 4; r++ {
					for j := 0; j < 4; j++ {
						dst[(i+j)*N+o0+r] = out16[4*r+j]
					}
				}
			}
			for ; i < n; i++ {
				ks.gemv4F32(K, &wf[0], K, &x[i*K], &out[0])
				copy(dst[i*N+o0:i*N+o0+4], out[:])
			}
		}
	})
}

// rowBytes and floats view n elements at p (the kernels' pointer arguments) as
// slices, for the portable routines that share the assembly's signatures.
func rowBytes(p *byte, n int) []byte     { return unsafe.Slice(p, n) }
func floats(p *float32, n int) []float32 { return unsafe.Slice(p, n) }

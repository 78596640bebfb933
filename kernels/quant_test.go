package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// randQuantMat builds a planar quantized matrix of random quants and scales
// (normal and subnormal f16 scales, negative minimums), its backing slice at
// an odd offset.
func randQuantMat(rng *rand.Rand, d DType, rows, cols int) Mat {
	rb := QuantRowBytes(d, cols)
	buf := make([]byte, rows*rb+1)
	for i := range buf {
		buf[i] = byte(rng.IntN(256))
	}
	q := buf[1:]
	nb := cols / QuantBlock
	scale := func() uint16 {
		v := float32(rng.NormFloat64() * 0.02)
		if rng.IntN(16) == 0 {
			v *= 1e-4 // f16 subnormals
		}
		return F32ToF16(v)
	}
	for r := 0; r < rows; r++ {
		row := q[r*rb : (r+1)*rb]
		qb := nb * 16
		if d == Q8_0 {
			qb = nb * 32
		}
		for b := 0; b < nb; b++ {
			binary.LittleEndian.PutUint16(row[qb+2*b:], scale())
			if d == Q4_1 {
				binary.LittleEndian.PutUint16(row[qb+2*nb+2*b:], scale())
			}
		}
	}
	return Mat{DType: d, Rows: rows, Cols: cols, Q: q}
}

// anyMat is randMat or randQuantMat by dtype, for benchmarks over every storage.
func anyMat(rng *rand.Rand, d DType, rows, cols int) Mat {
	if d.Quantized() {
		return randQuantMat(rng, d, rows, cols)
	}
	return randMat(rng, d, rows, cols)
}

// dequantRef widens the whole matrix with the portable reference.
func dequantRef(m Mat) []float32 {
	out := make([]float32, m.Rows*m.Cols)
	rb := QuantRowBytes(m.DType, m.Cols)
	for r := 0; r < m.Rows; r++ {
		row, dst := m.Q[r*rb:(r+1)*rb], out[r*m.Cols:(r+1)*m.Cols]
		if m.DType == Q4_1 {
			dequantQ41(row, dst)
		} else {
			dequantQ80(row, dst)
		}
	}
	return out
}

// TestQuantDequantRowExact: every kernel set widens to the reference's bits.
func TestQuantDequantRowExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 21))
	for _, d := range []DType{Q4_1, Q8_0} {
		for _, cols := range []int{32, 64, 544, 576, 1536} {
			m := randQuantMat(rng, d, 3, cols)
			ref := dequantRef(m)
			for _, p := range testPools(t) {
				got := make([]float32, cols)
				for r := 0; r < m.Rows; r++ {
					p.Kernels().RowF32(m, r, got)
					for c, v := range got {
						if math.Float32bits(v) != math.Float32bits(ref[r*cols+c]) {
							t.Fatalf("%s %s cols %d row %d col %d: %g, reference %g", p.Kernels().Name(), d, cols, r, c, v, ref[r*cols+c])
						}
					}
				}
			}
		}
	}
}

// TestQuantMatMul checks the products over quantized weights, decode-sized
// (blocks read directly) and larger (widened per chunk), against the f64 sum
// over the reference dequantization: row counts hitting the 4-row groups'
// tails, block counts below, at and past a 16-block scale group, and more
// activation rows than the matrix-vector limit.
func TestQuantMatMul(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	for _, d := range []DType{Q4_1, Q8_0} {
		for _, shape := range [][2]int{{1, 32}, {4, 64}, {7, 512}, {9, 544}, {12, 576}, {5, 1536}, {64, 96}} {
			N, K := shape[0], shape[1]
			w := randQuantMat(rng, d, N, K)
			wf := dequantRef(w)
			for _, n := range []int{1, 2, 4, 5, 16, 17, 40} {
				x := make([]float32, n*K+1)
				for i := range x {
					x[i] = float32(rng.NormFloat64())
				}
				x = x[1:]
				for _, p := range testPools(t) {
					name := fmt.Sprintf("%s/%s/%dx%d/n%d", p.Kernels().Name(), d, N, K, n)
					got := make([]float32, n*N)
					MatMul(p, got, x, n, w)
					checkAgainstF64(t, name, got, x, wf, n, N, K)
					// The widened product a slice of rows at a time (the LM head's path).
					got2 := make([]float32, n*N)
					matMulQuantChunked(p, p.Kernels(), got2, x, n, w, 3*K)
					checkAgainstF64(t, name+"/chunked", got2, x, wf, n, N, K)
				}
			}
		}
	}
}

func checkAgainstF64(t *testing.T, name string, got, x, wf []float32, n, N, K int) {
	t.Helper()
	for i := 0; i < n; i++ {
		for o := 0; o < N; o++ {
			var s, mag float64
			for c := 0; c < K; c++ {
				v := float64(x[i*K+c]) * float64(wf[o*K+c])
				s += v
				mag += math.Abs(v)
			}
			if diff := math.Abs(float64(got[i*N+o]) - s); diff > 1e-5*mag+1e-30 {
				t.Fatalf("%s: row %d out %d: %g, want %g (|diff| %g, Σ|x·w| %g)", name, i, o, got[i*N+o], s, diff, mag)
			}
		}
	}
}

// TestQuantValidate: a backing slice of the wrong size or columns that are
// not whole blocks are refused before any kernel reads past the end.
func TestQuantValidate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	m := randQuantMat(rng, Q4_1, 4, 64)
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	short := m
	short.Q = m.Q[:len(m.Q)-1]
	odd := Mat{DType: Q8_0, Rows: 1, Cols: 40, Q: make([]byte, 60)}
	for _, bad := range []Mat{short, odd} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%s %dx%d with %d bytes: no error", bad.DType, bad.Rows, bad.Cols, len(bad.Q))
		}
	}
	if got, want := m.Bytes(), int64(4*40); got != want {
		t.Errorf("Bytes = %d, want %d", got, want)
	}
}

// BenchmarkQuantMatVec: decode-sized products (1, 2 and 8 activation rows)
// over SmolLM2-135M's shapes (gate/up, down, the tied LM head) for each weight
// storage, the quantized ones also with Q8Act (-q8act: the integer path) for
// one row; bytes/s is the weights' storage read per product.
func BenchmarkQuantMatVec(b *testing.B) {
	rng := rand.New(rand.NewPCG(9, 9))
	p, _ := NewPoolWith(PoolOptions{Threads: 2})
	for _, shape := range [][2]int{{1536, 576}, {576, 1536}, {49152, 576}} {
		N, K := shape[0], shape[1]
		for _, d := range []DType{Q4_1, Q8_0, BF16, F32} {
			w := anyMat(rng, d, N, K)
			for _, n := range []int{1, 2, 8} {
				x := make([]float32, n*K)
				for i := range x {
					x[i] = float32(rng.NormFloat64())
				}
				dst := make([]float32, n*N)
				for _, q8 := range []bool{false, true} {
					if q8 && !d.Quantized() {
						continue
					}
					w.Q8Act = q8
					b.Run(fmt.Sprintf("%dx%d/%s%s/rows=%d/%s", N, K, d, map[bool]string{true: "-q8act"}[q8], n, p.Kernels().Name()), func(b *testing.B) {
						b.SetBytes(w.Bytes())
						for range b.N {
							MatMul(p, dst, x, n, w)
						}
					})
				}
			}
		}
	}
}

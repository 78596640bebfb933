package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// checkClose fails unless dst equals the float64 reference within the
// rounding bound of an f32 sum of the same products.
func checkClose(t *testing.T, what string, dst []float32, want, mag []float64, tol float64) {
	t.Helper()
	for j := range want {
		if diff := math.Abs(float64(dst[j]) - want[j]); diff > tol*mag[j]+1e-6 {
			t.Fatalf("%s out %d: got %g want %g (|x·w| %g)", what, j, dst[j], want[j], mag[j])
		}
	}
}

// TestPackRoundTrip: Pack is a permutation (RowMajor gives the same bits
// back, RowF32 the same rows), pads with zeros, and leaves quantized
// matrices alone.
func TestPackRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 21))
	for _, d := range []DType{F32, F16, BF16} {
		for _, sh := range [][2]int{{1, 1}, {31, 7}, {32, 5}, {33, 64}, {100, 3}} {
			w := randMat(rng, d, sh[0], sh[1])
			pk := Pack(w)
			if !pk.Panels || pk.Validate() != nil {
				t.Fatalf("%s %v: Pack gave Panels=%v, Validate %v", d, sh, pk.Panels, pk.Validate())
			}
			if Pack(pk).Panels != true || len(Pack(pk).F32) != len(pk.F32) {
				t.Fatalf("%s %v: packing twice changed the matrix", d, sh)
			}
			back := pk.RowMajor()
			row, prow := make([]float32, sh[1]), make([]float32, sh[1])
			for o := 0; o < sh[0]; o++ {
				w.RowF32(o, row)
				pk.RowF32(o, prow)
				for c := range row {
					if math.Float32bits(row[c]) != math.Float32bits(prow[c]) {
						t.Fatalf("%s %v: RowF32(%d)[%d] = %g from panels, %g row-major", d, sh, o, c, prow[c], row[c])
					}
				}
			}
			for i := 0; i < sh[0]*sh[1]; i++ {
				if d == F32 && math.Float32bits(back.F32[i]) != math.Float32bits(w.F32[i]) || d != F32 && back.U16[i] != w.U16[i] {
					t.Fatalf("%s %v: RowMajor(Pack(w)) differs at %d", d, sh, i)
				}
				if d == F32 && math.Float32bits(pk.F32[pk.Index(i)]) != math.Float32bits(w.F32[i]) || d != F32 && pk.U16[pk.Index(i)] != w.U16[i] {
					t.Fatalf("%s %v: Index(%d) = %d holds another value", d, sh, i, pk.Index(i))
				}
			}
			// Rows past Rows in the last panel are zeros.
			last := (sh[0] - 1) / PanelWidth
			for c := 0; c < sh[1]; c++ {
				for j := sh[0] - last*PanelWidth; j < PanelWidth; j++ {
					i := last*sh[1]*PanelWidth + c*PanelWidth + j
					if d == F32 && pk.F32[i] != 0 || d != F32 && pk.U16[i] != 0 {
						t.Fatalf("%s %v: padding at %d not zero", d, sh, i)
					}
				}
			}
		}
	}
	q := Mat{DType: Q8_0, Rows: 2, Cols: 32, Q: make([]byte, 2*QuantRowBytes(Q8_0, 32))}
	if Pack(q).Panels {
		t.Fatal("Pack packed a quantized matrix")
	}
}

func TestPanelsRejectShortSlice(t *testing.T) {
	m := Mat{DType: BF16, Rows: 33, Cols: 8, U16: make([]uint16, 33*8), Panels: true}
	if err := m.Validate(); err == nil {
		t.Fatal("a 33×8 panel matrix backed by 33·8 values (not 64·8) passed Validate")
	}
}

// TestMatMulPanelsMatchesReference runs every product path on weights in
// panel layout against the naive product over the same weights row-major:
// the dispatcher and each path forced, on both kernel sets, with n, K and N
// off the tiles (1–3 rows, 5–7, 13, 31–33, 40, 100; K with and without a
// tail past 16/32 and past the decode path's 256-deep pieces; N not a
// multiple of 16 or 32).
func TestMatMulPanelsMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 21))
	shapes := [][3]int{ // n, k, out
		{1, 1, 1}, {1, 31, 5}, {1, 300, 33}, {1, 6, 40}, {1, 517, 64}, {1, 4, 32},
		{2, 64, 40}, {3, 257, 97}, {4, 130, 64},
		{5, 513, 31}, {7, 17, 70}, {8, 896, 128}, {12, 256, 32}, {13, 600, 65},
		{16, 100, 48}, {31, 40, 17}, {32, 1000, 96}, {33, 129, 33}, {40, 513, 70},
		{100, 77, 20}, {100, 300, 150}, {24, 12, 40},
	}
	for i := 0; i < 6; i++ {
		shapes = append(shapes, [3]int{1 + rng.IntN(60), 1 + rng.IntN(700), 1 + rng.IntN(150)})
	}
	for _, p := range testPools(t) {
		ks := p.Kernels()
		for _, d := range []DType{F32, F16, BF16} {
			for _, sh := range shapes {
				n, k, o := sh[0], sh[1], sh[2]
				t.Run(fmt.Sprintf("%s/%s/%dx%dx%d", ks.Name(), d, n, k, o), func(t *testing.T) {
					w := randMat(rng, d, o, k)
					pw := Pack(w)
					x := randVec(rng, n*k)
					want, mag := refMatMul(x, n, w)
					for _, path := range []struct {
						name string
						run  func(dst []float32)
					}{
						{"MatMul", func(dst []float32) { MatMul(p, dst, x, n, pw) }},
						{"small", func(dst []float32) { matMulPanelsSmall(p, ks, dst, x, n, pw) }},
						{"packed", func(dst []float32) { matMulPacked(p, ks, dst, x, n, pw) }},
						{"packed-packedA", func(dst []float32) { matMulPackedWith(p, ks, dst, x, n, pw, 64, 40, false) }},
						{"rows", func(dst []float32) { matMulRows(p, ks, dst, x, n, pw) }},
						{"rows-packedA", func(dst []float32) { matMulRowsWith(p, ks, dst, x, n, pw, false) }},
					} {
						dst := randVec(rng, n*o) // garbage must be overwritten
						path.run(dst)
						checkClose(t, path.name, dst, want, mag, 1e-5)
					}
				})
			}
		}
	}
}

// TestMatMulPanelsFastBF16: the VDPBF16PS product packs its bf16 pairs from
// stored panels as from rows.
func TestMatMulPanelsFastBF16(t *testing.T) {
	p, err := NewPoolWith(PoolOptions{Threads: 2, FastBF16: true})
	if err != nil {
		t.Fatal(err)
	}
	if !p.bf16Dot {
		t.Skip("no VDPBF16PS on this CPU: the FastBF16 pool runs the exact path, tested above")
	}
	rng := rand.New(rand.NewPCG(8, 21))
	for _, sh := range [][3]int{{33, 2, 1}, {40, 33, 17}, {64, 301, 65}, {100, 896, 97}, {50, 2001, 40}} {
		n, k, o := sh[0], sh[1], sh[2]
		w := randMat(rng, BF16, o, k)
		x := randVec(rng, n*k)
		dst, ref := randVec(rng, n*o), randVec(rng, n*o)
		MatMul(p, dst, x, n, Pack(w))
		matMulBF16Dot(p, p.Kernels(), ref, x, n, w)
		for j := range dst {
			if dst[j] != ref[j] {
				t.Fatalf("%v out %d: %g from panels, %g from rows (same bf16 products, same order)", sh, j, dst[j], ref[j])
			}
		}
	}
}

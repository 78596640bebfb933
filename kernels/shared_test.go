package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestMatMulShared runs several matrices over one input, as the Q/K/V and
// gate/up projections do, on both splits (more rows than outputs and fewer),
// with output widths that are not whole panels, mixed dtypes, and the
// decode-sized n that runs them one by one: every result must match the
// float64 reference and equal MatMul's on that matrix bit for bit (the same
// blocks are summed in the same order).
func TestMatMulShared(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 7))
	cases := []struct {
		n, k  int
		outs  []int
		types []DType
	}{
		{300, 96, []int{64, 16, 16}, []DType{F32, F32, F32}},           // rows: n > 96
		{40, 200, []int{70, 33, 33}, []DType{F32, BF16, F16}},          // columns, partial panels
		{100, 576, []int{576, 192, 192}, []DType{BF16, BF16, BF16}},    // columns, SmolLM2-like
		{500, 130, []int{45, 9, 9, 100}, []DType{F32, F32, F16, BF16}}, // rows, four matrices
		{8, 64, []int{32, 8, 8}, []DType{F32, F32, F32}},               // decode: one by one
		{17, 1100, []int{40, 1}, []DType{F32, F32}},                    // a one-column matrix
	}
	for _, p := range testPools(t) {
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/%dx%dx%v", p.Kernels().Name(), c.n, c.k, c.outs), func(t *testing.T) {
				x := randVec(rng, c.n*c.k)
				ws := make([]Mat, len(c.outs))
				dsts := make([][]float32, len(c.outs))
				for i, o := range c.outs {
					ws[i] = randMat(rng, c.types[i], o, c.k)
					dsts[i] = randVec(rng, c.n*o)
				}
				MatMulShared(p, dsts, x, c.n, ws)
				for i, w := range ws {
					want, mag := refMatMul(x, c.n, w)
					one := make([]float32, c.n*w.Rows)
					MatMul(p, one, x, c.n, w)
					for j := range want {
						if diff := math.Abs(float64(dsts[i][j]) - want[j]); diff > 1e-5*mag[j]+1e-6 {
							t.Fatalf("matrix %d out %d: got %g want %g", i, j, dsts[i][j], want[j])
						}
						if dsts[i][j] != one[j] {
							t.Fatalf("matrix %d out %d: %g, MatMul alone %g", i, j, dsts[i][j], one[j])
						}
					}
				}
			})
		}
	}
}

func TestMatMulSharedRejectsMixedDepths(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("MatMulShared accepted matrices of 64 and 65 columns")
		}
	}()
	rng := rand.New(rand.NewPCG(1, 1))
	ws := []Mat{randMat(rng, F32, 40, 64), randMat(rng, F32, 8, 65)}
	MatMulShared(NewPool(1), [][]float32{make([]float32, 40*40), make([]float32, 40*8)}, randVec(rng, 40*65), 40, ws)
}

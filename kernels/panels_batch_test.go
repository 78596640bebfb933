package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestMatMulPanelsBatch holds the batched panel product to the naive float64
// product over the same weights row-major, within the bound the f32 paths
// are held to (TestMatMulPanelsMatchesReference): every row count it serves
// (2–32 rows of 16-bit weights, 2–8 of f32; odd ones padded), MatMul over
// the rows it leaves to the GEMM path, K with tails off 32 and past the 2,048-deep piece,
// N not a multiple of 32 (a partial last panel), on each kernel set that has
// a batched kernel, and the dispatcher (MatMul) taking it.
func TestMatMulPanelsBatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 8))
	ks := [...]int{1, 7, 33, 256, 517, 2049, 2100}
	outs := [...]int{5, 32, 33, 70, 96}
	for _, p := range testPools(t) {
		k0 := p.Kernels()
		for _, d := range []DType{F32, F16, BF16} {
			if panelBatch(k0, Mat{DType: d}) == nil {
				continue
			}
			for n := 2; n <= panelSmallRows; n++ {
				k, o := ks[n%len(ks)], outs[n%len(outs)]
				t.Run(fmt.Sprintf("%s/%s/%dx%dx%d", k0.Name(), d, n, k, o), func(t *testing.T) {
					w := randMat(rng, d, o, k)
					pw := Pack(w)
					x := randVec(rng, n*k)
					want, mag := refMatMul(x, n, w)
					dst := randVec(rng, n*o) // garbage must be overwritten
					if ran := matMulPanelsBatch(p, k0, dst, x, n, pw); ran != (n <= panelBatchMax(d)) {
						t.Fatalf("the batched product ran: %v, want %v", ran, n <= panelBatchMax(d))
					} else if !ran {
						MatMul(p, dst, x, n, pw)
					}
					checkClose(t, "batch", dst, want, mag, 1e-5)
					dst2 := randVec(rng, n*o)
					MatMul(p, dst2, x, n, pw)
					for j := range dst {
						if math.Float32bits(dst[j]) != math.Float32bits(dst2[j]) {
							t.Fatalf("MatMul out %d = %g, the batched product %g: MatMul took another path", j, dst2[j], dst[j])
						}
					}
				})
			}
		}
	}
}

// TestMatMulPanelsBatchDeclines: one row (the one-row kernels' case) and
// more than panelSmallRows are not the batched product's.
func TestMatMulPanelsBatchDeclines(t *testing.T) {
	p := NewPool(1)
	w := Pack(randMat(rand.New(rand.NewPCG(1, 2)), BF16, 32, 16))
	for _, n := range []int{1, panelSmallRows + 1} {
		if matMulPanelsBatch(p, p.Kernels(), make([]float32, n*32), make([]float32, n*16), n, w) {
			t.Errorf("n = %d: the batched product ran", n)
		}
	}
}

package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestMatMulsSameBits: products handed off together (MatMuls) give the bits
// each gives alone (MatMul), on every kernel set: exact and 8-bit
// activations, products sharing their input (Q/K/V, gate/up) or not, partial
// last groups, and sets that cannot go in one hand-off (f32 weights, many
// rows), which fall back to one MatMul each.
func TestMatMulsSameBits(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 5))
	type prod struct {
		d          DType
		rows, cols int
		q8, shared bool
	}
	cases := []struct {
		name  string
		n     int
		prods []prod
	}{
		{"qkv-exact", 1, []prod{{Q4_1, 64, 96, false, true}, {Q4_1, 32, 96, false, true}, {Q4_1, 32, 96, false, true}}},
		{"qkv-q8", 1, []prod{{Q4_1, 64, 96, true, true}, {Q4_1, 32, 96, true, true}, {Q4_1, 32, 96, true, true}}},
		{"q8-3rows", 3, []prod{{Q4_1, 40, 576, true, true}, {Q8_0, 40, 576, true, true}}},
		{"partial-groups", 1, []prod{{Q4_1, 7, 64, false, true}, {Q8_0, 5, 64, false, false}, {Q4_1, 9, 1056, false, false}}},
		{"mixed-kinds", 1, []prod{{Q4_1, 12, 160, true, true}, {Q4_1, 12, 160, false, true}, {Q8_0, 3, 160, true, false}}},
		{"with-f32", 1, []prod{{Q4_1, 16, 64, false, true}, {F32, 16, 64, false, true}}},
		{"many-rows", 20, []prod{{Q4_1, 16, 64, false, true}, {Q8_0, 8, 64, false, true}}},
	}
	for _, c := range cases {
		ws := make([]Mat, len(c.prods))
		xs := make([][]float32, len(c.prods))
		var shared []float32
		for i, pr := range c.prods {
			if pr.d == F32 {
				ws[i] = randMat(rng, F32, pr.rows, pr.cols)
			} else {
				ws[i] = randQuantMat(rng, pr.d, pr.rows, pr.cols)
			}
			ws[i].Q8Act = pr.q8
			x := make([]float32, c.n*pr.cols)
			for j := range x {
				x[j] = float32(rng.NormFloat64())
			}
			if pr.shared {
				if shared == nil {
					shared = x
				}
				x = shared
			}
			xs[i] = x
		}
		for _, p := range testPools(t) {
			name := fmt.Sprintf("%s/%s", c.name, p.Kernels().Name())
			prods := make([]Product, len(ws))
			for i, w := range ws {
				prods[i] = Product{Dst: make([]float32, c.n*w.Rows), X: xs[i], W: w}
			}
			MatMuls(p, c.n, prods...)
			for i, pr := range prods {
				alone := make([]float32, c.n*pr.W.Rows)
				MatMul(p, alone, pr.X, c.n, pr.W)
				for o := range alone {
					if math.Float32bits(alone[o]) != math.Float32bits(pr.Dst[o]) {
						t.Fatalf("%s: product %d out %d: %g together, %g alone", name, i, o, pr.Dst[o], alone[o])
					}
				}
			}
		}
	}
}

// TestQ8ActRowsIndependent: with 8-bit activations every row is rounded and
// dotted on its own, so a row's outputs in a product of several rows (a
// batch's decode step) are the bits of its product alone: a question's
// tokens do not depend on its batch partners.
func TestQ8ActRowsIndependent(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 6))
	for _, d := range []DType{Q4_1, Q8_0} {
		for _, n := range []int{2, 3, 17, 40} {
			const N, K = 13, 576
			w := randQuantMat(rng, d, N, K)
			w.Q8Act = true
			x := make([]float32, n*K)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			for _, p := range testPools(t) {
				all := make([]float32, n*N)
				MatMul(p, all, x, n, w)
				for i := 0; i < n; i++ {
					one := make([]float32, N)
					MatMul(p, one, x[i*K:(i+1)*K], 1, w)
					for o := range one {
						if math.Float32bits(one[o]) != math.Float32bits(all[i*N+o]) {
							t.Fatalf("%s/%s/n=%d: row %d out %d: %g in the batch, %g alone", p.Kernels().Name(), d, n, i, o, all[i*N+o], one[o])
						}
					}
				}
			}
		}
	}
}

// BenchmarkDecodeLayer: one decode token's products of SmolLM2-135M (30
// layers of Q/K/V, O, gate/up and down, Q4_1, one row), handed off product
// by product (MatMul) or stage by stage (MatMuls: Q/K/V together, gate/up
// together), with exact and 8-bit activations. The layers have their own
// weights (66 MiB in all, as the model), so they come from memory.
func BenchmarkDecodeLayer(b *testing.B) {
	rng := rand.New(rand.NewPCG(21, 7))
	p, _ := NewPoolWith(PoolOptions{Threads: 2})
	const H, KV, I, layers = 576, 192, 1536, 30
	type layer struct{ q, k, v, o, g, u, d Mat }
	ls := make([]layer, layers)
	for i := range ls {
		ls[i] = layer{randQuantMat(rng, Q4_1, H, H), randQuantMat(rng, Q4_1, KV, H), randQuantMat(rng, Q4_1, KV, H),
			randQuantMat(rng, Q4_1, H, H), randQuantMat(rng, Q4_1, I, H), randQuantMat(rng, Q4_1, I, H), randQuantMat(rng, Q4_1, H, I)}
	}
	x := make([]float32, I)
	for i := range x {
		x[i] = float32(rng.NormFloat64()) / 8
	}
	q, k, v, o := make([]float32, H), make([]float32, KV), make([]float32, KV), make([]float32, H)
	g, u := make([]float32, I), make([]float32, I)
	var bytes int64
	for _, l := range ls {
		for _, m := range []Mat{l.q, l.k, l.v, l.o, l.g, l.u, l.d} {
			bytes += m.Bytes()
		}
	}
	for _, q8 := range []bool{false, true} {
		for _, fused := range []bool{false, true} {
			b.Run(fmt.Sprintf("q8=%v/fused=%v", q8, fused), func(b *testing.B) {
				b.SetBytes(bytes)
				for range b.N {
					for _, l := range ls {
						for _, m := range []*Mat{&l.q, &l.k, &l.v, &l.o, &l.g, &l.u, &l.d} {
							m.Q8Act = q8
						}
						if fused {
							MatMuls(p, 1, Product{q, x[:H], l.q}, Product{k, x[:H], l.k}, Product{v, x[:H], l.v})
							MatMuls(p, 1, Product{o, q, l.o})
							MatMuls(p, 1, Product{g, o, l.g}, Product{u, o, l.u})
							MatMuls(p, 1, Product{o, g, l.d})
							continue
						}
						MatMul(p, q, x[:H], 1, l.q)
						MatMul(p, k, x[:H], 1, l.k)
						MatMul(p, v, x[:H], 1, l.v)
						MatMul(p, o, q, 1, l.o)
						MatMul(p, g, o, 1, l.g)
						MatMul(p, u, o, 1, l.u)
						MatMul(p, o, g, 1, l.d)
					}
				}
			})
		}
	}
}

package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestQuantizeQ8 checks the activation rounding's invariants for every
// kernel set: every element within half a step of its block's scale, the
// largest at ±127, zero and non-finite blocks, the padding zeroed, the sums
// the f32 sums; and the sets agree bit for bit.
func TestQuantizeQ8(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 1))
	for _, nb := range []int{1, 2, 15, 16, 17, 18, 48} {
		x := make([]float32, nb*32)
		for i := range x {
			x[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(7)-3)))
		}
		clear(x[:32]) // an all-zero block
		if nb > 3 {
			for i := 96; i < 128; i++ { // block 3 too small for 127/amax to be finite
				x[i] = float32(rng.NormFloat64() * 1e-38)
			}
			x[100] = 3e-37
		}
		if nb > 2 {
			x[40] = float32(math.Inf(-1)) // block 1 non-finite
			x[70] = float32(math.NaN())   // block 2 too
		}
		var first q8Act
		for _, p := range testPools(t) {
			buf := make([]float32, q8Floats(nb))
			for i := range buf {
				buf[i] = float32(math.NaN()) // stale scratch must not leak through
			}
			a := carveQ8(buf, nb)
			p.Kernels().quant().quantizeQ8(a, x)
			name := fmt.Sprintf("%s/nb=%d", p.Kernels().Name(), nb)
			checkQ8Act(t, name, a, x)
			if first.qs == nil {
				first = a
				continue
			}
			for i := range a.qs {
				if a.qs[i] != first.qs[i] {
					t.Fatalf("%s: quant %d is %d, the generic set's %d", name, i, a.qs[i], first.qs[i])
				}
			}
			for b := range a.d {
				if math.Float32bits(a.d[b]) != math.Float32bits(first.d[b]) || math.Float32bits(a.s[b]) != math.Float32bits(first.s[b]) {
					t.Fatalf("%s: block %d scale/sum %g/%g, the generic set's %g/%g", name, b, a.d[b], a.s[b], first.d[b], first.s[b])
				}
			}
		}
	}
}

func checkQ8Act(t *testing.T, name string, a q8Act, x []float32) {
	t.Helper()
	nb := len(x) / 32
	for b := 0; b < nb; b++ {
		var amax, sum float64
		for _, v := range x[b*32 : b*32+32] {
			amax = math.Max(amax, math.Abs(float64(v)))
			sum += float64(v)
		}
		if math.IsInf(amax, 0) || math.IsNaN(amax) {
			if !math.IsNaN(float64(a.d[b])) {
				t.Fatalf("%s block %d: non-finite block has scale %g, want NaN", name, b, a.d[b])
			}
			continue
		}
		if amax < 0x1p-120 {
			if a.d[b] != 0 {
				t.Fatalf("%s block %d: amax %g below 2⁻¹²⁰ has scale %g, want 0", name, b, amax, a.d[b])
			}
			for j := b * 32; j < b*32+32; j++ {
				if a.qs[j] != 0 {
					t.Fatalf("%s block %d: amax %g below 2⁻¹²⁰ has quant %d", name, b, amax, a.qs[j])
				}
			}
			continue
		}
		if d := math.Abs(float64(a.s[b]) - sum); d > 1e-6*amax*32 {
			t.Fatalf("%s block %d: sum %g, want %g", name, b, a.s[b], sum)
		}
		if a.d[b] != float32(amax)/127 {
			t.Fatalf("%s block %d: scale %g, want %g", name, b, a.d[b], float32(amax)/127)
		}
		top := 0
		for j, v := range x[b*32 : b*32+32] {
			q := a.qs[b*32+j]
			if q == -128 {
				t.Fatalf("%s: quant −128 at block %d", name, b)
			}
			if err := math.Abs(float64(v) - float64(a.d[b])*float64(q)); err > float64(a.d[b])*0.5001+1e-30 {
				t.Fatalf("%s block %d elem %d: %g rounds to %d·%g (error %g > half a step)", name, b, j, v, q, a.d[b], err)
			}
			top = max(top, int(math.Abs(float64(q))))
		}
		if amax > 0 && top != 127 {
			t.Fatalf("%s block %d: largest quant %d, want 127", name, b, top)
		}
	}
	nbPad := (nb + 15) &^ 15
	for i := nb * 32; i < nbPad*32; i++ {
		if a.qs[i] != 0 {
			t.Fatalf("%s: padding quant %d is %d", name, i, a.qs[i])
		}
	}
	for b := nb; b < nbPad; b++ {
		if a.d[b] != 0 || a.s[b] != 0 {
			t.Fatalf("%s: padding block %d has scale %g sum %g", name, b, a.d[b], a.s[b])
		}
	}
}

// q8Ref is the integer product in float64 from the blocks' definition: per
// block d·dx·Σ q·qx (+ m·Σx), with the quants read one element at a time from
// the widened reference row (not the kernels' nibble or lane layout).
func q8Ref(w Mat, r int, a q8Act) float64 {
	nb := w.Cols / QuantBlock
	rb := QuantRowBytes(w.DType, w.Cols)
	row := w.Q[r*rb : (r+1)*rb]
	var s float64
	for b := 0; b < nb; b++ {
		var isum int64
		for j := 0; j < 32; j++ {
			var q int64
			if w.DType == Q4_1 {
				q = int64(row[b*16+j%16] >> (4 * (j / 16)) & 0xF)
			} else {
				q = int64(int8(row[b*32+j]))
			}
			isum += q * int64(a.qs[b*32+j])
		}
		if w.DType == Q4_1 {
			s += float64(f16At(row[nb*16:], b))*float64(a.d[b])*float64(isum) + float64(f16At(row[nb*18:], b))*float64(a.s[b])
		} else {
			s += float64(f16At(row[nb*32:], b)) * float64(a.d[b]) * float64(isum)
		}
	}
	return s
}

// TestQ8ActMatVec: the integer product of every kernel set against the
// float64 reference of the same quantized activation, on edge shapes (1–3
// trailing rows, block counts around the groups of 16), and the kernel sets
// against each other bit for bit. Extreme quants (all 15 / all −128 weights,
// ±127 activations) check the int32 sums do not overflow.
func TestQ8ActMatVec(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 8))
	for _, d := range []DType{Q4_1, Q8_0} {
		for _, shape := range [][2]int{{1, 32}, {2, 64}, {3, 96}, {4, 160}, {5, 480}, {7, 512}, {8, 544}, {9, 576}, {6, 1024}, {5, 1056}, {3, 1536}} {
			N, K := shape[0], shape[1]
			for _, extreme := range []bool{false, true} {
				w := randQuantMat(rng, d, N, K)
				x := make([]float32, K)
				for i := range x {
					x[i] = float32(rng.NormFloat64())
				}
				rb, nb, qBytes, top := QuantRowBytes(d, K), K/32, K/2, byte(0xFF)
				if d == Q8_0 {
					qBytes, top = K, 0x80
				}
				if extreme {
					for i := range w.Q {
						if i%rb < qBytes {
							w.Q[i] = top
						}
					}
					for i := range x {
						x[i] = -1
					}
				}
				w.Q8Act = true
				a := carveQ8(make([]float32, q8Floats(K/32)), K/32)
				genericQuant.quantizeQ8(a, x)
				var first []float32
				for _, p := range testPools(t) {
					name := fmt.Sprintf("%s/%s/%dx%d/extreme=%v", p.Kernels().Name(), d, N, K, extreme)
					got := make([]float32, N)
					MatMul(p, got, x, 1, w)
					for o, v := range got {
						want := q8Ref(w, o, a)
						var mag float64
						for b := 0; b < nb; b++ {
							mag += math.Abs(float64(f16At(w.Q[o*rb+qBytes:], b))) * float64(a.d[b]) * 32 * 128
							if d == Q4_1 {
								mag += math.Abs(float64(f16At(w.Q[o*rb+nb*18:], b)) * float64(a.s[b]))
							}
						}
						if diff := math.Abs(float64(v) - want); diff > 1e-5*mag+1e-30 {
							t.Fatalf("%s: out %d: %g, want %g (|diff| %g, scale of terms %g)", name, o, v, want, diff, mag)
						}
					}
					if first == nil {
						first = got
						continue
					}
					for o := range got {
						if math.Float32bits(got[o]) != math.Float32bits(first[o]) {
							t.Fatalf("%s: out %d: %g, the generic set %g (bits differ)", name, o, got[o], first[o])
						}
					}
				}
			}
		}
	}
}

// TestQ8ActRoundingBound: against the exact f32-activation product, the
// integer one differs by at most the activation's rounding, Σ|w|·dx/2 per
// output — the accuracy change the Q8Act flag buys its speed with.
func TestQ8ActRoundingBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	for _, d := range []DType{Q4_1, Q8_0} {
		N, K := 37, 576
		w := randQuantMat(rng, d, N, K)
		wf := dequantRef(w)
		x := make([]float32, K)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		a := carveQ8(make([]float32, q8Floats(K/32)), K/32)
		genericQuant.quantizeQ8(a, x)
		for _, p := range testPools(t) {
			exact, approx := make([]float32, N), make([]float32, N)
			MatMul(p, exact, x, 1, w)
			w.Q8Act = true
			MatMul(p, approx, x, 1, w)
			w.Q8Act = false
			changed := 0
			for o := 0; o < N; o++ {
				var bound, mag float64
				for c := 0; c < K; c++ {
					bound += math.Abs(float64(wf[o*K+c])) * float64(a.d[c/32]) / 2
					mag += math.Abs(float64(wf[o*K+c]) * float64(x[c]))
				}
				diff := math.Abs(float64(approx[o]) - float64(exact[o]))
				if diff > bound+1e-5*mag {
					t.Fatalf("%s/%s out %d: integer %g, exact %g: |diff| %g over the rounding bound %g", p.Kernels().Name(), d, o, approx[o], exact[o], diff, bound)
				}
				if approx[o] != exact[o] {
					changed++
				}
			}
			if changed == 0 {
				t.Fatalf("%s/%s: Q8Act changed no output: the integer path did not run", p.Kernels().Name(), d)
			}
		}
	}
}

package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol*(1+math.Abs(b)) }

// Element-wise kernels on odd lengths and unaligned starts, every kernel set.
func TestElementwiseMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	lengths := []int{0, 1, 3, 15, 16, 17, 31, 33, 64, 100, 1000}
	for _, p := range testPools(t) {
		ks := p.Kernels()
		for _, n := range lengths {
			name := fmt.Sprintf("%s/%d", ks.Name(), n)
			a, b := randVec(rng, n), randVec(rng, n)

			var want float64
			for i := range a {
				want += float64(a[i]) * float64(b[i])
			}
			if got := ks.Dot(a, b); !near(float64(got), want, 1e-5*float64(n+1)) {
				t.Errorf("%s dot: got %g want %g", name, got, want)
			}

			y := append([]float32(nil), b...)
			ks.Axpy(0.7, a, y)
			for i := range y {
				if !near(float64(y[i]), float64(b[i])+0.7*float64(a[i]), 1e-6) {
					t.Fatalf("%s axpy[%d]", name, i)
				}
			}

			y = append([]float32(nil), b...)
			ks.Add(y, a)
			for i := range y {
				if y[i] != b[i]+a[i] {
					t.Fatalf("%s add[%d]: %g", name, i, y[i])
				}
			}

			if n > 0 {
				w := randVec(rng, n)
				dst := make([]float32, n)
				ks.RMSNorm(dst, a, w, 1e-5)
				var ss float64
				for _, v := range a {
					ss += float64(v) * float64(v)
				}
				inv := 1 / math.Sqrt(ss/float64(n)+1e-5)
				for i := range dst {
					if !near(float64(dst[i]), float64(a[i])*inv*float64(w[i]), 1e-5) {
						t.Fatalf("%s rmsnorm[%d]: %g vs %g", name, i, dst[i], float64(a[i])*inv*float64(w[i]))
					}
				}
			}

			g := append([]float32(nil), a...)
			for i := range g {
				g[i] *= 12 // reach the saturated ends of the sigmoid
			}
			g0 := append([]float32(nil), g...)
			ks.SiLUMul(g, b)
			for i := range g {
				x := float64(g0[i])
				if w := x / (1 + math.Exp(-x)) * float64(b[i]); !near(float64(g[i]), w, 2e-6) {
					t.Fatalf("%s silu[%d]: got %g want %g", name, i, g[i], w)
				}
			}

			e := append([]float32(nil), a...)
			for i := range e {
				e[i] *= 50
			}
			e0 := append([]float32(nil), e...)
			if n > 2 {
				e[1] = float32(math.Inf(-1))
			}
			sum := ks.expSub(e, 3)
			var ws float64
			for i := range e {
				w := math.Exp(float64(e0[i]) - 3)
				if n > 2 && i == 1 {
					w = 0
				}
				ws += w
				if !near(float64(e[i]), w, 3e-6) {
					t.Fatalf("%s expSub[%d](%g): got %g want %g", name, i, e0[i], e[i], w)
				}
			}
			if !near(float64(sum), ws, 1e-5) {
				t.Fatalf("%s expSub sum: got %g want %g", name, sum, ws)
			}

			mx := append([]float32(nil), a...)
			ks.vmax(mx, b)
			for i := range mx {
				if mx[i] != max(a[i], b[i]) {
					t.Fatalf("%s vmax[%d]", name, i)
				}
			}

			h := make([]uint16, n)
			f := make([]float32, n)
			ks.FromF32(h, a, F16)
			ks.ToF32(f, h, F16)
			for i := range a {
				if h[i] != F32ToF16(a[i]) || f[i] != F16ToF32(h[i]) {
					t.Fatalf("%s f16 round trip [%d]: %#x %g", name, i, h[i], f[i])
				}
			}
			ks.FromF32(h, a, BF16)
			ks.ToF32(f, h, BF16)
			for i := range a {
				if h[i] != F32ToBF16(a[i]) || f[i] != BF16ToF32(h[i]) {
					t.Fatalf("%s bf16 round trip [%d]", name, i)
				}
			}
		}
	}
}

// F16 widening must be exact for every bit pattern, subnormals and Inf included.
func TestF16WideningAllPatterns(t *testing.T) {
	src := make([]uint16, 1<<16)
	for i := range src {
		src[i] = uint16(i)
	}
	for _, p := range testPools(t) {
		dst := make([]float32, len(src))
		p.Kernels().ToF32(dst, src, F16)
		for i, h := range src {
			w := F16ToF32(h)
			if math.Float32bits(dst[i]) != math.Float32bits(w) && !(w != w && dst[i] != dst[i]) {
				t.Fatalf("%s: %#04x → %g, want %g", p.Kernels().Name(), h, dst[i], w)
			}
		}
	}
}

func TestRoPE(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, p := range testPools(t) {
		ks := p.Kernels()
		for _, hd := range []int{2, 8, 10, 16, 34, 64, 128} {
			const heads, positions = 3, 10
			half := hd / 2
			inv := make([]float64, half)
			for i := range inv {
				inv[i] = math.Pow(10000, -2*float64(i)/float64(hd))
			}
			cos, sin := make([]float32, positions*half), make([]float32, positions*half)
			RoPETable(cos, sin, 0, positions, inv)
			for _, inter := range []bool{false, true} {
				x := randVec(rng, heads*hd)
				orig := append([]float32(nil), x...)
				ks.RoPE(x, 7, heads, hd, cos, sin, inter)
				for h := 0; h < heads; h++ {
					for i := 0; i < half; i++ {
						a, b := h*hd+i, h*hd+i+half
						if inter {
							a, b = h*hd+2*i, h*hd+2*i+1
						}
						ang := 7 * inv[i]
						wa := float64(orig[a])*math.Cos(ang) - float64(orig[b])*math.Sin(ang)
						wb := float64(orig[a])*math.Sin(ang) + float64(orig[b])*math.Cos(ang)
						if !near(float64(x[a]), wa, 1e-5) || !near(float64(x[b]), wb, 1e-5) {
							t.Fatalf("%s hd=%d interleaved=%v head %d pair %d: got (%g,%g) want (%g,%g)",
								ks.Name(), hd, inter, h, i, x[a], x[b], wa, wb)
						}
					}
				}
			}
		}
	}
}

// Narrowing must round exactly like F32ToBF16 / F32ToF16 on arbitrary bit patterns:
// ties, subnormals, overflow, infinities and NaNs (NaN only has to stay NaN for f16).
func TestNarrowingBitPatterns(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	src := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()),
		math.Float32frombits(0x7f800001), math.Float32frombits(0xffc00000), math.Float32frombits(0x3f808000),
		math.Float32frombits(0x3f818000), math.Float32frombits(0x7f7fffff), math.Float32frombits(1), 65520, 65519, 6e-8, 3e-8}
	for i := 0; i < 20000; i++ {
		src = append(src, math.Float32frombits(rng.Uint32()))
	}
	src = src[1:] // unaligned start
	for _, p := range testPools(t) {
		ks := p.Kernels()
		got := make([]uint16, len(src))
		ks.FromF32(got, src, BF16)
		for i, f := range src {
			if got[i] != F32ToBF16(f) {
				t.Fatalf("%s bf16(%#08x) = %#04x, want %#04x", ks.Name(), math.Float32bits(f), got[i], F32ToBF16(f))
			}
		}
		ks.FromF32(got, src, F16)
		for i, f := range src {
			want := F32ToF16(f)
			isNaN := func(h uint16) bool { return h&0x7c00 == 0x7c00 && h&0x3ff != 0 }
			if got[i] != want && !(isNaN(want) && isNaN(got[i])) {
				t.Fatalf("%s f16(%#08x) = %#04x, want %#04x", ks.Name(), math.Float32bits(f), got[i], want)
			}
		}
	}
}

// The softmax's exponential (expSub, expSubV, expRows) on every kernel set
// against math.Exp over the range softmax sees: logit − running max from −Inf
// up to rescaleSlack above it. Results that are normal floats (x ≥ −87.3) must
// be within 3 ulp (relative 3·2⁻²³); below that, within 2⁻¹²⁶ (the smallest
// normal: a softmax sum holds exp(0) = 1 for its maximum, so a subnormal term
// never shows; the AVX2 set flushes them to 0); from −104 down, and at −Inf,
// exactly 0 (masked slots must weigh nothing).
func TestSoftmaxExpAccuracy(t *testing.T) {
	var xs []float32
	for x := -110.0; x <= rescaleSlack; x += 0.00173 {
		xs = append(xs, float32(x))
	}
	xs = append(xs, float32(math.Inf(-1)), 0, -0.5*float32(math.Ln2), 0.5*float32(math.Ln2), rescaleSlack, -104, -87.3)
	check := func(t *testing.T, what string, x []float32, got []float32) {
		t.Helper()
		worst := 0.0
		for i, xi := range x {
			want := math.Exp(float64(xi))
			g := float64(got[i])
			switch {
			case xi <= -104:
				if g != 0 {
					t.Fatalf("%s(%g) = %g, want exactly 0", what, xi, g)
				}
			case xi >= -87.3:
				rel := math.Abs(g-want) / want
				worst = max(worst, rel)
				if rel > 3*math.Pow(2, -23) {
					t.Fatalf("%s(%g) = %g, want %g (relative error %.2g)", what, xi, g, want, rel)
				}
			default:
				if math.Abs(g-want) > math.Pow(2, -126) {
					t.Fatalf("%s(%g) = %g, want %g (subnormal)", what, xi, g, want)
				}
			}
		}
		t.Logf("%s: max relative error %.3g (%.2f ulp)", what, worst, worst/math.Pow(2, -23))
	}
	for _, p := range testPools(t) {
		ks := p.Kernels()
		t.Run(ks.Name(), func(t *testing.T) {
			e := append([]float32(nil), xs...)
			ks.expSub(e, 0)
			check(t, "expSub", xs, e)

			e = append([]float32(nil), xs...)
			ks.expSubV(e, make([]float32, len(e)), make([]float32, len(e)))
			check(t, "expSubV", xs, e)

			// expRows: the values laid out as a block of 48 columns (three
			// strips) with a row stride of 53.
			const w, ld = 48, 53
			n := len(xs) / w
			blk := make([]float32, n*ld)
			for j := 0; j < n; j++ {
				copy(blk[j*ld:j*ld+w], xs[j*w:(j+1)*w])
			}
			ks.expRows(blk, ld, n, make([]float32, w), make([]float32, w))
			got := make([]float32, n*w)
			for j := 0; j < n; j++ {
				copy(got[j*w:(j+1)*w], blk[j*ld:j*ld+w])
			}
			check(t, "expRows", xs[:n*w], got)
		})
	}
}

// colMax and expRows against plain loops on widths around the 16-column strip
// (tails, whole strips), row counts around the 4- and 2-row steps, and row
// strides wider than the width: columns past the width are left as they were.
func TestColMaxExpRowsMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	for _, p := range testPools(t) {
		ks := p.Kernels()
		for _, w := range []int{1, 7, 15, 16, 17, 32, 33, 91, 96} {
			for _, n := range []int{1, 2, 3, 4, 5, 9, 96} {
				ld := w + rng.IntN(20)
				name := fmt.Sprintf("%s/w=%d/n=%d/ld=%d", ks.Name(), w, n, ld)
				x := randVec(rng, n*ld)
				for i := range x {
					x[i] *= 20
				}
				if n > 2 && w > 3 {
					x[ld+2] = float32(math.Inf(-1)) // a masked logit
				}
				mx := randVec(rng, w)
				want := append([]float32(nil), mx...)
				for j := 0; j < n; j++ {
					for c := 0; c < w; c++ {
						want[c] = max(want[c], x[j*ld+c])
					}
				}
				ks.colMax(mx, x, ld, n)
				for c := range want {
					if mx[c] != want[c] {
						t.Fatalf("%s colMax[%d]: got %g want %g", name, c, mx[c], want[c])
					}
				}
				x0 := append([]float32(nil), x...)
				acc := randVec(rng, w)
				wantAcc := make([]float64, w)
				for c := range acc {
					wantAcc[c] = float64(acc[c])
				}
				ks.expRows(x, ld, n, mx, acc)
				for j := 0; j < n; j++ {
					for c := 0; c < ld; c++ {
						i := j*ld + c
						if c >= w {
							if x[i] != x0[i] {
								t.Fatalf("%s: column %d past the width changed", name, c)
							}
							continue
						}
						e := math.Exp(float64(x0[i] - mx[c]))
						wantAcc[c] += e
						if !near(float64(x[i]), e, 1e-6) {
							t.Fatalf("%s expRows[%d][%d]: got %g want %g", name, j, c, x[i], e)
						}
					}
				}
				for c := range acc {
					if !near(float64(acc[c]), wantAcc[c], 1e-5) {
						t.Fatalf("%s expRows sum[%d]: got %g want %g", name, c, acc[c], wantAcc[c])
					}
				}
			}
		}
	}
}

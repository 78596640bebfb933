//go:build cuda

package gpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"cacheclip/kernels"
)

// Each kernel against the CPU reference op on the same f32 inputs. Tolerances:
// exact for data movement and dtype conversion; 1e-5 relative for elementwise
// math (different libm, f32 rounding order); 1e-4 relative to the output scale
// for attention (f32 statistics on the GPU, f64 in the reference); 1e-4 of
// Σ|x·w| for the bf16 GEMM (same bf16 inputs, accumulation order only).

type devT struct {
	t *testing.T
	d *Device
}

func (x devT) put(s any) Buffer {
	x.t.Helper()
	unlock := x.d.bind()
	defer unlock()
	var b Buffer
	var err error
	switch v := s.(type) {
	case []float32:
		b, err = allocUpload(x.d, v)
	case []int32:
		b, err = allocUpload(x.d, v)
	case []uint16:
		b, err = allocUpload(x.d, v)
	case []uint8:
		b, err = allocUpload(x.d, v)
	case []float64:
		b, err = allocUpload(x.d, v)
	}
	if err != nil {
		x.t.Fatal(err)
	}
	x.t.Cleanup(func() { x.d.Free(b) })
	return b
}

func (x devT) zeros(n int) Buffer { return x.put(make([]float32, n)) }

func (x devT) f32(b Buffer, n int) []float32 {
	x.t.Helper()
	unlock := x.d.bind()
	defer unlock()
	out := make([]float32, n)
	if err := download(x.d, out, b.Ptr); err != nil {
		x.t.Fatal(err)
	}
	return out
}

func (x devT) u16(b Buffer, n int) []uint16 {
	x.t.Helper()
	unlock := x.d.bind()
	defer unlock()
	out := make([]uint16, n)
	if err := download(x.d, out, b.Ptr); err != nil {
		x.t.Fatal(err)
	}
	return out
}

func (x devT) flat(name string, n int, args ...any) {
	x.t.Helper()
	unlock := x.d.bind()
	defer unlock()
	if err := x.d.flat(name, int64(n), args...); err != nil {
		x.t.Fatal(err)
	}
}

func (x devT) launch(name string, grid, block [3]uint32, shmem int, args ...any) {
	x.t.Helper()
	unlock := x.d.bind()
	defer unlock()
	if shmem > 48*1024 {
		if err := x.d.drv.check("cuFuncSetAttribute", x.d.drv.cuFuncSetAttribute(x.d.kern.fn[name], cuFuncAttrMaxDynShared, int32(shmem))); err != nil {
			x.t.Fatal(err)
		}
	}
	if err := x.d.launch(name, grid, block, uint32(shmem), args...); err != nil {
		x.t.Fatal(err)
	}
}

func exact(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
			t.Fatalf("%s: element %d = %g, want %g", what, i, got[i], want[i])
		}
	}
}

func within(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if d := maxRel(got, want); d > tol || math.IsNaN(d) {
		t.Fatalf("%s: max error %.3g relative to the output scale, tolerance %.1g", what, d, tol)
	}
}

func TestKernelsElementwise(t *testing.T) {
	x := devT{t, openDevice(t)}
	rng := rand.New(rand.NewPCG(1, 2))
	const rows, n = 7, 333
	in := randF32(rng, rows*n, 2)
	w := randF32(rng, n, 1)

	want := make([]float32, rows*n)
	for r := 0; r < rows; r++ {
		kernels.RMSNorm(want[r*n:(r+1)*n], in[r*n:(r+1)*n], w, 1e-5)
	}
	out := x.zeros(rows * n)
	x.launch("rmsnorm_f32", [3]uint32{rows, 1, 1}, [3]uint32{256, 1, 1}, 0, out, x.put(in), x.put(w), rows, n, float32(1e-5))
	within(t, "rmsnorm", x.f32(out, rows*n), want, 1e-5)

	g, u := randF32(rng, 1000, 4), randF32(rng, 1000, 1)
	gb := x.put(g)
	x.flat("silu_mul", 1000, gb, x.put(u), int64(1000))
	want = append([]float32(nil), g...)
	kernels.SiLUMul(want, u)
	within(t, "silu_mul", x.f32(gb, 1000), want, 1e-5)

	a, b := randF32(rng, 500, 1), randF32(rng, 500, 1)
	ab := x.put(a)
	x.flat("add_f32", 500, ab, x.put(b), int64(500))
	want = append([]float32(nil), a...)
	kernels.Add(want, b)
	exact(t, "add_f32", x.f32(ab, 500), want)

	bias := randF32(rng, 50, 1)
	xb := x.put(a)
	x.flat("add_bias_rows", 500, xb, x.put(bias), 10, 50)
	want = append([]float32(nil), a...)
	for r := 0; r < 10; r++ {
		kernels.Add(want[r*50:(r+1)*50], bias)
	}
	exact(t, "add_bias_rows", x.f32(xb, 500), want)
}

func TestKernelsConvert(t *testing.T) {
	x := devT{t, openDevice(t)}
	rng := rand.New(rand.NewPCG(3, 4))
	vals := append(randF32(rng, 1000, 10), 0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), 1e-40, -1e-40, 3.4e38, 65504, 70000, 6e-8, 1.0009765625)
	n := len(vals)
	bb := x.put(make([]uint16, n))
	x.flat("f32_to_bf16_k", n, bb, x.put(vals), int64(n))
	got := x.u16(bb, n)
	want := make([]uint16, n)
	for i, v := range vals {
		want[i] = kernels.F32ToBF16(v)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("f32_to_bf16(%g) = %#x, want %#x", vals[i], got[i], want[i])
		}
	}
	bits := make([]uint16, 1<<16)
	for i := range bits {
		bits[i] = uint16(i)
	}
	src := x.put(bits)
	for _, c := range []struct {
		name string
		dt   kernels.DType
		one  func(uint16) float32
	}{{"bf16_to_f32_k", kernels.BF16, kernels.BF16ToF32}, {"f16_to_f32_k", kernels.F16, kernels.F16ToF32}} {
		out := x.zeros(len(bits))
		x.flat(c.name, len(bits), out, src, int64(len(bits)))
		w := make([]float32, len(bits))
		for i, b := range bits {
			w[i] = c.one(b)
		}
		exact(t, c.name+" over all 65536 bit patterns", x.f32(out, len(bits)), w)
	}
}

func TestKernelsRows(t *testing.T) {
	x := devT{t, openDevice(t)}
	rng := rand.New(rand.NewPCG(5, 6))
	const vocab, hidden, rows = 50, 24, 9
	table := randF32(rng, vocab*hidden, 1)
	tokens := []int32{3, 0, 49, 3, 17, 8, 8, 21, 1}
	for _, dt := range []kernels.DType{kernels.F32, kernels.F16, kernels.BF16} {
		m := kernels.Mat{DType: dt, Rows: vocab, Cols: hidden}
		var tb Buffer
		if dt == kernels.F32 {
			m.F32 = table
			tb = x.put(table)
		} else {
			m.U16 = make([]uint16, len(table))
			kernels.FromF32(m.U16, table, dt)
			tb = x.put(m.U16)
		}
		out := x.zeros(rows * hidden)
		x.flat("embed_"+dt.String(), rows*hidden, out, tb, x.put(tokens), rows, hidden)
		want := make([]float32, rows*hidden)
		for r, tk := range tokens {
			m.RowF32(int(tk), want[r*hidden:(r+1)*hidden])
		}
		exact(t, "embed_"+dt.String(), x.f32(out, rows*hidden), want)
	}
	src := randF32(rng, 20*hidden, 1)
	idx := []int32{19, 0, 7, 7, 3}
	g := x.zeros(len(idx) * hidden)
	x.flat("gather_rows_f32", len(idx)*hidden, g, x.put(src), x.put(idx), len(idx), hidden)
	var want []float32
	for _, i := range idx {
		want = append(want, src[int(i)*hidden:(int(i)+1)*hidden]...)
	}
	exact(t, "gather_rows", x.f32(g, len(idx)*hidden), want)

	dst := randF32(rng, 20*hidden, 1)
	sidx := []int32{4, 19, 0}
	rowsIn := randF32(rng, 3*hidden, 1)
	db := x.put(dst)
	x.flat("scatter_rows_f32", 3*hidden, db, x.put(rowsIn), x.put(sidx), 3, hidden)
	want = append([]float32(nil), dst...)
	for i, s := range sidx {
		copy(want[int(s)*hidden:(int(s)+1)*hidden], rowsIn[i*hidden:(i+1)*hidden])
	}
	exact(t, "scatter_rows", x.f32(db, 20*hidden), want)
}

func TestKernelsRoPE(t *testing.T) {
	x := devT{t, openDevice(t)}
	rng := rand.New(rand.NewPCG(7, 8))
	for _, interleaved := range []bool{false, true} {
		for _, hd := range []int{8, 64, 128} {
			const rows, heads = 6, 3
			half := hd / 2
			inv := make([]float64, half)
			for i := range inv {
				inv[i] = 1 / math.Pow(1e6, float64(2*i)/float64(hd))
			}
			pos := []int32{0, 1, 17, 4095, 16000, 32767}
			in := randF32(rng, rows*heads*hd, 1)
			cosB, sinB := x.zeros(rows*half), x.zeros(rows*half)
			x.flat("rope_table", rows*half, cosB, sinB, x.put(pos), x.put(inv), rows, half)
			xb := x.put(in)
			x.flat("rope_apply", rows*heads*half, xb, cosB, sinB, rows, heads, hd, boolInt(interleaved))
			want := append([]float32(nil), in...)
			cos, sin := make([]float32, half), make([]float32, half)
			for r, p := range pos {
				kernels.RoPETable(cos, sin, p, 1, inv)
				kernels.RoPE(want[r*heads*hd:(r+1)*heads*hd], 0, heads, hd, cos, sin, interleaved)
			}
			within(t, "rope_apply", x.f32(xb, len(in)), want, 1e-5)

			// Re-rotation by a per-slot delta, some zero.
			from := []int32{5, 5, 100, 0, 16000, 7}
			to := []int32{5, 900, 10, 30000, 16001, 7}
			kb := x.put(in)
			x.flat("rope_rerotate", rows*heads*half, kb, x.put(from), x.put(to), x.put(inv), rows, heads, hd, boolInt(interleaved))
			want = append([]float32(nil), in...)
			for r := range from {
				if d := to[r] - from[r]; d != 0 {
					kernels.RoPETable(cos, sin, d, 1, inv)
					kernels.RoPE(want[r*heads*hd:(r+1)*heads*hd], 0, heads, hd, cos, sin, interleaved)
				}
			}
			within(t, "rope_rerotate", x.f32(kb, len(in)), want, 1e-5)
		}
	}
}

func TestKernelAttention(t *testing.T) {
	d := openDevice(t)
	x := devT{t, d}
	rng := rand.New(rand.NewPCG(9, 10))
	cases := []struct {
		name               string
		heads, kvHeads, hd int
		rows, slots        int
		groups             int
		probs              bool
	}{
		{"mha hd16", 4, 4, 16, 13, 70, 0, false},
		{"gqa hd8 probs", 8, 2, 8, 5, 33, 0, true},
		{"qwen7b shape", 28, 4, 128, 40, 300, 0, false},
		{"gqa7 hd64 one group", 14, 2, 64, 9, 100, 1, true},
		{"ape 3 groups", 4, 2, 32, 11, 150, 3, true},
		{"4 groups hd256", 8, 1, 256, 6, 90, 4, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			QD, KD := c.heads*c.hd, c.kvHeads*c.hd
			q := randF32(rng, c.rows*QD, 1)
			k := randF32(rng, c.slots*KD, 1)
			v := randF32(rng, c.slots*KD, 1)
			// Slot positions out of order, some unused (-1), some beyond every row.
			slotPos := make([]int32, c.slots)
			for j := range slotPos {
				slotPos[j] = int32(rng.IntN(c.slots + 20))
				if rng.IntN(10) == 0 {
					slotPos[j] = -1
				}
			}
			rowPos := make([]int32, c.rows)
			for r := range rowPos {
				rowPos[r] = int32(rng.IntN(c.slots + 10))
			}
			rowPos[0] = 0 // sees only slots at position 0, often none
			spec := kernels.AttnSpec{Heads: c.heads, KVHeads: c.kvHeads, HeadDim: c.hd, Scale: float32(1 / math.Sqrt(float64(c.hd)))}
			g := &seqGroups{}
			var sgB, tB, lB Buffer
			nG := 1
			if c.groups > 0 {
				nG = c.groups
				spec.SlotGroup = make([]uint8, c.slots)
				for j := range spec.SlotGroup {
					spec.SlotGroup[j] = uint8(rng.IntN(c.groups))
				}
				for i := 0; i < c.groups; i++ {
					spec.GroupTemp = append(spec.GroupTemp, float32(0.5+rng.Float64()))
					spec.GroupLSEScale = append(spec.GroupLSEScale, float32(0.5+rng.Float64()))
				}
				g.n = c.groups
				sgB, tB, lB = x.put(spec.SlotGroup), x.put(spec.GroupTemp), x.put(spec.GroupLSEScale)
			} else {
				g = nil
			}
			if c.probs {
				spec.Probs = make([]float32, c.rows*c.heads*c.slots)
			}
			want := make([]float32, c.rows*QD)
			kernels.Attention(kernels.NewPool(1), want, q, rowPos, k, v, slotPos, spec)

			name, qpw, err := attnKernel(g)
			if err != nil {
				t.Fatal(err)
			}
			out := x.zeros(c.rows * QD)
			stats := x.zeros(c.rows * c.heads * nG * 2)
			qb := x.put(q)
			kb, rp, sp := x.put(k), x.put(rowPos), x.put(slotPos)
			G := c.heads / c.kvHeads
			blocks := (c.rows*G + attnWarps*qpw - 1) / (attnWarps * qpw)
			scale := spec.Scale
			x.launch(name, [3]uint32{uint32(blocks), uint32(c.kvHeads), 1}, [3]uint32{attnWarps * 32, 1, 1}, attnShared(attnWarps*qpw, c.hd),
				out, stats, qb, rp, c.rows, kb, x.put(v), sp, c.slots, sgB, tB, lB, nG, c.heads, c.kvHeads, c.hd, scale)
			within(t, "attention output", x.f32(out, c.rows*QD), want, 1e-4)
			if !c.probs {
				return
			}
			pb := x.zeros(len(spec.Probs))
			x.launch("attn_probs", [3]uint32{uint32(c.rows * c.heads), 1, 1}, [3]uint32{128, 1, 1}, 0,
				pb, stats, qb, rp, c.rows, kb, sp, c.slots, sgB, tB, lB, nG, c.heads, c.kvHeads, c.hd, scale)
			got := x.f32(pb, len(spec.Probs))
			for i := range got {
				if math.Abs(float64(got[i]-spec.Probs[i])) > 1e-4 {
					t.Fatalf("probability %d = %g, reference %g", i, got[i], spec.Probs[i])
				}
			}
		})
	}
}

func TestKernelGEMM(t *testing.T) {
	d := openDevice(t)
	x := devT{t, d}
	rng := rand.New(rand.NewPCG(11, 12))
	for _, s := range [][3]int{{1, 64, 160}, {37, 896, 128}, {300, 512, 1000}, {5, 3584, 512}} {
		rows, in, out := s[0], s[1], s[2]
		xs := roundTo(kernels.BF16, randF32(rng, rows*in, 1))
		w := kernels.Mat{DType: kernels.BF16, Rows: out, Cols: in, U16: make([]uint16, out*in)}
		kernels.FromF32(w.U16, randF32(rng, out*in, 1/math.Sqrt(float64(in))), kernels.BF16)
		want := make([]float32, rows*out)
		kernels.MatMul(kernels.NewPool(1), want, xs, rows, w)
		xu := make([]uint16, len(xs))
		kernels.FromF32(xu, xs, kernels.BF16)
		y := x.zeros(rows * out)
		func() {
			unlock := d.bind()
			defer unlock()
			if err := d.linear(y.Ptr, x.put(xu).Ptr, x.put(w.U16).Ptr, rows, in, out); err != nil {
				t.Fatal(err)
			}
		}()
		within(t, "cublas bf16 gemm", x.f32(y, rows*out), want, 1e-4)
	}
}

func TestKernelFillNormal(t *testing.T) {
	x := devT{t, openDevice(t)}
	const n = 1 << 20
	b := x.zeros(n)
	x.flat("fill_normal_f32", n, b, int64(n), uint64(42), float32(1), float32(0.5))
	v := x.f32(b, n)
	var s, ss float64
	for _, f := range v {
		s += float64(f)
		ss += float64(f) * float64(f)
	}
	mean := s / n
	std := math.Sqrt(ss/n - mean*mean)
	if math.Abs(mean-1) > 0.005 || math.Abs(std-0.5) > 0.005 {
		t.Fatalf("fill_normal: mean %.4f std %.4f, want 1 and 0.5", mean, std)
	}
}

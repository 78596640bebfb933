package gguf

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"testing"

	"cacheclip/kernels"
)

// TestPlanarMatchesDequantize: the planar rows the kernels read widen to the
// same values as Dequantize on gguf-py's vectors (testdata/dequant.json), for
// every type a native load keeps, one row and several rows per tensor.
func TestPlanarMatchesDequantize(t *testing.T) {
	vectors := readDequantVectors(t)
	pools := []*kernels.Pool{}
	for _, k := range kernels.Available() {
		p, err := kernels.NewPoolWith(kernels.PoolOptions{Threads: 1, Kernels: k.Name()})
		if err != nil {
			t.Fatal(err)
		}
		pools = append(pools, p)
	}
	for _, name := range []string{"Q4_0", "Q4_1", "Q8_0"} {
		v := vectors[name]
		typ := GGMLType(v.Type)
		raw, _ := base64.StdEncoding.DecodeString(v.Bytes)
		want := make([]float32, v.N)
		if err := Dequantize(want, raw, typ); err != nil {
			t.Fatal(err)
		}
		for _, rows := range []int{1, v.N / 64} {
			cols := v.N / rows
			m, ok, err := planar(typ, rows, cols, raw)
			if err != nil || !ok {
				t.Fatalf("%s: planar: ok %v, %v", name, ok, err)
			}
			if err := m.Validate(); err != nil {
				t.Fatal(err)
			}
			for _, p := range pools {
				got := make([]float32, cols)
				for r := 0; r < rows; r++ {
					p.Kernels().RowF32(m, r, got)
					for c, g := range got {
						// Bits, except that Q4_0's (8−8)·d is −0 for d < 0 where
						// 8d + (−8d) is +0: equal values.
						if w := want[r*cols+c]; math.Float32bits(g) != math.Float32bits(w) && !(typ == GGMLQ4_0 && g == w) {
							t.Fatalf("%s %s rows %d: [%d][%d] = %g, Dequantize %g", name, p.Kernels().Name(), rows, r, c, g, w)
						}
					}
				}
			}
		}
	}
}

// A Q4_0 block whose −8·d overflows f16 cannot be held as Q4_1: the tensor is
// widened instead (ok false), never stored wrong.
func TestPlanarQ4_0Overflow(t *testing.T) {
	blk := make([]byte, 18)
	binary.LittleEndian.PutUint16(blk, kernels.F32ToF16(16384))
	if _, ok, err := planar(GGMLQ4_0, 1, 32, blk); ok || err != nil {
		t.Fatalf("ok %v, err %v; want a refusal", ok, err)
	}
	if _, ok, err := planar(GGMLQ6_K, 1, 256, make([]byte, 210)); ok || err != nil {
		t.Fatalf("Q6_K: ok %v, err %v; want not kept", ok, err)
	}
	if _, _, err := planar(GGMLQ8_0, 2, 32, make([]byte, 34)); err == nil {
		t.Fatal("short Q8_0 data: no error")
	}
}

// A native load of the SmolLM2 file keeps every matrix in its blocks and has
// the f32 load's fingerprint (shards built either way serve both).
func TestSmolLM2NativeWeights(t *testing.T) {
	nat, f32 := smolModel(t, true), smolModel(t, false)
	rep := smolReport[Options{Native: true}]
	if rep.Native["Q4_1"] != 7*nat.Config.Layers || rep.Native["Q8_0"] != 1 || len(rep.Widened) != 0 {
		t.Errorf("native load: %v", rep)
	}
	if nat.W.Layers[0].Wq.DType != kernels.Q4_1 || nat.W.Embed.DType != kernels.Q8_0 {
		t.Errorf("native dtypes: Wq %s, embed %s", nat.W.Layers[0].Wq.DType, nat.W.Embed.DType)
	}
	if nat.Fingerprint() != f32.Fingerprint() {
		t.Error("native and f32 loads of one file have different fingerprints")
	}
	var nb, fb int64
	for _, m := range []*struct{ a, b kernels.Mat }{{nat.W.Embed, f32.W.Embed}} {
		nb, fb = nb+m.a.Bytes(), fb+m.b.Bytes()
	}
	for l := range nat.W.Layers {
		A, B := &nat.W.Layers[l], &f32.W.Layers[l]
		for _, p := range [][2]kernels.Mat{{A.Wq, B.Wq}, {A.Wk, B.Wk}, {A.Wv, B.Wv}, {A.Wo, B.Wo}, {A.Wgate, B.Wgate}, {A.Wup, B.Wup}, {A.Wdown, B.Wdown}} {
			nb, fb = nb+p[0].Bytes(), fb+p[1].Bytes()
			// Every row widens to the f32 load's values exactly (Q/K rows un-permuted alike).
			for _, r := range []int{0, p[0].Rows / 2, p[0].Rows - 1} {
				got, want := make([]float32, p[0].Cols), make([]float32, p[0].Cols)
				p[0].RowF32(r, got)
				p[1].RowF32(r, want)
				for c := range got {
					if got[c] != want[c] {
						t.Fatalf("layer %d row %d col %d: native %g, f32 %g", l, r, c, got[c], want[c])
					}
				}
			}
		}
	}
	t.Logf("weight matrices: native %.1f MiB, f32 %.1f MiB", float64(nb)/(1<<20), float64(fb)/(1<<20))
}

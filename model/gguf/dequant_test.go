package gguf

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"testing"
)

// TestDequantizeMatchesGGUFPy compares every supported type with the values
// llama.cpp's gguf-py dequantize gives for the same blocks
// (testdata/dequant.json, made by tools/ggufquant/gen.py).
func TestDequantizeMatchesGGUFPy(t *testing.T) {
	vectors := readDequantVectors(t)
	for _, name := range []string{"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"} {
		t.Run(name, func(t *testing.T) {
			v, ok := vectors[name]
			if !ok {
				t.Fatalf("no vectors for %s", name)
			}
			typ := GGMLType(v.Type)
			if typ.String() != name {
				t.Fatalf("type code %d is %s here", v.Type, typ)
			}
			raw, _ := base64.StdEncoding.DecodeString(v.Bytes)
			wantB, _ := base64.StdEncoding.DecodeString(v.Values)
			if len(wantB) != 4*v.N {
				t.Fatalf("%d value bytes for %d values", len(wantB), v.N)
			}
			got := make([]float32, v.N)
			if err := Dequantize(got, raw, typ); err != nil {
				t.Fatal(err)
			}
			bad := 0
			for i := range got {
				want := math.Float32frombits(binary.LittleEndian.Uint32(wantB[4*i:]))
				// Same f32 operations in a possibly different order: a few ulps.
				if d := math.Abs(float64(got[i] - want)); d > 1e-6*math.Max(1, math.Abs(float64(want))) {
					if bad++; bad <= 5 {
						t.Errorf("value %d (block %d): %v, gguf-py %v", i, i/blockOf(typ), got[i], want)
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d values differ", bad, v.N)
			}
		})
	}
}

func blockOf(t GGMLType) int { return layouts[t].block }

func TestDequantizeRejectsBadSizes(t *testing.T) {
	cases := []struct {
		name string
		typ  GGMLType
		n    int
		src  int
	}{
		{"partial block", GGMLQ4_0, 16, 9},
		{"short source", GGMLQ4_K, 256, 143},
		{"long source", GGMLQ8_0, 32, 35},
		{"unknown type", GGMLType(99), 32, 32},
		{"activation-only type", GGMLQ8_K, 256, 292},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := Dequantize(make([]float32, c.n), make([]byte, c.src), c.typ); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// dequantVector is one type's blocks and gguf-py's values for them.
type dequantVector struct {
	Type   uint32 `json:"type"`
	N      int    `json:"n"`
	Bytes  string `json:"bytes"`
	Values string `json:"values"`
}

func readDequantVectors(t *testing.T) map[string]dequantVector {
	t.Helper()
	b, err := os.ReadFile("testdata/dequant.json")
	if err != nil {
		t.Fatal(err)
	}
	var vectors map[string]dequantVector
	if err := json.Unmarshal(b, &vectors); err != nil {
		t.Fatal(err)
	}
	return vectors
}

package gguf

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func sampleFile(version uint32, align int) []byte {
	b := &builder{version: version, align: align}
	b.str("general.architecture", "llama").u32("general.alignment", uint32(align))
	b.kv("u8", TypeUint8, []byte{200}).kv("i8", TypeInt8, []byte{0xff})
	b.kv("u16", TypeUint16, le(uint16(65000))).kv("i16", TypeInt16, le(int16(-3)))
	b.kv("i32", TypeInt32, le(int32(-7))).kv("u64", TypeUint64, le(uint64(1<<40)))
	b.kv("i64", TypeInt64, le(int64(-1<<40))).kv("f64", TypeFloat64, le(math.Float64bits(2.5)))
	b.f32("f32", 0.25).boolean("yes", true).strs("names", []string{"a", "", "ü"})
	// an array of two arrays of uint8
	nested := append(le(uint32(TypeArray)), le(uint64(2))...)
	for _, n := range []int{1, 2} {
		nested = append(nested, le(uint32(TypeUint8))...)
		nested = append(nested, le(uint64(n))...)
		for i := 0; i < n; i++ {
			nested = append(nested, byte(i+1))
		}
	}
	b.kv("nested", TypeArray, nested)
	b.f32Tensor("a", []float32{1, 2, 3}, 3)
	q := make([]byte, 20*2) // two Q4_1 blocks
	q[0], q[1] = 0x00, 0x3c // d = 1
	b.tensor("b", GGMLQ4_1, q, 32, 2)
	return b.bytes()
}

func TestParseRoundTrip(t *testing.T) {
	for _, c := range []struct {
		version uint32
		align   int
	}{{3, 32}, {2, 32}, {3, 64}, {3, 8}} {
		data := sampleFile(c.version, c.align)
		f, err := Parse("x.gguf", data)
		if err != nil {
			t.Fatalf("v%d align %d: %v", c.version, c.align, err)
		}
		if f.Version != c.version || f.Alignment != uint64(c.align) || f.DataOffset%int64(c.align) != 0 {
			t.Errorf("version %d alignment %d data offset %d", f.Version, f.Alignment, f.DataOffset)
		}
		want := map[string]any{"u8": uint8(200), "i8": int8(-1), "u16": uint16(65000), "i16": int16(-3),
			"i32": int32(-7), "u64": uint64(1 << 40), "i64": int64(-1 << 40), "f64": 2.5, "f32": float32(0.25),
			"yes": true, "general.architecture": "llama",
			"names":  Array{Elem: TypeString, Items: []any{"a", "", "ü"}},
			"nested": Array{Elem: TypeArray, Items: []any{Array{TypeUint8, []any{uint8(1)}}, Array{TypeUint8, []any{uint8(1), uint8(2)}}}}}
		for k, w := range want {
			v, ok := f.Get(k)
			if !ok || !reflect.DeepEqual(v.V, w) {
				t.Errorf("%s = %#v, want %#v", k, v.V, w)
			}
		}
		a, _ := f.Tensor("a")
		vals := make([]float32, 3)
		if err := Dequantize(vals, a.Data, a.Type); err != nil || !reflect.DeepEqual(vals, []float32{1, 2, 3}) {
			t.Errorf("tensor a = %v (%v)", vals, err)
		}
		bt, _ := f.Tensor("b")
		if bt.Elements() != 64 || len(bt.Data) != 40 || bt.Offset%uint64(c.align) != 0 {
			t.Errorf("tensor b: %d elements, %d bytes, offset %d", bt.Elements(), len(bt.Data), bt.Offset)
		}
	}
}

func TestOpenMapsFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.gguf")
	if err := os.WriteFile(p, sampleFile(3, 32), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if s, _, _ := f.String("general.architecture"); s != "llama" {
		t.Errorf("architecture %q", s)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.gguf")); err == nil {
		t.Error("missing file opened")
	}
}

// Bad files fail with the byte offset and the field named, and huge counts
// are errors, not allocations.
func TestParseBadFiles(t *testing.T) {
	header := func(tensors, kvs uint64) func(*bytes.Buffer) {
		return func(w *bytes.Buffer) { w.Write(le(tensors)); w.Write(le(kvs)) }
	}
	good := sampleFile(3, 32)
	cases := []struct {
		name string
		data []byte
		want []string
	}{
		{"empty", nil, []string{"offset 0", "field magic", "truncated"}},
		{"bad magic", append([]byte("GGML"), good[4:]...), []string{"offset 0", "field magic"}},
		{"version 1", append(append([]byte{}, good[:4]...), append(le(uint32(1)), good[8:]...)...), []string{"offset 4", "field version", "1 is not supported"}},
		{"2^60 tensors", (&builder{rawHeader: header(1<<60, 0)}).bytes(), []string{"offset 8", "field tensor_count", "cannot fit"}},
		{"2^60 pairs", (&builder{rawHeader: header(0, 1<<60)}).bytes(), []string{"offset 16", "field metadata_kv_count", "cannot fit"}},
		{"2^60-byte key", bytes.Join([][]byte{[]byte("GGUF"), le(uint32(3)), le(uint64(0)), le(uint64(1)), le(uint64(1 << 60)), []byte("key and more")}, nil), []string{"offset 24", "metadata[0].key", "string of 1152921504606846976 bytes"}},
		{"2^60-byte value", (&builder{}).kv("k", TypeString, le(uint64(1<<60))).bytes(), []string{"offset 37", `metadata "k"`, "string of"}},
		{"2^60-item array", (&builder{}).kv("k", TypeArray, append(le(uint32(TypeUint64)), le(uint64(1<<60))...)).bytes(), []string{"offset 41", `metadata "k" length`, "cannot fit"}},
		{"unknown value type", (&builder{}).kv("k", ValueType(77), []byte{1}).bytes(), []string{"offset 33", `metadata "k"`, "unknown value type 77"}},
		{"unknown element type", (&builder{}).kv("k", TypeArray, append(le(uint32(99)), le(uint64(1))...)).bytes(), []string{`metadata "k" element type`, "unknown value type 99"}},
		{"bool byte 2", (&builder{}).kv("k", TypeBool, []byte{2}).bytes(), []string{"offset 37", "bool byte 2"}},
		{"duplicate key", (&builder{}).u32("k", 1).u32("k", 2).bytes(), []string{"offset 41", `metadata "k"`, "duplicate key"}},
		{"alignment not a power of two", (&builder{}).u32("general.alignment", 24).bytes(), []string{"offset 24", "general.alignment", "power-of-two"}},
		{"alignment of wrong type", (&builder{}).str("general.alignment", "32").bytes(), []string{"general.alignment", "power-of-two"}},
		{"zero dims", (&builder{}).tensor("t", GGMLF32, nil).bytes(), []string{`tensor "t" n_dims`, "0 (want 1 to 4)"}},
		{"row not whole blocks", (&builder{}).tensor("t", GGMLQ4_0, make([]byte, 18), 31).bytes(), []string{`tensor "t"`, "not a multiple"}},
		{"unknown tensor type", (&builder{}).tensor("t", GGMLType(55), make([]byte, 4), 1).bytes(), []string{`tensor "t"`, "ggml_type(55) is not supported"}},
		{"data past the end", (&builder{}).f32Tensor("t", []float32{1}, 1<<40).bytes(), []string{`tensor "t"`, "past the end"}},
		{"dims overflow", (&builder{}).f32Tensor("t", []float32{1}, 1<<40, 1<<40, 1<<40).bytes(), []string{`tensor "t"`, "too large"}},
		{"truncated metadata", good[:len(good)-200], []string{"offset", "cannot fit"}},
		{"truncated data", good[:len(good)-90], []string{"file offset 480", "past the end of the file (486 bytes)"}},
		{"truncated tensor index", good[:430], []string{"offset", "truncated"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("bad.gguf", c.data)
			if err == nil {
				t.Fatal("parsed")
			}
			for _, w := range append(c.want, "bad.gguf") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestParseMisalignedTensorOffset(t *testing.T) {
	data := (&builder{}).f32Tensor("t", []float32{1, 2}, 2).bytes()
	// The offset field is the 8 bytes before the padding that ends the index.
	idx := bytes.Index(data, []byte("t\x01\x00\x00\x00"))
	off := idx + 5 + 8 + 4
	copy(data[off:], le(uint64(4)))
	_, err := Parse("m.gguf", data)
	if err == nil || !strings.Contains(err.Error(), `tensor "t" offset: 4 is not a multiple of the alignment 32`) {
		t.Fatalf("error %v", err)
	}
}

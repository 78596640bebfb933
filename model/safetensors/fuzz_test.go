package safetensors

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// image builds a safetensors file image from a header and a body.
func image(header string, body []byte) []byte {
	b := make([]byte, 8, 8+len(header)+len(body))
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	return append(append(b, header...), body...)
}

// written returns the bytes Write produces for a few small tensors.
func written(tb testing.TB) []byte {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "m.safetensors")
	err := Write(p, []WriteTensor{
		{Name: "a", DType: "F32", Shape: []int{2, 2}, Data: make([]byte, 16)},
		{Name: "b", DType: "BF16", Shape: []int{3}, Data: []byte{1, 2, 3, 4, 5, 6}},
		{Name: "empty", DType: "F16", Shape: []int{0, 4}, Data: nil},
	}, map[string]string{"format": "pt"})
	if err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Headers that claim more than the file holds are errors, never an
// allocation of the claimed size or a read outside the file.
func TestParseRejectsHugeClaims(t *testing.T) {
	huge := make([]byte, 8)
	binary.LittleEndian.PutUint64(huge, 1<<60)
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"header length 2^60", append(huge, `{}`...), "header length"},
		{"header length 2^64-1", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'}, "header length"},
		{"tensor ending at 2^60", image(`{"t":{"dtype":"U8","shape":[1152921504606846976],"data_offsets":[0,1152921504606846976]}}`, nil), "truncated"},
		{"shape product overflows to 0", image(`{"t":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,0]}}`, nil), "shape"},
		{"shape product overflows to the byte count", image(`{"t":{"dtype":"U8","shape":[4611686018427387905,4],"data_offsets":[0,4]}}`, make([]byte, 4)), "shape"},
		{"offsets reversed", image(`{"t":{"dtype":"U8","shape":[1],"data_offsets":[2,1]}}`, make([]byte, 4)), "data_offsets"},
		{"negative dim", image(`{"t":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}`, nil), "negative"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("x.safetensors", c.data)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "x.safetensors") {
				t.Fatalf("err %v, want one naming the file and %q", err, c.want)
			}
		})
	}
}

// FuzzParse: any bytes give a File or an error; never a panic, and every
// tensor of a File lies inside the image with the size its shape needs.
func FuzzParse(f *testing.F) {
	f.Add(written(f))
	f.Add(image(`{"t":{"dtype":"U8","shape":[1152921504606846976],"data_offsets":[0,1152921504606846976]}}`, nil))
	f.Add(image(`{"t":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,0]}}`, nil))
	f.Add(image(`{"__metadata__":{"a":"b"},"x":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz.safetensors", data)
		if err != nil {
			return
		}
		for name, tn := range file.Tensors {
			if cap(tn.Data) > len(data) {
				t.Fatalf("tensor %q: %d bytes from a %d-byte image", name, cap(tn.Data), len(data))
			}
			if n := tn.Elements() * dtypeSize[tn.DType]; n != len(tn.Data) {
				t.Fatalf("tensor %q: shape %v of %s is %d bytes, data %d", name, tn.Shape, tn.DType, n, len(tn.Data))
			}
		}
	})
}

package tokenizer

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type l2cCase struct {
	text    string
	ids     []int32
	decoded string // run.c's decode() of each id after BOS
}

// Expected ids and text come from llama2.c's run.c (karpathy/llama2.c at
// 350e04fe35433e6d2941dce5a1f53308f87058eb, build_tokenizer/encode/decode
// unchanged, gcc), run over the same files; see tools/tokgolden/README.md.
var l2cGolden = map[string][]l2cCase{
	"../../testdata/tokenizers/llama2c/tokenizer.bin": {
		{"Once upon a time", []int32{9038, 2501, 263, 931}, "Once upon a time"},
		{"Once upon a time, there was a little girl named Lily. She loved to play outside.", []int32{9038, 2501, 263, 931, 29892, 727, 471, 263, 2217, 7826, 4257, 365, 2354, 29889, 2296, 18012, 304, 1708, 5377, 29889}, "Once upon a time, there was a little girl named Lily. She loved to play outside."},
		{"Hello world", []int32{15043, 3186}, "Hello world"},
		{"  two leading spaces and trailing  ", []int32{259, 1023, 8236, 8162, 322, 25053, 259}, "  two leading spaces and trailing  "},
		{"Tom said, \"Don't go!\" 123 + 4567 = 4690.", []int32{4335, 1497, 29892, 376, 10310, 29915, 29873, 748, 3850, 29871, 29896, 29906, 29941, 718, 29871, 29946, 29945, 29953, 29955, 353, 29871, 29946, 29953, 29929, 29900, 29889}, "Tom said, \"Don't go!\" 123 + 4567 = 4690."},
		{"line one\nline two\tTabbed", []int32{1196, 697, 13, 1220, 1023, 12, 8863, 2580}, "line one\nline two\tTabbed"},
		{"Café naïve 日本語 🍕 emoji", []int32{315, 28059, 1055, 30085, 345, 29871, 30325, 30346, 30968, 29871, 243, 162, 144, 152, 953, 29877, 2397}, "Café naïve 日本語 🍕 emoji"},
	},
}

func TestLlama2CMatchesRunC(t *testing.T) {
	for path, cases := range l2cGolden {
		t.Run(filepath.Base(path), func(t *testing.T) {
			tok, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if s := tok.Special(); s.BOS != 1 || s.EOS != 2 {
				t.Fatalf("special = %+v, want BOS 1 EOS 2", s)
			}
			for _, c := range cases {
				enc, err := tok.Encode(c.text, EncodeOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(enc.IDs, c.ids) {
					t.Fatalf("%q: ids\n got %v\nwant %v", c.text, enc.IDs, c.ids)
				}
				withBOS := append([]int32{1}, enc.IDs...)
				if got := tok.Decode(withBOS); got != c.decoded {
					t.Errorf("%q: Decode(BOS+ids) = %q, run.c gives %q", c.text, got, c.decoded)
				}
				checkOffsets(t, tok, c.text, enc)
				checkStream(t, tok, withBOS)
			}
		})
	}
}

const l2cPath = "../../testdata/tokenizers/llama2c/tokenizer.bin"

// llama2.c's tokenizer.bin has 32000 entries; asking for fewer reads fewer,
// asking for more must fail, and a directory holding tokenizer.bin loads
// through Load.
func TestLoadLlama2CSizes(t *testing.T) {
	path := l2cPath
	tok, err := LoadLlama2C(path, 32000)
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 32000 {
		t.Fatalf("VocabSize = %d", tok.VocabSize())
	}
	if small, err := LoadLlama2C(path, 1000); err != nil || small.VocabSize() != 1000 {
		t.Fatalf("LoadLlama2C(1000) = %v", err)
	}
	if _, err := LoadLlama2C(path, 32001); err == nil || !strings.Contains(err.Error(), "tokenizer.bin") {
		t.Fatalf("LoadLlama2C(32001) error = %v, want one naming the file", err)
	}
	dir := t.TempDir()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if tok2, err := Load(dir); err != nil || tok2.VocabSize() != 32000 {
		t.Fatalf("Load(dir) = %v, %v", tok2, err)
	}
}

func TestLlama2CBadFiles(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile(l2cPath)
	if err != nil {
		t.Fatal(err)
	}
	neg := slices.Clone(good)
	binary.LittleEndian.PutUint32(neg[8:], math.MaxUint32) // first token's length = -1
	cases := map[string][]byte{
		"empty.bin":     {},
		"short.bin":     good[:2],
		"truncated.bin": good[:len(good)/2+1],
		"neglen.bin":    neg,
		"zeromax.bin":   make([]byte, 16),
	}
	for name, data := range cases {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadLlama2C(p, 32000)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error = %v, want one naming the file", name, err)
		}
	}
}

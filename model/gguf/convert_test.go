package gguf

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"cacheclip/internal/realmodel"
	"cacheclip/kernels"
	"cacheclip/model"
	"cacheclip/model/tokenizer"
)

// lastLogits runs a full prefill of ids and returns the last row's logits.
func lastLogits(t *testing.T, m *model.Model, ids []int32) []float32 {
	t.Helper()
	c := m.HostCache(len(ids))
	pos, slots := make([]int32, len(ids)), make([]int32, len(ids))
	for i := range ids {
		pos[i], slots[i] = int32(i), int32(allocOne(c))
	}
	out, err := m.Forward(context.Background(), []*model.Seq{{Cache: c, Tokens: ids, Pos: pos, Slots: slots, Logits: []int{len(ids) - 1}}})
	if err != nil {
		t.Fatal(err)
	}
	return out[0].Logits[0]
}

// convertAndCompare converts f, loads the directory through the Hugging Face
// loader and checks that tokenizer and logits equal the GGUF path's.
func convertAndCompare(t *testing.T, f *File, texts []string, tol float64) {
	dir := filepath.Join(t.TempDir(), "hf")
	if err := f.WriteHF(dir, kernels.F32); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteHF(dir, kernels.F32); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second conversion into the same directory: %v", err)
	}
	fromDir, err := model.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer fromDir.Close()
	fromGGUF, err := f.Model()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromDir.Config, fromGGUF.Config) {
		t.Errorf("config from the directory\n%+v\nfrom the GGUF\n%+v", fromDir.Config, fromGGUF.Config)
	}
	tokDir, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	tokGGUF, err := f.Tokenizer()
	if err != nil {
		t.Fatal(err)
	}
	if tokDir.Special().BOS != tokGGUF.Special().BOS || tokDir.Special().EOS != tokGGUF.Special().EOS {
		t.Errorf("special tokens %+v vs %+v", tokDir.Special(), tokGGUF.Special())
	}
	for _, text := range texts {
		a, err := tokDir.Encode(text, tokenizer.EncodeOptions{ParseSpecial: true})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := tokGGUF.Encode(text, tokenizer.EncodeOptions{ParseSpecial: true})
		if !reflect.DeepEqual(a.IDs, b.IDs) {
			t.Fatalf("%q: directory tokenizer %v, GGUF %v", text, a.IDs, b.IDs)
		}
		la, lb := lastLogits(t, fromDir, a.IDs), lastLogits(t, fromGGUF, b.IDs)
		for i := range la {
			if math.Abs(float64(la[i]-lb[i])) > tol {
				t.Fatalf("%q: logit %d: directory %v, GGUF %v", text, i, la[i], lb[i])
			}
		}
	}
	for _, name := range []string{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != 0o644 {
			t.Errorf("%s: %v %v", name, err, st)
		}
	}
}

func TestWriteHFTinyModels(t *testing.T) {
	for _, arch := range []string{"llama", "qwen2"} {
		t.Run(arch, func(t *testing.T) {
			b, _ := tinyModel(t, arch, 2, arch == "llama")
			f, err := Parse("tiny.gguf", b.bytes())
			if err != nil {
				t.Fatal(err)
			}
			// Same f32 weights, same engine: the logits are identical.
			convertAndCompare(t, f, []string{"<|im_start|>the 12 th", " th th\n"}, 0)
		})
	}
}

func TestWriteHFSmolLM2(t *testing.T) {
	f, err := Open(realmodel.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	convertAndCompare(t, f, []string{"<|im_start|>user\nWhat is 12 times 7?<|im_end|>\n<|im_start|>assistant\n"}, 0)
}

// allocOne reserves one slot of a host cache (which only errs on a negative count).
func allocOne(c *model.Cache) int {
	s, _ := c.Alloc(1)
	return s
}

package model_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cacheclip/model"
	"cacheclip/model/safetensors"
	"cacheclip/model/testmodel"
)

func writeVariant(t *testing.T, name string) string {
	t.Helper()
	for _, s := range testmodel.Variants() {
		if s.Name == name {
			dir := filepath.Join(t.TempDir(), name)
			if err := testmodel.Write(dir, s); err != nil {
				t.Fatal(err)
			}
			return dir
		}
	}
	t.Fatalf("no variant %s", name)
	return ""
}

func editConfig(t *testing.T, dir string, f func(map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	f(c)
	b, _ = json.Marshal(c)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// rewriteTensor replaces one tensor's shape (keeping bytes consistent) in model.safetensors.
func rewriteTensor(t *testing.T, dir, name string, shape []int) {
	t.Helper()
	p := filepath.Join(dir, "model.safetensors")
	f, err := safetensors.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	var ws []safetensors.WriteTensor
	for n, ten := range f.Tensors {
		wt := safetensors.WriteTensor{Name: n, DType: ten.DType, Shape: ten.Shape, Data: append([]byte(nil), ten.Data...)}
		if n == name {
			wt.Shape = shape
			el := 1
			for _, d := range shape {
				el *= d
			}
			wt.Data = make([]byte, el*len(ten.Data)/ten.Elements())
		}
		ws = append(ws, wt)
	}
	f.Close()
	if err := safetensors.Write(p, ws, nil); err != nil {
		t.Fatal(err)
	}
}

func TestLoadBadInput(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  []string // substrings the error must contain
	}{
		{"missing config", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "config.json")) }, []string{"config.json"}},
		{"malformed config", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"hidden_size": 64,`), 0o644)
		}, []string{"config.json", "malformed JSON"}},
		{"unknown architecture", func(t *testing.T, dir string) {
			editConfig(t, dir, func(c map[string]any) { c["architectures"] = []string{"GPTNeoXForCausalLM"} })
		}, []string{"config.json", "architectures", "GPTNeoXForCausalLM"}},
		{"unsupported rope scaling", func(t *testing.T, dir string) {
			editConfig(t, dir, func(c map[string]any) { c["rope_scaling"] = map[string]any{"rope_type": "yarn", "factor": 4.0} })
		}, []string{"config.json", "rope_scaling", "yarn"}},
		{"bad heads", func(t *testing.T, dir string) {
			editConfig(t, dir, func(c map[string]any) { c["num_key_value_heads"] = 3 })
		}, []string{"config.json", "num_key_value_heads"}},
		{"missing safetensors", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "model.safetensors")) }, []string{"model.safetensors"}},
		{"truncated safetensors", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "model.safetensors")
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-100)
		}, []string{"model.safetensors", "truncated"}},
		{"garbage safetensors", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "model.safetensors"), []byte("\xff\xff\xff\xff\xff\xff\xff\x7fnot a header"), 0o644)
		}, []string{"model.safetensors", "header length"}},
		{"wrong tensor shape", func(t *testing.T, dir string) {
			rewriteTensor(t, dir, "model.layers.1.self_attn.k_proj.weight", []int{64, 32})
		}, []string{"model.layers.1.self_attn.k_proj.weight", "shape"}},
		{"missing tensor", func(t *testing.T, dir string) {
			rewriteTensor(t, dir, "model.norm.weight", []int{64})
			editConfig(t, dir, func(c map[string]any) { c["num_hidden_layers"] = 4 })
		}, []string{"model.layers.3.input_layernorm.weight", "missing"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeVariant(t, "mistral")
			tc.setup(t, dir)
			m, err := model.LoadDir(dir)
			if err == nil {
				m.Close()
				t.Fatal("load succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadShardedIndex(t *testing.T) {
	dir := writeVariant(t, "llama2")
	one, err := model.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fp := one.Fingerprint()
	one.Close()
	// Split into two shards with an index, as large checkpoints are published.
	f, err := safetensors.Open(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	var a, b []safetensors.WriteTensor
	wm := map[string]string{}
	for n, ten := range f.Tensors {
		wt := safetensors.WriteTensor{Name: n, DType: ten.DType, Shape: ten.Shape, Data: append([]byte(nil), ten.Data...)}
		if strings.Contains(n, "layers.0.") || strings.Contains(n, "embed") {
			a = append(a, wt)
			wm[n] = "model-00001-of-00002.safetensors"
		} else {
			b = append(b, wt)
			wm[n] = "model-00002-of-00002.safetensors"
		}
	}
	f.Close()
	os.Remove(filepath.Join(dir, "model.safetensors"))
	safetensors.Write(filepath.Join(dir, "model-00001-of-00002.safetensors"), a, nil)
	safetensors.Write(filepath.Join(dir, "model-00002-of-00002.safetensors"), b, nil)
	idx, _ := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": wm})
	os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), idx, 0o644)
	m, err := model.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Fingerprint() != fp {
		t.Error("sharded checkpoint fingerprints differently from the single file")
	}
}

func TestFingerprintDistinguishesModels(t *testing.T) {
	a := writeVariant(t, "llama2")
	b := writeVariant(t, "mistral")
	ma, err := model.LoadDir(a)
	if err != nil {
		t.Fatal(err)
	}
	defer ma.Close()
	mb, err := model.LoadDir(b)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	if ma.Fingerprint() == mb.Fingerprint() {
		t.Error("different models share a fingerprint")
	}
}

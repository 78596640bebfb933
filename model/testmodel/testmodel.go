// Package testmodel generates small deterministic random models as real Hugging
// Face directories (config.json, model.safetensors, tokenizer.json,
// tokenizer_config.json) for every architecture variant the engine supports, and
// in-memory models of production shapes for benchmarks. Random weights cannot
// answer questions; they exercise loading, shapes and the numeric invariants.
package testmodel

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"cacheclip/kernels"
	"cacheclip/model"
	"cacheclip/model/safetensors"
)

// Spec describes a generated model.
type Spec struct {
	Name         string
	Arch         string // llama, mistral, qwen2
	Hidden       int
	Intermediate int
	Layers       int
	Heads        int
	KVHeads      int
	Vocab        int // 0: the generated tokenizer's size rounded up to 64
	MaxPos       int
	RopeTheta    float64
	Llama3Rope   bool
	Tied         bool
	Bias         bool
	DType        kernels.DType
	Template     string // chat template family written to tokenizer_config.json: chatml, llama3 or "" (plain)
	Seed         uint64
}

// Variant is the variant of Variants named name; false if there is none.
func Variant(name string) (Spec, bool) {
	for _, s := range Variants() {
		if s.Name == name {
			return s, true
		}
	}
	return Spec{}, false
}

// Variants are the small architectures every engine invariant is tested on.
func Variants() []Spec {
	base := Spec{Hidden: 64, Intermediate: 160, Layers: 3, Heads: 4, KVHeads: 2, MaxPos: 4096, RopeTheta: 10000, Seed: 1}
	v := func(name string, f func(*Spec)) Spec {
		s := base
		s.Name = name
		f(&s)
		return s
	}
	return []Spec{
		v("llama2", func(s *Spec) { s.Arch = "llama"; s.KVHeads = 4; s.DType = kernels.F32 }),
		v("llama3", func(s *Spec) {
			s.Arch = "llama"
			s.Llama3Rope = true
			s.RopeTheta = 500000
			s.DType = kernels.BF16
			s.Template = "llama3"
			s.Seed = 2
		}),
		v("smollm2", func(s *Spec) {
			s.Arch = "llama"
			s.Tied = true
			s.DType = kernels.BF16
			s.Template = "chatml"
			s.Seed = 3
		}),
		v("mistral", func(s *Spec) { s.Arch = "mistral"; s.DType = kernels.F16; s.Seed = 4 }),
		v("qwen2", func(s *Spec) {
			s.Arch = "qwen2"
			s.Tied = true
			s.Bias = true
			s.Heads = 8 // head dim 8
			s.DType = kernels.BF16
			s.Template = "chatml"
			s.RopeTheta = 1000000
			s.Seed = 5
		}),
	}
}

// Qwen25_05B is the exact shape of Qwen2.5-0.5B (random weights) for benchmarks.
func Qwen25_05B(dt kernels.DType) Spec {
	return Spec{Name: "qwen2.5-0.5b-shape", Arch: "qwen2", Hidden: 896, Intermediate: 4864, Layers: 24, Heads: 14, KVHeads: 2,
		Vocab: 151936, MaxPos: 32768, RopeTheta: 1000000, Tied: true, Bias: true, DType: dt, Template: "chatml", Seed: 7}
}

// SmolLM2_135M is the shape of SmolLM2-135M (random weights): the CacheClip
// auxiliary of the benchmarks.
func SmolLM2_135M(dt kernels.DType) Spec {
	return Spec{Name: "smollm2-135m-shape", Arch: "llama", Hidden: 576, Intermediate: 1536, Layers: 30, Heads: 9, KVHeads: 3,
		Vocab: 49152, MaxPos: 8192, RopeTheta: 100000, Tied: true, DType: dt, Template: "chatml", Seed: 11}
}

func (s Spec) config(vocab int) map[string]any {
	arch := map[string]string{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}[s.Arch]
	dt := map[kernels.DType]string{kernels.F32: "float32", kernels.F16: "float16", kernels.BF16: "bfloat16"}[s.DType]
	c := map[string]any{
		"architectures":           []string{arch},
		"model_type":              s.Arch,
		"hidden_size":             s.Hidden,
		"intermediate_size":       s.Intermediate,
		"num_hidden_layers":       s.Layers,
		"num_attention_heads":     s.Heads,
		"num_key_value_heads":     s.KVHeads,
		"vocab_size":              vocab,
		"max_position_embeddings": s.MaxPos,
		"rms_norm_eps":            1e-5,
		"rope_theta":              s.RopeTheta,
		"tie_word_embeddings":     s.Tied,
		"hidden_act":              "silu",
		"torch_dtype":             dt,
		"bos_token_id":            TokBOS,
		"eos_token_id":            TokEOS,
	}
	if s.Llama3Rope {
		c["rope_scaling"] = map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
	}
	if s.Arch == "mistral" {
		c["sliding_window"] = nil
	}
	if s.Arch == "qwen2" {
		c["use_sliding_window"] = false
		c["sliding_window"] = s.MaxPos
	}
	return c
}

type tensor struct {
	name       string
	rows, cols int // cols 0: a vector
	kind       int // 0 matrix, 1 norm, 2 bias
}

func (s Spec) tensors(vocab int) []tensor {
	qd := s.Hidden
	hd := s.Hidden / s.Heads
	kd := s.KVHeads * hd
	ts := []tensor{{"model.embed_tokens.weight", vocab, s.Hidden, 0}, {"model.norm.weight", s.Hidden, 0, 1}}
	if !s.Tied {
		ts = append(ts, tensor{"lm_head.weight", vocab, s.Hidden, 0})
	}
	for l := 0; l < s.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		ts = append(ts,
			tensor{p + "input_layernorm.weight", s.Hidden, 0, 1},
			tensor{p + "post_attention_layernorm.weight", s.Hidden, 0, 1},
			tensor{p + "self_attn.q_proj.weight", qd, s.Hidden, 0},
			tensor{p + "self_attn.k_proj.weight", kd, s.Hidden, 0},
			tensor{p + "self_attn.v_proj.weight", kd, s.Hidden, 0},
			tensor{p + "self_attn.o_proj.weight", s.Hidden, qd, 0},
			tensor{p + "mlp.gate_proj.weight", s.Intermediate, s.Hidden, 0},
			tensor{p + "mlp.up_proj.weight", s.Intermediate, s.Hidden, 0},
			tensor{p + "mlp.down_proj.weight", s.Hidden, s.Intermediate, 0},
		)
		if s.Bias {
			ts = append(ts, tensor{p + "self_attn.q_proj.bias", qd, 0, 2}, tensor{p + "self_attn.k_proj.bias", kd, 0, 2}, tensor{p + "self_attn.v_proj.bias", kd, 0, 2})
		}
	}
	return ts
}

// values draws a tensor's values: matrices ~ N(0, 1/cols) so activations keep unit
// scale, norms around 1, biases small. The embedding is scaled up so that logits of
// the tied head are peaked enough for greedy decoding to be stable.
func values(rng *rand.Rand, t tensor) []float32 {
	n := t.rows * max(t.cols, 1)
	out := make([]float32, n)
	switch t.kind {
	case 0:
		std := 1 / math.Sqrt(float64(t.cols))
		if t.name == "model.embed_tokens.weight" || t.name == "lm_head.weight" {
			std = 1
		}
		for i := range out {
			out[i] = float32(rng.NormFloat64() * std)
		}
	case 1:
		for i := range out {
			out[i] = float32(1 + 0.1*rng.NormFloat64())
		}
	case 2:
		for i := range out {
			out[i] = float32(0.1 * rng.NormFloat64())
		}
	}
	return out
}

// Write generates the model directory dir.
func Write(dir string, s Spec) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("testmodel: %w", err)
	}
	tok := NewTokenizer()
	vocab := s.Vocab
	if vocab == 0 {
		vocab = (tok.Size() + 63) / 64 * 64
	}
	if vocab < tok.Size() {
		return fmt.Errorf("testmodel %s: vocab %d smaller than the tokenizer's %d", s.Name, vocab, tok.Size())
	}
	rng := rand.New(rand.NewPCG(s.Seed, 0x5eed))
	var wts []safetensors.WriteTensor
	for _, t := range s.tensors(vocab) {
		vals := values(rng, t)
		shape := []int{t.rows}
		if t.cols > 0 {
			shape = append(shape, t.cols)
		}
		dt := s.DType
		if t.kind != 0 {
			dt = kernels.F32 // HF checkpoints keep norms in the model dtype; f32 here exercises mixed dtypes
			if s.DType != kernels.F32 {
				dt = s.DType
			}
		}
		wts = append(wts, safetensors.WriteTensor{Name: t.name, DType: stDType(dt), Shape: shape, Data: safetensors.Encode(vals, dt)})
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), wts, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(dir, "config.json"), s.config(vocab)); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(dir, "tokenizer.json"), tok.JSON()); err != nil {
		return err
	}
	return writeJSON(filepath.Join(dir, "tokenizer_config.json"), tokenizerConfig(s.Template))
}

// Build makes the model in memory without touching disk (benchmark shapes).
func Build(s Spec) (*model.Model, error) {
	vocab := s.Vocab
	if vocab == 0 {
		vocab = (NewTokenizer().Size() + 63) / 64 * 64
	}
	cfgJSON, _ := json.Marshal(s.config(vocab))
	cfg, err := model.ParseConfig(cfgJSON)
	if err != nil {
		return nil, fmt.Errorf("testmodel %s: %w", s.Name, err)
	}
	rng := rand.New(rand.NewPCG(s.Seed, 0x5eed))
	byName := map[string]any{}
	for _, t := range s.tensors(vocab) {
		vals := values(rng, t)
		if t.cols == 0 {
			byName[t.name] = vals
			continue
		}
		m := kernels.Mat{DType: s.DType, Rows: t.rows, Cols: t.cols}
		if s.DType == kernels.F32 {
			m.F32 = vals
		} else {
			m.U16 = make([]uint16, len(vals))
			kernels.FromF32(m.U16, vals, s.DType)
		}
		byName[t.name] = m
	}
	mat := func(n string) kernels.Mat { return byName[n].(kernels.Mat) }
	vec := func(n string) []float32 {
		v, _ := byName[n].([]float32)
		return v
	}
	w := model.Weights{Embed: mat("model.embed_tokens.weight"), Norm: vec("model.norm.weight")}
	if s.Tied {
		w.LMHead = w.Embed
	} else {
		w.LMHead = mat("lm_head.weight")
	}
	for l := 0; l < s.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		w.Layers = append(w.Layers, model.Layer{
			AttnNorm: vec(p + "input_layernorm.weight"), MLPNorm: vec(p + "post_attention_layernorm.weight"),
			Wq: mat(p + "self_attn.q_proj.weight"), Wk: mat(p + "self_attn.k_proj.weight"), Wv: mat(p + "self_attn.v_proj.weight"),
			Wo: mat(p + "self_attn.o_proj.weight"), Wgate: mat(p + "mlp.gate_proj.weight"), Wup: mat(p + "mlp.up_proj.weight"),
			Wdown: mat(p + "mlp.down_proj.weight"),
			Bq:    vec(p + "self_attn.q_proj.bias"), Bk: vec(p + "self_attn.k_proj.bias"), Bv: vec(p + "self_attn.v_proj.bias"),
		})
	}
	return model.FromWeights(cfg, w)
}

func stDType(d kernels.DType) string {
	return map[kernels.DType]string{kernels.F32: "F32", kernels.F16: "F16", kernels.BF16: "BF16"}[d]
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("testmodel: %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("testmodel: %w", err)
	}
	return os.Rename(tmp, path)
}

func tokenizerConfig(template string) map[string]any {
	c := map[string]any{"bos_token": "<|bos|>", "eos_token": "<|endoftext|>", "model_max_length": 4096, "add_bos_token": false}
	switch template {
	case "chatml":
		c["chat_template"] = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
	case "llama3":
		c["chat_template"] = "{{ '<|begin_of_text|>' }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}{% endfor %}"
	}
	return c
}

package gguf

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"cacheclip/kernels"
	"cacheclip/model"
	"cacheclip/model/safetensors"
)

// HFConfig renders c as a Hugging Face config.json.
func HFConfig(c *model.Config, dt kernels.DType) ([]byte, error) {
	archs := map[string]string{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
	a, ok := archs[c.Arch]
	if !ok {
		return nil, fmt.Errorf("architecture %q cannot be written as a Hugging Face config", c.Arch)
	}
	cfg := map[string]any{
		"architectures": []string{a}, "model_type": c.Arch, "hidden_act": "silu",
		"hidden_size": c.Hidden, "intermediate_size": c.Intermediate, "num_hidden_layers": c.Layers,
		"num_attention_heads": c.Heads, "num_key_value_heads": c.KVHeads, "head_dim": c.HeadDim,
		"vocab_size": c.Vocab, "max_position_embeddings": c.MaxPos, "rms_norm_eps": c.RMSEps,
		"rope_theta": c.RopeTheta, "tie_word_embeddings": c.TiedEmbeddings,
		"attention_bias": c.QKVBias, "torch_dtype": map[kernels.DType]string{kernels.F32: "float32", kernels.F16: "float16", kernels.BF16: "bfloat16"}[dt],
	}
	if c.Arch == "qwen2" {
		cfg["use_sliding_window"] = false
	}
	if rs := c.RopeScaling; rs != nil {
		cfg["rope_scaling"] = map[string]any{"rope_type": rs.Type, "factor": rs.Factor}
	}
	for _, x := range []struct {
		key string
		ids []int32
	}{{"bos_token_id", c.BOS}, {"eos_token_id", c.EOS}} {
		if len(x.ids) == 1 {
			cfg[x.key] = x.ids[0]
		}
	}
	return json.MarshalIndent(cfg, "", "  ")
}

// WriteHF converts the file into a Hugging Face model directory at dir
// (config.json, model.safetensors with weights in dtype dt, tokenizer.json,
// tokenizer_config.json), so other tools can read the model. dir must not
// exist: the files are written into a temporary sibling that is renamed into
// place at the end, so an interrupted conversion leaves nothing half-written.
func (f *File) WriteHF(dir string, dt kernels.DType) error {
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("convert: %s already exists", dir)
	}
	c, err := f.Config()
	if err != nil {
		return err
	}
	// Widened matrices come packed in panels (the product kernels' layout);
	// the file is written row-major (RowMajor below).
	w, err := f.Weights(c)
	if err != nil {
		return err
	}
	cfgJSON, err := HFConfig(c, dt)
	if err != nil {
		return fmt.Errorf("convert %s: %w", f.Path, err)
	}
	tokJSON, tokCfgJSON, err := f.TokenizerFiles()
	if err != nil {
		return err
	}
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op after the rename
	var ts []safetensors.WriteTensor
	add := func(name string, v []float32, shape ...int) {
		ts = append(ts, safetensors.WriteTensor{Name: name, DType: strings.ToUpper(dt.String()), Shape: shape, Data: safetensors.Encode(v, dt)})
	}
	add("model.embed_tokens.weight", w.Embed.RowMajor().F32, c.Vocab, c.Hidden)
	add("model.norm.weight", w.Norm, c.Hidden)
	if !c.TiedEmbeddings {
		add("lm_head.weight", w.LMHead.RowMajor().F32, c.Vocab, c.Hidden)
	}
	for i, L := range w.Layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		add(p+"input_layernorm.weight", L.AttnNorm, c.Hidden)
		add(p+"post_attention_layernorm.weight", L.MLPNorm, c.Hidden)
		for _, m := range []struct {
			name string
			mat  kernels.Mat
		}{{"self_attn.q_proj.weight", L.Wq}, {"self_attn.k_proj.weight", L.Wk}, {"self_attn.v_proj.weight", L.Wv},
			{"self_attn.o_proj.weight", L.Wo}, {"mlp.gate_proj.weight", L.Wgate}, {"mlp.up_proj.weight", L.Wup},
			{"mlp.down_proj.weight", L.Wdown}} {
			add(p+m.name, m.mat.RowMajor().F32, m.mat.Rows, m.mat.Cols)
		}
		if c.QKVBias {
			add(p+"self_attn.q_proj.bias", L.Bq, len(L.Bq))
			add(p+"self_attn.k_proj.bias", L.Bk, len(L.Bk))
			add(p+"self_attn.v_proj.bias", L.Bv, len(L.Bv))
		}
	}
	if err := safetensors.Write(filepath.Join(tmp, "model.safetensors"), ts, map[string]string{"format": "pt", "source": filepath.Base(f.Path)}); err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	for name, b := range map[string][]byte{"config.json": cfgJSON, "tokenizer.json": tokJSON, "tokenizer_config.json": tokCfgJSON} {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			return fmt.Errorf("convert: %w", err)
		}
	}
	// MkdirTemp and safetensors.Write make private files; a model directory is
	// meant to be shared like any other.
	if err := os.Chmod(filepath.Join(tmp, "model.safetensors"), 0o644); err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	return nil
}

package gguf

import (
	"fmt"

	"cacheclip/kernels"
	"cacheclip/model"
)

// Config reads the architecture and hyper-parameters from the metadata
// (general.architecture "llama" or "qwen2", keys "<arch>.…" as llama.cpp
// writes them). Tied embeddings are the absence of output.weight.
func (f *File) Config() (*model.Config, error) {
	arch, ok, err := f.String("general.architecture")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, f.fieldErr("general.architecture", "missing")
	}
	if arch != "llama" && arch != "qwen2" {
		return nil, f.fieldErr("general.architecture", fmt.Sprintf("%q is %v (supported: llama, qwen2)", arch, model.ErrUnsupported))
	}
	need := func(key string) (int, error) {
		v, ok, err := f.Uint(arch + "." + key)
		if err != nil {
			return 0, err
		}
		if !ok {
			return 0, f.fieldErr(arch+"."+key, "missing")
		}
		if v == 0 || v > 1<<24 {
			return 0, f.fieldErr(arch+"."+key, fmt.Sprintf("%d is out of range", v))
		}
		return int(v), nil
	}
	c := &model.Config{Arch: arch, RopeTheta: 10000, RMSEps: 1e-6, QKVBias: arch == "qwen2"}
	for _, x := range []struct {
		key string
		dst *int
	}{{"embedding_length", &c.Hidden}, {"feed_forward_length", &c.Intermediate}, {"block_count", &c.Layers},
		{"attention.head_count", &c.Heads}, {"context_length", &c.MaxPos}} {
		if *x.dst, err = need(x.key); err != nil {
			return nil, err
		}
	}
	c.KVHeads = c.Heads
	if v, ok, err := f.Uint(arch + ".attention.head_count_kv"); err != nil {
		return nil, err
	} else if ok {
		c.KVHeads = int(v)
	}
	c.HeadDim = c.Hidden / c.Heads
	if v, ok, err := f.Uint(arch + ".attention.key_length"); err != nil {
		return nil, err
	} else if ok {
		c.HeadDim = int(v)
	}
	if v, ok, err := f.Uint(arch + ".rope.dimension_count"); err != nil {
		return nil, err
	} else if ok && int(v) != c.HeadDim {
		return nil, f.fieldErr(arch+".rope.dimension_count", fmt.Sprintf("partial rotary (%d of head_dim %d) is %v", v, c.HeadDim, model.ErrUnsupported))
	}
	if v, ok, err := f.Float(arch + ".rope.freq_base"); err != nil {
		return nil, err
	} else if ok {
		c.RopeTheta = v
	}
	if v, ok, err := f.Float(arch + ".attention.layer_norm_rms_epsilon"); err != nil {
		return nil, err
	} else if ok {
		c.RMSEps = float32(v)
	}
	if err := f.ropeScaling(arch, c); err != nil {
		return nil, err
	}
	tokens, _, err := f.Strings("tokenizer.ggml.tokens")
	if err != nil {
		return nil, err
	}
	c.Vocab = len(tokens)
	if v, ok, err := f.Uint(arch + ".vocab_size"); err != nil {
		return nil, err
	} else if ok {
		c.Vocab = int(v)
	}
	if emb, ok := f.Tensor("token_embd.weight"); ok && len(emb.Dims) == 2 {
		c.Vocab = int(min(emb.Dims[1], 1<<24))
	}
	_, hasOutput := f.Tensor("output.weight")
	c.TiedEmbeddings = !hasOutput
	for _, x := range []struct {
		key string
		dst *[]int32
	}{{"tokenizer.ggml.bos_token_id", &c.BOS}, {"tokenizer.ggml.eos_token_id", &c.EOS}} {
		if v, ok, err := f.Uint(x.key); err != nil {
			return nil, err
		} else if ok {
			*x.dst = []int32{int32(v)}
		}
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("gguf %s: %w", f.Path, err)
	}
	return c, nil
}

func (f *File) ropeScaling(arch string, c *model.Config) error {
	typ, ok, err := f.String(arch + ".rope.scaling.type")
	if err != nil || !ok || typ == "none" {
		return err
	}
	factor, _, err := f.Float(arch + ".rope.scaling.factor")
	if err != nil {
		return err
	}
	switch typ {
	case "linear":
		if factor <= 0 {
			return f.fieldErr(arch+".rope.scaling.factor", "must be positive for linear scaling")
		}
		c.RopeScaling = &model.RopeScaling{Type: "linear", Factor: factor}
		return nil
	}
	return f.fieldErr(arch+".rope.scaling.type", fmt.Sprintf("%q is %v (supported: none, linear)", typ, model.ErrUnsupported))
}

// Weights dequantizes every tensor into the engine's layout in f32: matrices
// as [out, in] row-major (GGUF's ne = [in, out]), and for the llama
// architecture the rows of Q and K put back from llama.cpp's interleaved-pair
// RoPE order into Hugging Face's rotate-half order, the layout this engine
// (like transformers) computes RoPE in.
func (f *File) Weights(c *model.Config) (model.Weights, error) {
	w, _, err := f.WeightsWith(c, Options{})
	return w, err
}

// WeightsWith is Weights with matrices held as o asks (Options.Native keeps
// the quantized blocks the kernels read); the Report says what was kept and
// what was widened to f32.
func (f *File) WeightsWith(c *model.Config, o Options) (model.Weights, Report, error) {
	rep := Report{Native: map[string]int{}, Widened: map[string]int{}, Q8Act: o.Q8Act}
	w, err := f.weights(c, o, &rep)
	return w, rep, err
}

func (f *File) weights(c *model.Config, o Options, rep *Report) (model.Weights, error) {
	used := map[string]bool{}
	vec := func(name string, n int, optional bool) ([]float32, error) {
		t, ok := f.Tensor(name)
		if !ok {
			if optional {
				return nil, nil
			}
			return nil, fmt.Errorf("gguf %s: tensor %s: missing", f.Path, name)
		}
		used[name] = true
		if len(t.Dims) != 1 || t.Dims[0] != uint64(n) {
			return nil, fmt.Errorf("gguf %s: tensor %s: dims %v, want [%d]", f.Path, name, t.Dims, n)
		}
		out := make([]float32, n)
		if err := Dequantize(out, t.Data, t.Type); err != nil {
			return nil, fmt.Errorf("gguf %s: tensor %s: %w", f.Path, name, err)
		}
		return out, nil
	}
	mat := func(name string, rows, cols, ropeHeads int) (kernels.Mat, error) {
		t, ok := f.Tensor(name)
		if !ok {
			return kernels.Mat{}, fmt.Errorf("gguf %s: tensor %s: missing", f.Path, name)
		}
		used[name] = true
		if len(t.Dims) != 2 || t.Dims[0] != uint64(cols) || t.Dims[1] != uint64(rows) {
			return kernels.Mat{}, fmt.Errorf("gguf %s: tensor %s: dims %v, want [%d %d]", f.Path, name, t.Dims, cols, rows)
		}
		if o.Native {
			if m, ok, err := planar(t.Type, rows, cols, t.Data); err != nil {
				return kernels.Mat{}, fmt.Errorf("gguf %s: tensor %s: %w", f.Path, name, err)
			} else if ok {
				if ropeHeads > 0 {
					m.Q = unpermuteRows(m.Q, rows, kernels.QuantRowBytes(m.DType, cols), ropeHeads)
				}
				rep.Native[t.Type.String()]++
				m.Q8Act = o.Q8Act
				return m, nil
			}
		}
		rep.Widened[t.Type.String()]++
		out := make([]float32, rows*cols)
		if err := Dequantize(out, t.Data, t.Type); err != nil {
			return kernels.Mat{}, fmt.Errorf("gguf %s: tensor %s: %w", f.Path, name, err)
		}
		if ropeHeads > 0 {
			out = unpermuteRows(out, rows, cols, ropeHeads)
		}
		// Packed here, while it is the only copy: left to Model.Pack, every
		// widened matrix would be live beside its packed copy at once (twice
		// the model's f32 size at the peak).
		return kernels.Pack(kernels.Mat{DType: kernels.F32, Rows: rows, Cols: cols, F32: out}), nil
	}
	var w model.Weights
	var err error
	if w.Embed, err = mat("token_embd.weight", c.Vocab, c.Hidden, 0); err != nil {
		return w, err
	}
	if w.Norm, err = vec("output_norm.weight", c.Hidden, false); err != nil {
		return w, err
	}
	if c.TiedEmbeddings {
		w.LMHead = w.Embed
	} else if w.LMHead, err = mat("output.weight", c.Vocab, c.Hidden, 0); err != nil {
		return w, err
	}
	qHeads, kHeads := 0, 0
	if c.Arch == "llama" {
		qHeads, kHeads = c.Heads, c.KVHeads
	}
	w.Layers = make([]model.Layer, c.Layers)
	for i := range w.Layers {
		p := fmt.Sprintf("blk.%d.", i)
		L := &w.Layers[i]
		steps := []func() error{
			func() (e error) { L.AttnNorm, e = vec(p+"attn_norm.weight", c.Hidden, false); return },
			func() (e error) { L.MLPNorm, e = vec(p+"ffn_norm.weight", c.Hidden, false); return },
			func() (e error) { L.Wq, e = mat(p+"attn_q.weight", c.QDim(), c.Hidden, qHeads); return },
			func() (e error) { L.Wk, e = mat(p+"attn_k.weight", c.KVDim(), c.Hidden, kHeads); return },
			func() (e error) { L.Wv, e = mat(p+"attn_v.weight", c.KVDim(), c.Hidden, 0); return },
			func() (e error) { L.Wo, e = mat(p+"attn_output.weight", c.Hidden, c.QDim(), 0); return },
			func() (e error) { L.Wgate, e = mat(p+"ffn_gate.weight", c.Intermediate, c.Hidden, 0); return },
			func() (e error) { L.Wup, e = mat(p+"ffn_up.weight", c.Intermediate, c.Hidden, 0); return },
			func() (e error) { L.Wdown, e = mat(p+"ffn_down.weight", c.Hidden, c.Intermediate, 0); return },
			func() (e error) { L.Bq, e = vec(p+"attn_q.bias", c.QDim(), !c.QKVBias); return },
			func() (e error) { L.Bk, e = vec(p+"attn_k.bias", c.KVDim(), !c.QKVBias); return },
			func() (e error) { L.Bv, e = vec(p+"attn_v.bias", c.KVDim(), !c.QKVBias); return },
		}
		for _, s := range steps {
			if err := s(); err != nil {
				return w, err
			}
		}
		if c.Arch == "llama" && L.Bq != nil {
			L.Bq = unpermuteRows(L.Bq, c.QDim(), 1, c.Heads)
			L.Bk = unpermuteRows(L.Bk, c.KVDim(), 1, c.KVHeads)
		}
	}
	for _, t := range f.Tensors {
		if !used[t.Name] && t.Name != "rope_freqs.weight" {
			return w, fmt.Errorf("gguf %s: tensor %s: not used by the %s architecture (wrong model type?)", f.Path, t.Name, c.Arch)
		}
	}
	if _, ok := f.Tensor("rope_freqs.weight"); ok {
		return w, fmt.Errorf("gguf %s: tensor rope_freqs.weight: per-frequency RoPE factors (Llama 3.1 scaling) are %v", f.Path, model.ErrUnsupported)
	}
	return w, nil
}

// unpermuteRows undoes llama.cpp's convert permutation of a Q or K projection:
// within each head, GGUF row 2i+h holds Hugging Face row h·(d/2)+i.
// Rows are cols elements of any type (planar quantized rows are bytes).
func unpermuteRows[T any](m []T, rows, cols, heads int) []T {
	d := rows / heads
	half := d / 2
	out := make([]T, len(m))
	for hd := 0; hd < heads; hd++ {
		base := hd * d
		for i := 0; i < half; i++ {
			for h := 0; h < 2; h++ {
				src := (base + 2*i + h) * cols
				dst := (base + h*half + i) * cols
				copy(out[dst:dst+cols], m[src:src+cols])
			}
		}
	}
	return out
}

// Model dequantizes the file into an engine model; the File may be closed
// afterwards (the model owns its f32 copies).
func (f *File) Model() (*model.Model, error) {
	m, _, err := f.ModelWith(Options{})
	return m, err
}

// ModelWith is Model with the weights held as o asks; the model owns its
// copies (quantized blocks included), so the File may be closed afterwards.
func (f *File) ModelWith(o Options) (*model.Model, Report, error) {
	c, err := f.Config()
	if err != nil {
		return nil, Report{}, err
	}
	w, rep, err := f.WeightsWith(c, o)
	if err != nil {
		return nil, rep, err
	}
	m, err := model.FromWeights(c, w)
	if err != nil {
		return nil, rep, fmt.Errorf("gguf %s: %w", f.Path, err)
	}
	m.Dir = f.Path
	return m, rep, nil
}

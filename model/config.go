// Package model loads decoder-only transformer checkpoints (the Llama family and
// Qwen2) and runs them through one forward primitive: rows with explicit positions
// written into cache slots, each attending causally by position over every slot.
// Full prefill, chunked prefill, decode and every selective-recompute method are
// calls of that primitive with different rows.
package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// Config is the architecture of a model, normalised across checkpoint formats.
type Config struct {
	Arch         string // "llama", "qwen2", "mistral", "llama2c"
	Hidden       int
	Intermediate int
	Layers       int
	Heads        int
	KVHeads      int
	HeadDim      int
	Vocab        int
	MaxPos       int
	RMSEps       float32
	RopeTheta    float64
	// RopeInterleaved rotates adjacent pairs (2i, 2i+1) as llama2.c does; otherwise
	// pairs (i, i+HeadDim/2) as Hugging Face's rotate-half layout.
	RopeInterleaved bool
	RopeScaling     *RopeScaling
	QKVBias         bool
	TiedEmbeddings  bool
	// SlidingWindow > 0 is Mistral's window; contexts longer than it are refused
	// because this engine attends over the full context.
	SlidingWindow int
	BOS           []int32
	EOS           []int32
}

// RopeScaling is Llama 3's frequency-dependent scaling (rope_type "llama3") or
// plain linear position interpolation (rope_type "linear").
type RopeScaling struct {
	Type           string
	Factor         float64
	LowFreqFactor  float64
	HighFreqFactor float64
	OriginalMaxPos int
}

// KVDim is the width of one slot's keys (and values) across KV heads.
func (c *Config) KVDim() int { return c.KVHeads * c.HeadDim }

// QDim is the width of the queries across heads.
func (c *Config) QDim() int { return c.Heads * c.HeadDim }

// Validate checks consistency; errors name the field.
func (c *Config) Validate() error {
	check := func(name string, v int) error {
		if v <= 0 {
			return fmt.Errorf("field %s must be positive, got %d", name, v)
		}
		// No real checkpoint comes near this; a file claiming more is
		// damaged or hostile, and buffers are sized from these fields.
		if v > maxDim {
			return fmt.Errorf("field %s is %d, above the %d any supported checkpoint has", name, v, maxDim)
		}
		return nil
	}
	for _, f := range []struct {
		n string
		v int
	}{{"hidden_size", c.Hidden}, {"intermediate_size", c.Intermediate}, {"num_hidden_layers", c.Layers}, {"num_attention_heads", c.Heads}, {"num_key_value_heads", c.KVHeads}, {"head_dim", c.HeadDim}, {"vocab_size", c.Vocab}} {
		if err := check(f.n, f.v); err != nil {
			return err
		}
	}
	if c.Heads%c.KVHeads != 0 {
		return fmt.Errorf("field num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)", c.Heads, c.KVHeads)
	}
	if c.HeadDim%2 != 0 {
		return fmt.Errorf("field head_dim must be even for RoPE, got %d", c.HeadDim)
	}
	if c.RMSEps <= 0 {
		return fmt.Errorf("field rms_norm_eps must be positive, got %g", c.RMSEps)
	}
	if c.RopeTheta <= 0 {
		return fmt.Errorf("field rope_theta must be positive, got %g", c.RopeTheta)
	}
	return nil
}

// maxDim bounds every dimension of a config (2^24: vocabularies reach 256k,
// intermediate sizes 50k).
const maxDim = 1 << 24

// hfConfig mirrors the config.json fields this engine reads.
type hfConfig struct {
	Architectures     []string        `json:"architectures"`
	ModelType         string          `json:"model_type"`
	HiddenSize        int             `json:"hidden_size"`
	IntermediateSize  int             `json:"intermediate_size"`
	NumLayers         int             `json:"num_hidden_layers"`
	NumHeads          int             `json:"num_attention_heads"`
	NumKVHeads        *int            `json:"num_key_value_heads"`
	HeadDim           *int            `json:"head_dim"`
	VocabSize         int             `json:"vocab_size"`
	MaxPos            int             `json:"max_position_embeddings"`
	RMSNormEps        *float64        `json:"rms_norm_eps"`
	RopeTheta         *float64        `json:"rope_theta"`
	RopeScaling       json.RawMessage `json:"rope_scaling"`
	TieWordEmbeddings *bool           `json:"tie_word_embeddings"`
	AttentionBias     *bool           `json:"attention_bias"`
	SlidingWindow     *int            `json:"sliding_window"`
	UseSlidingWindow  *bool           `json:"use_sliding_window"`
	HiddenAct         string          `json:"hidden_act"`
	BOS               json.RawMessage `json:"bos_token_id"`
	EOS               json.RawMessage `json:"eos_token_id"`
}

// ErrUnsupported marks a checkpoint feature this engine does not implement.
var ErrUnsupported = errors.New("unsupported")

// LoadConfig reads a Hugging Face config.json.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("model config: %w", err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("model config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig parses config.json bytes.
func ParseConfig(b []byte) (*Config, error) {
	var h hfConfig
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("malformed JSON: %w", err)
	}
	arch := ""
	if len(h.Architectures) > 0 {
		switch h.Architectures[0] {
		case "LlamaForCausalLM":
			arch = "llama"
		case "MistralForCausalLM":
			arch = "mistral"
		case "Qwen2ForCausalLM":
			arch = "qwen2"
		default:
			return nil, fmt.Errorf("field architectures: %q is %w (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)", h.Architectures[0], ErrUnsupported)
		}
	} else {
		switch h.ModelType {
		case "llama", "mistral", "qwen2":
			arch = h.ModelType
		case "":
			return nil, fmt.Errorf("field architectures: missing (and no model_type)")
		default:
			return nil, fmt.Errorf("field model_type: %q is %w", h.ModelType, ErrUnsupported)
		}
	}
	if h.HiddenAct != "" && h.HiddenAct != "silu" {
		return nil, fmt.Errorf("field hidden_act: %q is %w (only silu)", h.HiddenAct, ErrUnsupported)
	}
	c := &Config{
		Arch:         arch,
		Hidden:       h.HiddenSize,
		Intermediate: h.IntermediateSize,
		Layers:       h.NumLayers,
		Heads:        h.NumHeads,
		Vocab:        h.VocabSize,
		MaxPos:       h.MaxPos,
		RMSEps:       1e-6,
		RopeTheta:    10000,
		QKVBias:      arch == "qwen2",
	}
	if h.NumKVHeads != nil {
		c.KVHeads = *h.NumKVHeads
	} else {
		c.KVHeads = h.NumHeads
	}
	if h.HeadDim != nil && *h.HeadDim > 0 {
		c.HeadDim = *h.HeadDim
	} else if h.NumHeads > 0 {
		c.HeadDim = h.HiddenSize / h.NumHeads
	}
	if h.RMSNormEps != nil {
		c.RMSEps = float32(*h.RMSNormEps)
	}
	if h.RopeTheta != nil {
		c.RopeTheta = *h.RopeTheta
	}
	if h.AttentionBias != nil && *h.AttentionBias {
		c.QKVBias = true
	}
	if h.TieWordEmbeddings != nil {
		c.TiedEmbeddings = *h.TieWordEmbeddings
	}
	if h.SlidingWindow != nil && *h.SlidingWindow > 0 {
		use := arch == "mistral"
		if h.UseSlidingWindow != nil {
			use = *h.UseSlidingWindow
		}
		if use {
			c.SlidingWindow = *h.SlidingWindow
		}
	}
	if c.MaxPos <= 0 {
		c.MaxPos = 2048
	}
	if len(h.RopeScaling) > 0 && string(h.RopeScaling) != "null" {
		rs, err := parseRopeScaling(h.RopeScaling)
		if err != nil {
			return nil, err
		}
		c.RopeScaling = rs
	}
	var err error
	if c.BOS, err = parseIDs(h.BOS); err != nil {
		return nil, fmt.Errorf("field bos_token_id: %w", err)
	}
	if c.EOS, err = parseIDs(h.EOS); err != nil {
		return nil, fmt.Errorf("field eos_token_id: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func parseRopeScaling(raw json.RawMessage) (*RopeScaling, error) {
	var r struct {
		RopeType       string   `json:"rope_type"`
		Type           string   `json:"type"`
		Factor         *float64 `json:"factor"`
		LowFreqFactor  *float64 `json:"low_freq_factor"`
		HighFreqFactor *float64 `json:"high_freq_factor"`
		OrigMax        *int     `json:"original_max_position_embeddings"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("field rope_scaling: %w", err)
	}
	t := r.RopeType
	if t == "" {
		t = r.Type
	}
	switch t {
	case "default", "":
		return nil, nil
	case "linear":
		if r.Factor == nil || *r.Factor <= 0 {
			return nil, fmt.Errorf("field rope_scaling.factor: must be positive for linear scaling")
		}
		return &RopeScaling{Type: t, Factor: *r.Factor}, nil
	case "llama3":
		if r.Factor == nil || r.LowFreqFactor == nil || r.HighFreqFactor == nil || r.OrigMax == nil {
			return nil, fmt.Errorf("field rope_scaling: llama3 needs factor, low_freq_factor, high_freq_factor and original_max_position_embeddings")
		}
		if *r.HighFreqFactor <= *r.LowFreqFactor || *r.Factor <= 0 || *r.OrigMax <= 0 {
			return nil, fmt.Errorf("field rope_scaling: llama3 needs factor > 0 and high_freq_factor > low_freq_factor")
		}
		return &RopeScaling{Type: t, Factor: *r.Factor, LowFreqFactor: *r.LowFreqFactor, HighFreqFactor: *r.HighFreqFactor, OriginalMaxPos: *r.OrigMax}, nil
	}
	return nil, fmt.Errorf("field rope_scaling.rope_type: %q is %w (supported: default, linear, llama3)", t, ErrUnsupported)
}

func parseIDs(raw json.RawMessage) ([]int32, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one int64
	if err := json.Unmarshal(raw, &one); err == nil {
		return []int32{int32(one)}, nil
	}
	var many []int64
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, fmt.Errorf("want an integer or a list of integers, got %s", raw)
	}
	out := make([]int32, len(many))
	for i, v := range many {
		out[i] = int32(v)
	}
	return out, nil
}

// InvFreq returns the RoPE inverse frequencies for pair index 0..HeadDim/2-1,
// after any rope scaling.
func (c *Config) InvFreq() []float64 {
	half := c.HeadDim / 2
	f := make([]float64, half)
	for i := range f {
		f[i] = 1 / math.Pow(c.RopeTheta, float64(2*i)/float64(c.HeadDim))
	}
	rs := c.RopeScaling
	if rs == nil {
		return f
	}
	switch rs.Type {
	case "linear":
		for i := range f {
			f[i] /= rs.Factor
		}
	case "llama3":
		lowWave := float64(rs.OriginalMaxPos) / rs.LowFreqFactor
		highWave := float64(rs.OriginalMaxPos) / rs.HighFreqFactor
		for i, freq := range f {
			wave := 2 * math.Pi / freq
			switch {
			case wave < highWave:
			case wave > lowWave:
				f[i] = freq / rs.Factor
			default:
				smooth := (float64(rs.OriginalMaxPos)/wave - rs.LowFreqFactor) / (rs.HighFreqFactor - rs.LowFreqFactor)
				f[i] = (1-smooth)*freq/rs.Factor + smooth*freq
			}
		}
	}
	return f
}

func configPath(dir string) string { return filepath.Join(dir, "config.json") }

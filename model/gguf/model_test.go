package gguf

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"cacheclip/model"
)

const (
	tHidden, tHeads, tKV, tInter = 8, 2, 1, 12
	tHeadDim                     = tHidden / tHeads
)

// byteTokens is GPT-2's byte alphabet: the 256 single-byte tokens.
func byteTokens() []string {
	var out []string
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			out = append(out, string(rune(b)))
		} else {
			out = append(out, string(rune(256+n)))
			n++
		}
	}
	return out
}

// hfWeights are random weights in Hugging Face layout, by HF tensor name.
type hfWeights map[string][]float32

// permuteRows is llama.cpp's convert permute for Q/K:
// w.reshape(heads, 2, d/2, cols).swapaxes(1, 2).reshape(rows, cols).
func permuteRows(w []float32, rows, cols, heads int) []float32 {
	d := rows / heads
	out := make([]float32, len(w))
	for h := 0; h < heads; h++ {
		for half := 0; half < 2; half++ {
			for i := 0; i < d/2; i++ {
				src := ((h*2+half)*(d/2) + i) * cols // [h][half][i]
				dst := ((h*(d/2)+i)*2 + half) * cols // [h][i][half]
				copy(out[dst:dst+cols], w[src:src+cols])
			}
		}
	}
	return out
}

// tinyLlama is a two-layer llama (or qwen2) GGUF with a byte-level tokenizer,
// written as llama.cpp's converter writes one: Q and K rows permuted.
func tinyLlama(tb testing.TB, layers int, tied bool) *builder {
	b, _ := tinyModel(tb, "llama", layers, tied)
	return b
}

func tinyModel(tb testing.TB, arch string, layers int, tied bool) (*builder, hfWeights) {
	rng := rand.New(rand.NewPCG(18, uint64(layers)))
	tokens := append(byteTokens(), "Ġt", "Ġth", "<|im_start|>", "<|im_end|>")
	types := make([]int32, len(tokens))
	for i := range types {
		types[i] = tokNormal
	}
	types[len(tokens)-2], types[len(tokens)-1] = tokControl, tokControl
	vocab := len(tokens)
	w := hfWeights{}
	b := &builder{}
	b.str("general.architecture", arch)
	b.u32(arch+".block_count", uint32(layers)).u32(arch+".context_length", 64)
	b.u32(arch+".embedding_length", tHidden).u32(arch+".feed_forward_length", tInter)
	b.u32(arch+".attention.head_count", tHeads).u32(arch+".attention.head_count_kv", tKV)
	b.f32(arch+".rope.freq_base", 5000).f32(arch+".attention.layer_norm_rms_epsilon", 1e-5)
	b.str("tokenizer.ggml.model", "gpt2").str("tokenizer.ggml.pre", "smollm")
	b.strs("tokenizer.ggml.tokens", tokens).i32s("tokenizer.ggml.token_type", types)
	b.strs("tokenizer.ggml.merges", []string{"Ġ t", "Ġt h"})
	b.u32("tokenizer.ggml.bos_token_id", uint32(vocab-2)).u32("tokenizer.ggml.eos_token_id", uint32(vocab-1))
	b.str("tokenizer.chat_template", "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}")
	mat := func(hfName, ggName string, rows, cols, permHeads int) {
		v := make([]float32, rows*cols)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.3)
		}
		w[hfName] = v
		stored := v
		if permHeads > 0 {
			stored = permuteRows(v, rows, cols, permHeads)
		}
		if cols == 1 {
			b.f32Tensor(ggName, stored, uint64(rows))
		} else {
			b.f32Tensor(ggName, stored, uint64(cols), uint64(rows))
		}
	}
	perm := func(h int) int {
		if arch == "llama" {
			return h
		}
		return 0
	}
	mat("model.embed_tokens.weight", "token_embd.weight", vocab, tHidden, 0)
	mat("model.norm.weight", "output_norm.weight", tHidden, 1, 0)
	if !tied {
		mat("lm_head.weight", "output.weight", vocab, tHidden, 0)
	}
	for l := 0; l < layers; l++ {
		p, g := fmt.Sprintf("model.layers.%d.", l), fmt.Sprintf("blk.%d.", l)
		mat(p+"input_layernorm.weight", g+"attn_norm.weight", tHidden, 1, 0)
		mat(p+"post_attention_layernorm.weight", g+"ffn_norm.weight", tHidden, 1, 0)
		mat(p+"self_attn.q_proj.weight", g+"attn_q.weight", tHeads*tHeadDim, tHidden, perm(tHeads))
		mat(p+"self_attn.k_proj.weight", g+"attn_k.weight", tKV*tHeadDim, tHidden, perm(tKV))
		mat(p+"self_attn.v_proj.weight", g+"attn_v.weight", tKV*tHeadDim, tHidden, 0)
		mat(p+"self_attn.o_proj.weight", g+"attn_output.weight", tHidden, tHeads*tHeadDim, 0)
		mat(p+"mlp.gate_proj.weight", g+"ffn_gate.weight", tInter, tHidden, 0)
		mat(p+"mlp.up_proj.weight", g+"ffn_up.weight", tInter, tHidden, 0)
		mat(p+"mlp.down_proj.weight", g+"ffn_down.weight", tHidden, tInter, 0)
		if arch == "qwen2" {
			mat(p+"self_attn.q_proj.bias", g+"attn_q.bias", tHeads*tHeadDim, 1, 0)
			mat(p+"self_attn.k_proj.bias", g+"attn_k.bias", tKV*tHeadDim, 1, 0)
			mat(p+"self_attn.v_proj.bias", g+"attn_v.bias", tKV*tHeadDim, 1, 0)
		}
	}
	return b, w
}

// Loading a converted file gives back the Hugging Face weights exactly: the
// Q/K un-permutation is the inverse of llama.cpp's permutation (llama), and
// nothing is permuted for qwen2.
func TestWeightsUndoConvertPermutation(t *testing.T) {
	for _, c := range []struct {
		arch string
		tied bool
	}{{"llama", true}, {"llama", false}, {"qwen2", false}} {
		t.Run(fmt.Sprintf("%s tied=%v", c.arch, c.tied), func(t *testing.T) {
			b, want := tinyModel(t, c.arch, 2, c.tied)
			f, err := Parse("tiny.gguf", b.bytes())
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := f.Config()
			if err != nil {
				t.Fatal(err)
			}
			wantCfg := model.Config{Arch: c.arch, Hidden: tHidden, Intermediate: tInter, Layers: 2, Heads: tHeads, KVHeads: tKV,
				HeadDim: tHeadDim, Vocab: 260, MaxPos: 64, RMSEps: 1e-5, RopeTheta: 5000, QKVBias: c.arch == "qwen2",
				TiedEmbeddings: c.tied, BOS: []int32{258}, EOS: []int32{259}}
			if !reflect.DeepEqual(*cfg, wantCfg) {
				t.Errorf("config\n%+v\nwant\n%+v", *cfg, wantCfg)
			}
			m, err := f.Model()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]float32{"model.embed_tokens.weight": m.W.Embed.RowMajor().F32, "model.norm.weight": m.W.Norm}
			if !c.tied {
				got["lm_head.weight"] = m.W.LMHead.RowMajor().F32
			} else if &m.W.LMHead.F32[0] != &m.W.Embed.F32[0] {
				t.Error("tied lm_head does not alias the embeddings")
			}
			for l, L := range m.W.Layers {
				p := fmt.Sprintf("model.layers.%d.", l)
				for k, v := range map[string][]float32{"input_layernorm.weight": L.AttnNorm, "post_attention_layernorm.weight": L.MLPNorm,
					"self_attn.q_proj.weight": L.Wq.RowMajor().F32, "self_attn.k_proj.weight": L.Wk.RowMajor().F32, "self_attn.v_proj.weight": L.Wv.RowMajor().F32,
					"self_attn.o_proj.weight": L.Wo.RowMajor().F32, "mlp.gate_proj.weight": L.Wgate.RowMajor().F32, "mlp.up_proj.weight": L.Wup.RowMajor().F32,
					"mlp.down_proj.weight": L.Wdown.RowMajor().F32} {
					got[p+k] = v
				}
				if c.arch == "qwen2" {
					got[p+"self_attn.q_proj.bias"], got[p+"self_attn.k_proj.bias"], got[p+"self_attn.v_proj.bias"] = L.Bq, L.Bk, L.Bv
				}
			}
			if len(got) != len(want) {
				t.Errorf("%d tensors, want %d", len(got), len(want))
			}
			for k, w := range want {
				if !reflect.DeepEqual(got[k], w) {
					t.Errorf("%s differs from the Hugging Face weights", k)
				}
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		edit func(*builder)
		want string
	}{
		{"unsupported architecture", func(b *builder) { b.kvs[0] = (&builder{}).str("general.architecture", "gemma").kvs[0] }, `field "general.architecture": "gemma" is unsupported`},
		{"wrong type", func(b *builder) { b.kvs[1] = (&builder{}).str("llama.block_count", "two").kvs[0] }, `field "llama.block_count": want a non-negative integer`},
		{"missing head count", func(b *builder) { b.kvs[5] = (&builder{}).u32("unrelated", 1).kvs[0] }, `field "llama.attention.head_count": missing`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := tinyLlama(t, 1, true)
			c.edit(b)
			f, err := Parse("cfg.gguf", b.bytes())
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.Config()
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "cfg.gguf") {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

func TestWeightsErrors(t *testing.T) {
	b := tinyLlama(t, 1, true)
	b.f32Tensor("blk.0.extra.weight", []float32{1}, 1)
	f, err := Parse("w.gguf", b.bytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Model(); err == nil || !strings.Contains(err.Error(), "tensor blk.0.extra.weight: not used") {
		t.Fatalf("error %v", err)
	}
}

package gguf

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"cacheclip/model/tokenizer"
)

// Token types of tokenizer.ggml.token_type (llama.cpp's llama_token_type).
const (
	tokNormal      = 1
	tokUnknown     = 2
	tokControl     = 3
	tokUserDefined = 4
	tokUnused      = 5
	tokByte        = 6
)

// Pre-tokenizers for tokenizer.ggml.pre: the Hugging Face pre_tokenizer
// each llama.cpp name stands for.
var gpt2Pre = map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}

func splitPre(pattern string) map[string]any {
	return map[string]any{"type": "Sequence", "pretokenizers": []any{
		map[string]any{"type": "Split", "pattern": map[string]any{"Regex": pattern}, "behavior": "Isolated", "invert": false},
		map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
	}}
}

const (
	llama3Regex = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	qwen2Regex  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

func preTokenizer(pre string) (map[string]any, bool, error) {
	switch pre {
	case "", "default", "gpt2", "gpt-2":
		return gpt2Pre, false, nil
	case "smollm", "starcoder":
		// Digits one by one, then GPT-2's pattern (llama.cpp's SMOLLM/STARCODER).
		return map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Digits", "individual_digits": true}, gpt2Pre,
		}}, false, nil
	case "llama3", "llama-v3", "llama-bpe":
		return splitPre(llama3Regex), true, nil
	case "qwen2":
		return splitPre(qwen2Regex), false, nil
	}
	return nil, false, fmt.Errorf("%q is not supported (supported: default, gpt2, smollm, starcoder, llama-bpe, qwen2)", pre)
}

// TokenizerFiles renders the metadata's tokenizer as the contents of a Hugging
// Face tokenizer.json and tokenizer_config.json: the form the tokenizer
// package reads and `cacheclip convert` writes. tokenizer.ggml.model "gpt2" is
// byte-level BPE with the file's merges and the pre-tokenizer named by
// tokenizer.ggml.pre; "llama" is SentencePiece-style BPE with byte fallback,
// its merges derived from the vocabulary scores as SentencePiece ranks them.
func (f *File) TokenizerFiles() (tokJSON, cfgJSON []byte, err error) {
	kind, ok, err := f.String("tokenizer.ggml.model")
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, f.fieldErr("tokenizer.ggml.model", "missing")
	}
	tokens, ok, err := f.Strings("tokenizer.ggml.tokens")
	if err != nil {
		return nil, nil, err
	}
	if !ok || len(tokens) == 0 {
		return nil, nil, f.fieldErr("tokenizer.ggml.tokens", "missing or empty")
	}
	types, ok, err := f.Ints("tokenizer.ggml.token_type")
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		types = make([]int64, len(tokens))
		for i := range types {
			types[i] = tokNormal
		}
	}
	if len(types) != len(tokens) {
		return nil, nil, f.fieldErr("tokenizer.ggml.token_type", fmt.Sprintf("%d entries for %d tokens", len(types), len(tokens)))
	}
	vocab := make(map[string]int, len(tokens))
	var added []map[string]any
	for i, s := range tokens {
		if _, dup := vocab[s]; dup && types[i] == tokUnused {
			continue // padding slots may repeat a name; the first id keeps it
		}
		vocab[s] = i
		if types[i] == tokControl || types[i] == tokUserDefined || (types[i] == tokUnknown && kind == "gpt2") {
			added = append(added, map[string]any{"id": i, "content": s, "single_word": false, "lstrip": false,
				"rstrip": false, "normalized": types[i] == tokUserDefined, "special": types[i] != tokUserDefined})
		}
	}
	tok := map[string]any{"version": "1.0", "truncation": nil, "padding": nil, "added_tokens": added, "post_processor": nil}
	var mdl map[string]any
	switch kind {
	case "gpt2":
		merges, _, err := f.Strings("tokenizer.ggml.merges")
		if err != nil {
			return nil, nil, err
		}
		pre, _, err := f.String("tokenizer.ggml.pre")
		if err != nil {
			return nil, nil, err
		}
		pt, ignoreMerges, err := preTokenizer(pre)
		if err != nil {
			return nil, nil, f.fieldErr("tokenizer.ggml.pre", err.Error())
		}
		tok["normalizer"] = nil
		tok["pre_tokenizer"] = pt
		tok["decoder"] = map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}
		mdl = map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignoreMerges,
			"vocab": vocab, "merges": merges}
	case "llama":
		scores, ok, err := f.Floats("tokenizer.ggml.scores")
		if err != nil {
			return nil, nil, err
		}
		if !ok || len(scores) != len(tokens) {
			return nil, nil, f.fieldErr("tokenizer.ggml.scores", fmt.Sprintf("want one score per token (%d)", len(tokens)))
		}
		prefix := true
		if v, ok, err := f.Bool("tokenizer.ggml.add_space_prefix"); err != nil {
			return nil, nil, err
		} else if ok {
			prefix = v
		}
		var norm []any
		if prefix {
			norm = append(norm, map[string]any{"type": "Prepend", "prepend": "▁"})
		}
		norm = append(norm, map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"})
		tok["normalizer"] = map[string]any{"type": "Sequence", "normalizers": norm}
		tok["pre_tokenizer"] = nil
		dec := []any{
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": "▁"}, "content": " "},
			map[string]any{"type": "ByteFallback"}, map[string]any{"type": "Fuse"},
		}
		if prefix {
			dec = append(dec, map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0})
		}
		tok["decoder"] = map[string]any{"type": "Sequence", "decoders": dec}
		var unk any
		if id, ok, err := f.Uint("tokenizer.ggml.unknown_token_id"); err != nil {
			return nil, nil, err
		} else if ok && id < uint64(len(tokens)) {
			unk = tokens[id]
		}
		mdl = map[string]any{"type": "BPE", "dropout": nil, "unk_token": unk, "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
			"vocab": vocab, "merges": spmMerges(tokens, types, scores, vocab)}
	default:
		return nil, nil, f.fieldErr("tokenizer.ggml.model", fmt.Sprintf("%q is not supported (supported: gpt2, llama)", kind))
	}
	tok["model"] = mdl
	if tokJSON, err = json.Marshal(tok); err != nil {
		return nil, nil, err
	}
	cfg := map[string]any{"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": false}
	for _, x := range []struct{ key, field string }{{"tokenizer.ggml.bos_token_id", "bos_token"},
		{"tokenizer.ggml.eos_token_id", "eos_token"}, {"tokenizer.ggml.padding_token_id", "pad_token"},
		{"tokenizer.ggml.unknown_token_id", "unk_token"}} {
		id, ok, err := f.Uint(x.key)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			continue
		}
		if id >= uint64(len(tokens)) {
			return nil, nil, f.fieldErr(x.key, fmt.Sprintf("id %d is past the vocabulary (%d tokens)", id, len(tokens)))
		}
		cfg[x.field] = tokens[id]
	}
	addBOS := kind == "llama"
	if v, ok, err := f.Bool("tokenizer.ggml.add_bos_token"); err != nil {
		return nil, nil, err
	} else if ok {
		addBOS = v
	}
	cfg["add_bos_token"] = addBOS
	if v, ok, err := f.Bool("tokenizer.ggml.add_eos_token"); err != nil {
		return nil, nil, err
	} else if ok {
		cfg["add_eos_token"] = v
	}
	if tmpl, ok, err := f.String("tokenizer.chat_template"); err != nil {
		return nil, nil, err
	} else if ok {
		cfg["chat_template"] = tmpl
	}
	if cfgJSON, err = json.MarshalIndent(cfg, "", "  "); err != nil {
		return nil, nil, err
	}
	return tokJSON, cfgJSON, nil
}

// spmMerges derives BPE merges from SentencePiece scores: every split of a
// normal token into two vocabulary tokens is a merge, ranked by the merged
// token's score (higher first), ties by the pieces' ids — the order
// SentencePiece's BPE applies them in.
func spmMerges(tokens []string, types []int64, scores []float64, vocab map[string]int) [][2]string {
	type merge struct {
		l, r   string
		score  float64
		li, ri int
	}
	var ms []merge
	for id, s := range tokens {
		if types[id] != tokNormal && types[id] != tokUserDefined {
			continue
		}
		for i := 1; i < len(s); i++ {
			if !isRuneStart(s[i]) {
				continue
			}
			li, okL := vocab[s[:i]]
			ri, okR := vocab[s[i:]]
			if okL && okR {
				ms = append(ms, merge{s[:i], s[i:], scores[id], li, ri})
			}
		}
	}
	sort.SliceStable(ms, func(a, b int) bool {
		if ms[a].score != ms[b].score {
			return ms[a].score > ms[b].score
		}
		if ms[a].li != ms[b].li {
			return ms[a].li < ms[b].li
		}
		return ms[a].ri < ms[b].ri
	})
	out := make([][2]string, len(ms))
	for i, m := range ms {
		out[i] = [2]string{m.l, m.r}
	}
	return out
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// Tokenizer builds the engine's tokenizer from the metadata.
func (f *File) Tokenizer() (*tokenizer.Tokenizer, error) {
	tj, cj, err := f.TokenizerFiles()
	if err != nil {
		return nil, err
	}
	t, err := tokenizer.LoadJSON(f.Path, tj, cj)
	if err != nil {
		return nil, fmt.Errorf("gguf %s: tokenizer from metadata: %w", f.Path, err)
	}
	return t, nil
}

// ChatTemplate is tokenizer.chat_template, "" when absent.
func (f *File) ChatTemplate() (string, error) {
	s, _, err := f.String("tokenizer.chat_template")
	return strings.TrimSpace(s), err
}

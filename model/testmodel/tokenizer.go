package testmodel

import (
	"sort"
	"strings"
)

// Special tokens of the generated tokenizer, at fixed ids.
const (
	TokEndOfText = iota // <|endoftext|>, also EOS
	TokBOS              // <|bos|>
	TokImStart
	TokImEnd
	TokBeginOfText
	TokStartHeader
	TokEndHeader
	TokEOT
	numSpecial
)

// TokEOS is the end-of-sequence id written to config.json.
const TokEOS = TokEndOfText

var specials = []string{"<|endoftext|>", "<|bos|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}

// splitPattern is Qwen2's pre-tokenizer regex (it needs look-ahead).
const splitPattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// Tokenizer is a byte-level BPE vocabulary with merges learned from a small
// built-in English text, in the layout of a Hugging Face tokenizer.json.
type Tokenizer struct {
	vocab  []string // id → token string (byte-level alphabet)
	merges [][2]string
}

// byteAlphabet is GPT-2's reversible byte → printable rune mapping.
func byteAlphabet() []rune {
	var bs []int
	for b := '!'; b <= '~'; b++ {
		bs = append(bs, int(b))
	}
	for b := 0xA1; b <= 0xAC; b++ {
		bs = append(bs, b)
	}
	for b := 0xAE; b <= 0xFF; b++ {
		bs = append(bs, b)
	}
	in := map[int]bool{}
	for _, b := range bs {
		in[b] = true
	}
	out := make([]rune, 256)
	for _, b := range bs {
		out[b] = rune(b)
	}
	n := 0
	for b := 0; b < 256; b++ {
		if !in[b] {
			out[b] = rune(256 + n)
			n++
		}
	}
	return out
}

const trainText = `Once upon a time there was a little girl who lived in a village near the forest.
The question is what the answer should be, and the answer is in the documents.
One of the special magic numbers for the key is the value that you should remember.
The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.
Retrieval augmented generation reuses the cache of every chunk that the retriever returns.
func main() { fmt.Println("hello, world") } // code and numbers 0123456789 are here too.`

// NewTokenizer learns 160 merges from the built-in text.
func NewTokenizer() *Tokenizer {
	alpha := byteAlphabet()
	t := &Tokenizer{vocab: append([]string(nil), specials...)}
	for b := 0; b < 256; b++ {
		t.vocab = append(t.vocab, string(alpha[b]))
	}
	// Words: split on spaces keeping the leading space, as the regex mostly does.
	var words [][]string
	for _, line := range strings.Split(trainText, "\n") {
		for i, w := range strings.Split(line, " ") {
			if i > 0 {
				w = " " + w
			}
			var syms []string
			for _, c := range []byte(w) {
				syms = append(syms, string(alpha[c]))
			}
			if len(syms) > 0 {
				words = append(words, syms)
			}
		}
	}
	for len(t.merges) < 160 {
		counts := map[[2]string]int{}
		for _, w := range words {
			for i := 0; i+1 < len(w); i++ {
				counts[[2]string{w[i], w[i+1]}]++
			}
		}
		if len(counts) == 0 {
			break
		}
		pairs := make([][2]string, 0, len(counts))
		for p := range counts {
			pairs = append(pairs, p)
		}
		sort.Slice(pairs, func(i, j int) bool {
			if counts[pairs[i]] != counts[pairs[j]] {
				return counts[pairs[i]] > counts[pairs[j]]
			}
			return pairs[i][0]+"\x00"+pairs[i][1] < pairs[j][0]+"\x00"+pairs[j][1]
		})
		best := pairs[0]
		if counts[best] < 2 {
			break
		}
		t.merges = append(t.merges, best)
		t.vocab = append(t.vocab, best[0]+best[1])
		for wi, w := range words {
			var nw []string
			for i := 0; i < len(w); i++ {
				if i+1 < len(w) && w[i] == best[0] && w[i+1] == best[1] {
					nw = append(nw, best[0]+best[1])
					i++
				} else {
					nw = append(nw, w[i])
				}
			}
			words[wi] = nw
		}
	}
	return t
}

// Size is the number of tokens, specials included.
func (t *Tokenizer) Size() int { return len(t.vocab) }

// JSON is the tokenizer.json document.
func (t *Tokenizer) JSON() map[string]any {
	vocab := map[string]int{}
	for id, s := range t.vocab[numSpecial:] {
		vocab[s] = id + numSpecial
	}
	merges := make([]string, len(t.merges))
	for i, m := range t.merges {
		merges[i] = m[0] + " " + m[1]
	}
	var added []map[string]any
	for id, s := range specials {
		added = append(added, map[string]any{"id": id, "content": s, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true})
	}
	return map[string]any{
		"version":      "1.0",
		"truncation":   nil,
		"padding":      nil,
		"added_tokens": added,
		"normalizer":   nil,
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": splitPattern}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
		}},
		"post_processor": map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
		"decoder":        map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": "", "end_of_word_suffix": "",
			"fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges},
	}
}

// Package tokenizer encodes text to token ids and back for the models cacheclip
// runs: Hugging Face tokenizer.json files (byte-level BPE as in GPT-2, Qwen2/3,
// Llama 3 and SmolLM2; SentencePiece-style BPE with byte fallback as in Llama 2
// and Mistral) and llama2.c's tokenizer.bin.
//
// Encode returns byte offsets per token because the auxiliary scorer maps tokens
// of one tokenizer onto another's by the characters they cover (the auxiliary scorer of docs/ARCHITECTURE.md).
// Encode never adds BOS or EOS: the prompt templates decide that.
//
// Supported tokenizer.json parts: model BPE (vocab, merges as "a b" strings or
// [a, b] pairs, unk_token, fuse_unk, byte_fallback, ignore_merges); normalizers
// Sequence, NFC/NFD/NFKC/NFKD, Prepend, Replace (string patterns), Lowercase;
// pre-tokenizers Sequence, Split (regex or string, every behavior, invert),
// ByteLevel, Metaspace, Digits, Whitespace, WhitespaceSplit; decoders
// ByteLevel, Metaspace and Sequence of Replace/ByteFallback/Fuse/Strip. Anything
// else is refused with an error naming the file and field. Added tokens are
// matched leftmost-longest on the raw text (their "normalized" flag is
// ignored), honouring lstrip, rstrip and single_word.
//
// Split patterns run on github.com/dlclark/regexp2 (they use look-ahead), except
// the GPT-2, Qwen2/3 and Llama 3 patterns, which have hand-written equivalents
// (checked against regexp2 in the tests) because the regex dominated Encode.
// BPE merges use a priority queue, and each word's tokens are cached per
// Tokenizer.
package tokenizer

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// Encoding is the result of Encode.
type Encoding struct {
	IDs []int32
	// Offsets are byte offsets [start,end) into the input text, one per token.
	// A token made of part of a multi-byte character covers that whole
	// character; tokens are in order and offsets are non-decreasing. A token
	// the tokenizer inserted (SentencePiece's leading "▁", llama2.c's dummy
	// prefix) is zero-width or shares its neighbour's span.
	Offsets [][2]int
}

// EncodeOptions tunes Encode.
type EncodeOptions struct {
	// ParseSpecial recognises special added tokens such as <|im_end|> written
	// in the text. Without it they are encoded as ordinary text (added tokens
	// not marked special are always recognised, as Hugging Face does).
	ParseSpecial bool
}

// Special holds the control token ids a tokenizer defines; -1 when absent.
type Special struct {
	BOS, EOS, Pad, Unk int32
	// EndOfTurn lists ids that end an assistant turn besides EOS
	// (<|im_end|>, <|eot_id|>, <|endoftext|>, </s>, …) found in the vocabulary.
	EndOfTurn []int32
}

// StopIDs is EOS followed by the end-of-turn ids, without duplicates or -1.
func (s Special) StopIDs() []int32 {
	var out []int32
	add := func(id int32) {
		if id >= 0 && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	add(s.EOS)
	for _, id := range s.EndOfTurn {
		add(id)
	}
	return out
}

type kind int

const (
	kindHF kind = iota
	kindLlama2C
)

// Tokenizer is immutable after loading and safe for concurrent use.
type Tokenizer struct {
	kind kind
	path string

	strs   []string         // id → token string as written in the file ("" for holes)
	pieces [][]byte         // id → bytes the token decodes to
	byStr  map[string]int32 // file string → id (vocabulary and added tokens)

	added   []addedToken
	trieAll *trieNode // every added token
	trieNS  *trieNode // added tokens not marked special
	special []bool    // id → is a special added token

	norm      []normStep
	pre       []preStep
	bpe       *bpeModel
	l2c       *llama2c
	stripLead int // leading spaces the decoder removes from the whole text

	spec   Special
	addBOS bool

	cacheMu sync.Mutex
	cache   map[string][]wordTok
}

// Load reads a Hugging Face tokenizer.json (the file, or a model directory
// holding it, with tokenizer_config.json beside it read for BOS/EOS hints) or a
// llama2.c tokenizer.bin (whose vocabulary size is the number of entries the
// file holds).
func Load(path string) (*Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if st.IsDir() {
		p := filepath.Join(path, "tokenizer.json")
		if _, err := os.Stat(p); err == nil {
			return loadHF(p)
		}
		p = filepath.Join(path, "tokenizer.bin")
		if _, err := os.Stat(p); err == nil {
			return LoadLlama2C(p, 0)
		}
		return nil, fmt.Errorf("tokenizer: %s holds neither tokenizer.json nor tokenizer.bin", path)
	}
	if strings.HasSuffix(path, ".bin") {
		return LoadLlama2C(path, 0)
	}
	return loadHF(path)
}

// VocabSize is one past the largest token id.
func (t *Tokenizer) VocabSize() int { return len(t.strs) }

// Special returns the control token ids.
func (t *Tokenizer) Special() Special {
	s := t.spec
	s.EndOfTurn = slices.Clone(s.EndOfTurn)
	return s
}

// AddsBOS reports whether the model expects BOS at the start of a sequence
// (tokenizer_config.json add_bos_token, a post-processor that inserts it, or
// llama2.c). Templates use it; Encode never adds BOS itself.
func (t *Tokenizer) AddsBOS() bool { return t.addBOS && t.spec.BOS >= 0 }

// TokenID looks a token string up exactly as the file writes it ("Ġthe",
// "▁the", "<|im_end|>").
func (t *Tokenizer) TokenID(s string) (int32, bool) {
	id, ok := t.byStr[s]
	return id, ok
}

// TokenString is the token's string as the file writes it, "" for an unknown id.
func (t *Tokenizer) TokenString(id int32) string {
	if id < 0 || int(id) >= len(t.strs) {
		return ""
	}
	return t.strs[id]
}

// IsSpecial reports whether id is an added token marked special.
func (t *Tokenizer) IsSpecial(id int32) bool {
	return id >= 0 && int(id) < len(t.special) && t.special[id]
}

// Encode tokenises text. It never adds BOS or EOS.
func (t *Tokenizer) Encode(text string, opt EncodeOptions) (Encoding, error) {
	var enc Encoding
	if t.kind == kindLlama2C {
		return t.l2c.encode(text)
	}
	// About one token per four bytes of prose: avoids regrowing the slices.
	enc.IDs = make([]int32, 0, len(text)/4+1)
	enc.Offsets = make([][2]int, 0, len(text)/4+1)
	trie := t.trieNS
	if opt.ParseSpecial {
		trie = t.trieAll
	}
	err := splitAdded(text, trie, t.added, func(start, end int, id int32) error {
		if id >= 0 {
			enc.IDs = append(enc.IDs, id)
			enc.Offsets = append(enc.Offsets, [2]int{start, end})
			return nil
		}
		// Metaspace's prepend_scheme "first" only prefixes text at the very start.
		return t.encodeSegment(text, start, end, start == 0, &enc)
	})
	if err != nil {
		return Encoding{}, err
	}
	return enc, nil
}

// encodeSegment encodes text[start:end], a stretch without added tokens.
func (t *Tokenizer) encodeSegment(text string, start, end int, first bool, enc *Encoding) error {
	if start >= end {
		return nil
	}
	nt := newNormText(text[start:end])
	for _, s := range t.norm {
		s.apply(&nt, first)
	}
	spans := [][2]int{{0, len(nt.s)}}
	for _, p := range t.pre {
		var err error
		if spans, err = p.split(nt.s, spans); err != nil {
			return fmt.Errorf("tokenizer %s: pre-tokenizing: %w", t.path, err)
		}
	}
	for _, sp := range spans {
		if sp[0] >= sp[1] {
			continue
		}
		word := nt.s[sp[0]:sp[1]]
		toks, err := t.wordTokens(word)
		if err != nil {
			return err
		}
		at := sp[0]
		for _, wt := range toks {
			ns, ne := at, sp[0]+int(wt.end)
			at = ne
			os, oe := nt.orig(ns, ne)
			os, oe = os+start, oe+start
			os, oe = widenToRunes(text, os, oe)
			enc.IDs = append(enc.IDs, wt.id)
			enc.Offsets = append(enc.Offsets, [2]int{os, oe})
		}
	}
	return nil
}

// widenToRunes makes [s,e) cover whole UTF-8 characters of text.
func widenToRunes(text string, s, e int) (int, int) {
	for s > 0 && s < len(text) && !utf8.RuneStart(text[s]) {
		s--
	}
	if e > s {
		for e < len(text) && !utf8.RuneStart(text[e]) {
			e++
		}
	}
	return s, e
}

const maxCache = 1 << 17

// wordTokens runs the BPE model on one pre-token, through a per-tokenizer cache:
// natural text repeats its words, and merging is the costly part.
func (t *Tokenizer) wordTokens(word string) ([]wordTok, error) {
	t.cacheMu.Lock()
	toks, ok := t.cache[word]
	t.cacheMu.Unlock()
	if ok {
		return toks, nil
	}
	toks, err := t.bpe.encodeWord(word)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", t.path, err)
	}
	if len(word) <= 256 {
		t.cacheMu.Lock()
		if len(t.cache) >= maxCache {
			clear(t.cache)
		}
		t.cache[strings.Clone(word)] = toks // don't pin the caller's text
		t.cacheMu.Unlock()
	}
	return toks, nil
}

// Decode turns ids into text. Special tokens are written as their text;
// unknown ids are skipped; byte sequences that are not valid UTF-8 become
// U+FFFD. It equals the concatenation of a StreamDecoder's output.
func (t *Tokenizer) Decode(ids []int32) string {
	d := t.NewStreamDecoder()
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(d.Push(id))
	}
	b.WriteString(d.Flush())
	return b.String()
}

// StreamDecoder decodes ids one at a time, holding back the bytes of a
// character not yet complete, so no output ever splits a UTF-8 sequence.
type StreamDecoder struct {
	t     *Tokenizer
	buf   []byte
	strip int
	prev  int32
}

// NewStreamDecoder starts a decoder for one sequence.
func (t *Tokenizer) NewStreamDecoder() *StreamDecoder {
	return &StreamDecoder{t: t, strip: t.stripLead, prev: -1}
}

// Push adds one id and returns the text it completes (possibly "").
func (d *StreamDecoder) Push(id int32) string {
	p := d.t.piece(d.prev, id)
	d.prev = id
	if d.strip > 0 && len(p) > 0 {
		for d.strip > 0 && len(p) > 0 && p[0] == ' ' {
			p = p[1:]
			d.strip--
		}
		if len(p) > 0 {
			d.strip = 0
		}
	}
	d.buf = append(d.buf, p...)
	return d.drain(false)
}

// Flush returns what is held back, invalid bytes replaced by U+FFFD.
func (d *StreamDecoder) Flush() string { return d.drain(true) }

func (d *StreamDecoder) drain(final bool) string {
	var b strings.Builder
	i := 0
	for i < len(d.buf) {
		r, n := utf8.DecodeRune(d.buf[i:])
		if r == utf8.RuneError && n <= 1 {
			if !final && !utf8.FullRune(d.buf[i:]) {
				break // an incomplete character: wait for its other bytes
			}
			b.WriteRune(utf8.RuneError)
			i++
			continue
		}
		b.Write(d.buf[i : i+n])
		i += n
	}
	d.buf = append(d.buf[:0], d.buf[i:]...)
	return b.String()
}

// piece is the bytes id decodes to after prev.
func (t *Tokenizer) piece(prev, id int32) []byte {
	if id < 0 || int(id) >= len(t.pieces) {
		return nil
	}
	p := t.pieces[id]
	if t.kind == kindLlama2C {
		// run.c: control tokens print nothing here, and the token after BOS
		// loses the leading space of the dummy prefix.
		if id == t.spec.BOS || id == t.spec.EOS {
			return nil
		}
		if prev == t.spec.BOS && len(p) > 0 && p[0] == ' ' {
			p = p[1:]
		}
	}
	return p
}

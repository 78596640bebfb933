package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

type hfFile struct {
	AddedTokens   []hfAdded       `json:"added_tokens"`
	Normalizer    map[string]any  `json:"normalizer"`
	PreTokenizer  map[string]any  `json:"pre_tokenizer"`
	PostProcessor map[string]any  `json:"post_processor"`
	Decoder       map[string]any  `json:"decoder"`
	Model         json.RawMessage `json:"model"`
}

type hfAdded struct {
	ID         *int32 `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Special    bool   `json:"special"`
}

type hfModel struct {
	Type                    string           `json:"type"`
	Vocab                   map[string]int32 `json:"vocab"`
	Merges                  json.RawMessage  `json:"merges"`
	UnkToken                *string          `json:"unk_token"`
	FuseUnk                 bool             `json:"fuse_unk"`
	ByteFallback            bool             `json:"byte_fallback"`
	IgnoreMerges            bool             `json:"ignore_merges"`
	ContinuingSubwordPrefix *string          `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string          `json:"end_of_word_suffix"`
	Dropout                 *float64         `json:"dropout"`
}

func loadHF(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	cfg, err := readConfig(filepath.Join(filepath.Dir(path), "tokenizer_config.json"))
	if err != nil {
		return nil, err
	}
	return parseHF(path, data, cfg)
}

// LoadJSON builds a tokenizer from the contents of a tokenizer.json and a
// tokenizer_config.json (nil for none) that are not files on disk, such as the
// ones a GGUF file's metadata describes; name stands for the file in errors.
func LoadJSON(name string, tokenizerJSON, configJSON []byte) (*Tokenizer, error) {
	var cfg tokenConfig
	if configJSON != nil {
		var err error
		if cfg, err = parseConfig(name, configJSON); err != nil {
			return nil, err
		}
	}
	return parseHF(name, tokenizerJSON, cfg)
}

func parseHF(path string, data []byte, cfg tokenConfig) (*Tokenizer, error) {
	var f hfFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("tokenizer %s: malformed JSON: %w", path, err)
	}
	if len(f.Model) == 0 || string(f.Model) == "null" {
		return nil, fmt.Errorf("tokenizer %s: field model is missing", path)
	}
	var m hfModel
	if err := json.Unmarshal(f.Model, &m); err != nil {
		return nil, fmt.Errorf("tokenizer %s: field model: %w", path, err)
	}
	if m.Type == "" && m.Merges != nil {
		m.Type = "BPE" // old files leave the type out
	}
	if m.Type != "BPE" {
		return nil, fmt.Errorf("tokenizer %s: field model.type: unsupported model %q (want BPE)", path, m.Type)
	}
	if p := m.ContinuingSubwordPrefix; p != nil && *p != "" {
		return nil, fmt.Errorf("tokenizer %s: field model.continuing_subword_prefix: %q is not supported", path, *p)
	}
	if p := m.EndOfWordSuffix; p != nil && *p != "" {
		return nil, fmt.Errorf("tokenizer %s: field model.end_of_word_suffix: %q is not supported", path, *p)
	}
	if len(m.Vocab) == 0 {
		return nil, fmt.Errorf("tokenizer %s: field model.vocab is empty", path)
	}

	t := &Tokenizer{kind: kindHF, path: path, byStr: make(map[string]int32, len(m.Vocab)+len(f.AddedTokens)), cache: map[string][]wordTok{}}
	size := 0
	for s, id := range m.Vocab {
		if id < 0 {
			return nil, fmt.Errorf("tokenizer %s: field model.vocab[%q]: negative id %d", path, s, id)
		}
		size = max(size, int(id)+1)
	}
	for i, a := range f.AddedTokens {
		if a.ID == nil || *a.ID < 0 {
			return nil, fmt.Errorf("tokenizer %s: field added_tokens[%d].id: missing or negative", path, i)
		}
		size = max(size, int(*a.ID)+1)
	}
	if size > 1<<24 {
		return nil, fmt.Errorf("tokenizer %s: field model.vocab: id %d is implausibly large", path, size-1)
	}
	t.strs = make([]string, size)
	t.pieces = make([][]byte, size)
	t.special = make([]bool, size)

	var pre preResult
	if err := parsePreTokenizer(f.PreTokenizer, "pre_tokenizer", &pre); err != nil {
		return nil, fmt.Errorf("tokenizer %s: field %w", path, err)
	}
	decByteLevel, strip, err := parseDecoder(f.Decoder, "decoder")
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: field %w", path, err)
	}
	norm, err := parseNormalizer(f.Normalizer, "normalizer")
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: field %w", path, err)
	}
	t.norm = append(norm, pre.norm...)
	t.pre = pre.steps
	t.stripLead = strip
	byteLevel := pre.byteLevel || decByteLevel

	bm := &bpeModel{vocab: m.Vocab, byteLevel: byteLevel, byteFallback: m.ByteFallback, fuseUnk: m.FuseUnk, ignoreMerges: m.IgnoreMerges, unk: -1}
	alpha := byteAlphabet()
	inv := make(map[rune]byte, 256)
	for b, r := range alpha {
		inv[r] = byte(b)
		bm.byteStr[b] = string(r)
		bm.byteID[b] = -1
		bm.fbID[b] = -1
	}
	for b := range 256 {
		if byteLevel {
			if id, ok := m.Vocab[bm.byteStr[b]]; ok {
				bm.byteID[b] = id
			}
		}
		if id, ok := m.Vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			bm.fbID[b] = id
		}
	}
	if m.UnkToken != nil {
		if id, ok := m.Vocab[*m.UnkToken]; ok {
			bm.unk = id
		}
	}
	for s, id := range m.Vocab {
		t.strs[id] = s
		t.byStr[s] = id
		t.pieces[id] = decodePiece(s, byteLevel, m.ByteFallback, inv)
	}
	if bm.merges, err = parseMerges(m.Merges, m.Vocab); err != nil {
		return nil, fmt.Errorf("tokenizer %s: field model.merges: %w", path, err)
	}
	t.bpe = bm

	for _, a := range f.AddedTokens {
		id := *a.ID
		t.strs[id] = a.Content
		t.byStr[a.Content] = id
		t.pieces[id] = []byte(a.Content)
		t.special[id] = a.Special
		if a.Content != "" {
			t.added = append(t.added, addedToken{content: a.Content, id: id, special: a.Special, lstrip: a.LStrip, rstrip: a.RStrip, singleWord: a.SingleWord})
		}
	}
	t.trieAll, t.trieNS = buildTries(t.added)

	t.spec = Special{BOS: -1, EOS: -1, Pad: -1, Unk: bm.unk}
	t.applyConfig(cfg, f.PostProcessor)
	return t, nil
}

// decodePiece is the bytes a vocabulary string stands for.
func decodePiece(s string, byteLevel, byteFallback bool, inv map[rune]byte) []byte {
	if byteFallback && len(s) == 6 && strings.HasPrefix(s, "<0x") && s[5] == '>' {
		if v, err := strconv.ParseUint(s[3:5], 16, 8); err == nil {
			return []byte{byte(v)}
		}
	}
	if byteLevel {
		out := make([]byte, 0, len(s))
		for _, r := range s {
			if b, ok := inv[r]; ok {
				out = append(out, b)
			} else {
				out = append(out, string(r)...)
			}
		}
		return out
	}
	return []byte(strings.ReplaceAll(s, "▁", " "))
}

func parseMerges(raw json.RawMessage, vocab map[string]int32) (map[uint64]mergeRes, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return map[uint64]mergeRes{}, nil
	}
	var pairs [][2]string
	inner := bytes.TrimSpace(bytes.TrimPrefix(raw, []byte("[")))
	if len(inner) > 0 && inner[0] == '[' {
		if err := json.Unmarshal(raw, &pairs); err != nil {
			return nil, err
		}
	} else {
		var lines []string
		if err := json.Unmarshal(raw, &lines); err != nil {
			return nil, err
		}
		pairs = make([][2]string, len(lines))
		for i, l := range lines {
			a, b, ok := strings.Cut(l, " ")
			if !ok {
				return nil, fmt.Errorf("entry %d %q: want two tokens separated by a space", i, l)
			}
			pairs[i] = [2]string{a, b}
		}
	}
	out := make(map[uint64]mergeRes, len(pairs))
	for i, p := range pairs {
		a, okA := vocab[p[0]]
		b, okB := vocab[p[1]]
		c, okC := vocab[p[0]+p[1]]
		if !okA || !okB || !okC {
			return nil, fmt.Errorf("entry %d %q: token not in model.vocab", i, p[0]+" "+p[1])
		}
		k := pairKey(a, b)
		if _, dup := out[k]; !dup {
			out[k] = mergeRes{rank: int32(i), id: c}
		}
	}
	return out, nil
}

// parseDecoder reports whether the decoder is byte-level and how many leading
// spaces it strips from the text (SentencePiece's Strip or Metaspace).
func parseDecoder(v map[string]any, field string) (byteLevel bool, strip int, err error) {
	if v == nil {
		return false, 0, nil
	}
	typ, _ := v["type"].(string)
	switch typ {
	case "Sequence":
		list, _ := v["decoders"].([]any)
		for i, x := range list {
			m, ok := x.(map[string]any)
			if !ok {
				return false, 0, fmt.Errorf("%s.decoders[%d]: not an object", field, i)
			}
			bl, st, err := parseDecoder(m, fmt.Sprintf("%s.decoders[%d]", field, i))
			if err != nil {
				return false, 0, err
			}
			byteLevel = byteLevel || bl
			strip += st
		}
		return byteLevel, strip, nil
	case "ByteLevel":
		return true, 0, nil
	case "ByteFallback", "Fuse":
		return false, 0, nil
	case "Replace":
		pat, _ := v["pattern"].(map[string]any)
		from, _ := pat["String"].(string)
		to, _ := v["content"].(string)
		if from != "▁" || to != " " {
			return false, 0, fmt.Errorf("%s: only Replace ▁ → space is supported", field)
		}
		return false, 0, nil
	case "Strip":
		c, _ := v["content"].(string)
		n, _ := v["start"].(float64)
		if e, _ := v["stop"].(float64); e != 0 || (c != " " && n != 0) {
			return false, 0, fmt.Errorf("%s: only Strip of leading spaces is supported", field)
		}
		return false, int(n), nil
	case "Metaspace":
		scheme, _ := v["prepend_scheme"].(string)
		add, ok := v["add_prefix_space"].(bool)
		if scheme == "always" || scheme == "first" || (scheme == "" && (!ok || add)) {
			return false, 1, nil
		}
		return false, 0, nil
	default:
		return false, 0, fmt.Errorf("%s.type: unsupported decoder %q", field, typ)
	}
}

// tokenConfig is the part of tokenizer_config.json the tokenizer and the
// templates read.
type tokenConfig struct {
	BOS, EOS, Pad, Unk string
	AddBOS             *bool
	ChatTemplate       string
}

// ReadConfig reads tokenizer_config.json's token names and chat template
// (a missing file gives an empty config).
func ReadConfig(path string) (TokenizerConfig, error) {
	c, err := readConfig(path)
	return TokenizerConfig{BOS: c.BOS, EOS: c.EOS, ChatTemplate: c.ChatTemplate}, err
}

// TokenizerConfig is what ReadConfig returns.
type TokenizerConfig struct {
	BOS, EOS     string
	ChatTemplate string
}

func readConfig(path string) (tokenConfig, error) {
	var c tokenConfig
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("tokenizer: %w", err)
	}
	return parseConfig(path, data)
}

func parseConfig(path string, data []byte) (tokenConfig, error) {
	var c tokenConfig
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return c, fmt.Errorf("tokenizer %s: malformed JSON: %w", path, err)
	}
	tokName := func(field string) (string, error) {
		v, ok := raw[field]
		if !ok || string(v) == "null" {
			return "", nil
		}
		var s string
		if json.Unmarshal(v, &s) == nil {
			return s, nil
		}
		var o struct {
			Content string `json:"content"`
		}
		if err := json.Unmarshal(v, &o); err != nil {
			return "", fmt.Errorf("tokenizer %s: field %s: want a string or an object with content", path, field)
		}
		return o.Content, nil
	}
	for _, x := range []struct {
		field string
		dst   *string
	}{{"bos_token", &c.BOS}, {"eos_token", &c.EOS}, {"pad_token", &c.Pad}, {"unk_token", &c.Unk}} {
		var err error
		if *x.dst, err = tokName(x.field); err != nil {
			return c, err
		}
	}
	if v, ok := raw["add_bos_token"]; ok {
		var b bool
		if json.Unmarshal(v, &b) == nil {
			c.AddBOS = &b
		}
	}
	if v, ok := raw["chat_template"]; ok && string(v) != "null" {
		var s string
		if json.Unmarshal(v, &s) != nil {
			// a list of named templates: take "default", else the first
			var list []struct {
				Name     string `json:"name"`
				Template string `json:"template"`
			}
			if err := json.Unmarshal(v, &list); err != nil {
				return c, fmt.Errorf("tokenizer %s: field chat_template: want a string or a list of {name, template}", path)
			}
			for i, x := range list {
				if i == 0 || x.Name == "default" {
					s = x.Template
				}
			}
		}
		c.ChatTemplate = s
	}
	return c, nil
}

// endOfTurn names tokens that end an assistant turn in the chat formats we know.
var endOfTurn = []string{"<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|endoftext|>", "</s>", "<end_of_turn>", "<|end|>"}

func (t *Tokenizer) applyConfig(cfg tokenConfig, post map[string]any) {
	look := func(s string) int32 {
		if s == "" {
			return -1
		}
		if id, ok := t.byStr[s]; ok {
			return id
		}
		return -1
	}
	t.spec.BOS = look(cfg.BOS)
	t.spec.EOS = look(cfg.EOS)
	t.spec.Pad = look(cfg.Pad)
	if u := look(cfg.Unk); u >= 0 {
		t.spec.Unk = u
	}
	// A post-processor that inserts a token before the sequence names BOS.
	postBOS := ""
	if post != nil {
		if single, ok := post["single"].([]any); ok && len(single) > 0 {
			if st, ok := single[0].(map[string]any)["SpecialToken"].(map[string]any); ok {
				postBOS, _ = st["id"].(string)
			}
		}
	}
	if t.spec.BOS < 0 && cfg.BOS == "" {
		t.spec.BOS = look(postBOS)
	}
	if t.spec.EOS < 0 && cfg.EOS == "" {
		for _, s := range []string{"</s>", "<|end_of_text|>", "<|endoftext|>"} {
			if id := look(s); id >= 0 {
				t.spec.EOS = id
				break
			}
		}
	}
	switch {
	case cfg.AddBOS != nil:
		t.addBOS = *cfg.AddBOS
	default:
		t.addBOS = postBOS != ""
	}
	for _, s := range endOfTurn {
		if id := look(s); id >= 0 && id != t.spec.EOS {
			t.spec.EndOfTurn = append(t.spec.EndOfTurn, id)
		}
	}
}

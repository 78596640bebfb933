package gguf

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"cacheclip/model/tokenizer"
)

func TestTokenizerFromGPT2Metadata(t *testing.T) {
	f, err := Parse("tiny.gguf", tinyLlama(t, 1, true).bytes())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := f.Tokenizer()
	if err != nil {
		t.Fatal(err)
	}
	id := func(s string) int32 {
		v, ok := tok.TokenID(s)
		if !ok {
			t.Fatalf("no token %q", s)
		}
		return v
	}
	cases := []struct {
		text string
		want []int32
	}{
		{" the", []int32{id("Ġth"), id("e")}},
		// smollm's pre-tokenizer splits digits one by one before GPT-2's pattern.
		{"a 12", []int32{id("a"), id("Ġ"), id("1"), id("2")}},
		{"<|im_start|>x", []int32{id("<|im_start|>"), id("x")}},
	}
	for _, c := range cases {
		e, err := tok.Encode(c.text, tokenizer.EncodeOptions{ParseSpecial: true})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(e.IDs, c.want) {
			t.Errorf("%q: %v, want %v", c.text, e.IDs, c.want)
		}
		if got := tok.Decode(e.IDs); got != c.text {
			t.Errorf("decode %q", got)
		}
	}
	sp := tok.Special()
	if sp.BOS != id("<|im_start|>") || sp.EOS != id("<|im_end|>") || tok.AddsBOS() {
		t.Errorf("special %+v, adds BOS %v", sp, tok.AddsBOS())
	}
}

func TestTokenizerErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		kv   func(*builder)
		want string
	}{
		{"unknown pre", func(b *builder) { b.str("tokenizer.ggml.model", "gpt2").str("tokenizer.ggml.pre", "made-up") }, `field "tokenizer.ggml.pre": "made-up" is not supported`},
		{"unknown model", func(b *builder) { b.str("tokenizer.ggml.model", "bert") }, `field "tokenizer.ggml.model": "bert" is not supported`},
		{"bos past vocab", func(b *builder) { b.str("tokenizer.ggml.model", "gpt2").u32("tokenizer.ggml.bos_token_id", 1<<20) }, `field "tokenizer.ggml.bos_token_id": id 1048576 is past the vocabulary`},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := &builder{}
			b.strs("tokenizer.ggml.tokens", byteTokens())
			c.kv(b)
			f, err := Parse("tok.gguf", b.bytes())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Tokenizer(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

// A SentencePiece-style ("llama") tokenizer as llama.cpp stores it — tokens,
// scores, token types, no merges — encodes the tokenizer test texts as
// transformers.js encodes them with Mistral's tokenizer.json. The scores
// are the ones that order Mistral's merges (a piece scores minus the rank of
// the first merge that makes it), so the test checks the path from scores to
// merges to BPE, not Mistral's own score table, which is not shipped here.
func TestTokenizerFromSentencePieceMetadata(t *testing.T) {
	dir := "../../testdata/tokenizers/mistral/"
	raw, err := os.ReadFile(dir + "tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	var tj struct {
		Model struct {
			Vocab  map[string]int `json:"vocab"`
			Merges []string       `json:"merges"`
		} `json:"model"`
	}
	if err := json.Unmarshal(raw, &tj); err != nil {
		t.Fatal(err)
	}
	n := len(tj.Model.Vocab)
	tokens := make([]string, n)
	for s, id := range tj.Model.Vocab {
		tokens[id] = s
	}
	scores := make([]float32, n)
	for i := range scores {
		scores[i] = -1e9
	}
	for rank, m := range tj.Model.Merges {
		id := tj.Model.Vocab[strings.Replace(m, " ", "", 1)]
		if scores[id] == -1e9 {
			scores[id] = -float32(rank)
		}
	}
	types := make([]int32, n)
	for i, s := range tokens {
		switch {
		case i == 0:
			types[i] = tokUnknown
		case i <= 2:
			types[i] = tokControl
		case len(s) == 6 && strings.HasPrefix(s, "<0x"):
			types[i] = tokByte
		default:
			types[i] = tokNormal
		}
	}
	b := &builder{}
	b.str("tokenizer.ggml.model", "llama").strs("tokenizer.ggml.tokens", tokens)
	b.f32s("tokenizer.ggml.scores", scores).i32s("tokenizer.ggml.token_type", types)
	b.u32("tokenizer.ggml.bos_token_id", 1).u32("tokenizer.ggml.eos_token_id", 2).u32("tokenizer.ggml.unknown_token_id", 0)
	f, err := Parse("spm.gguf", b.bytes())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := f.Tokenizer()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range readTokenizerGolden(t, dir+"golden.json", 10) {
		e, err := tok.Encode(c.Text, tokenizer.EncodeOptions{ParseSpecial: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(e.IDs) == 0 && len(c.IDs) == 0 {
			continue
		}
		if !reflect.DeepEqual(e.IDs, c.IDs) {
			t.Errorf("%s: %v\nwant %v", c.Name, e.IDs, c.IDs)
		}
	}
	if !tok.AddsBOS() || tok.Special().BOS != 1 {
		t.Errorf("BOS: adds %v, id %d", tok.AddsBOS(), tok.Special().BOS)
	}
}

// tokenizerCase is one text of a tokenizer golden file and the ids the
// reference tokenizer gave it.
type tokenizerCase struct {
	Name, Text string
	IDs        []int32
}

// readTokenizerGolden reads a golden file of {"cases": [...]} and insists on
// at least atLeast cases, so a truncated file cannot pass by having none.
func readTokenizerGolden(t *testing.T, path string, atLeast int) []tokenizerCase {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var g struct{ Cases []tokenizerCase }
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(g.Cases) < atLeast {
		t.Fatalf("%s: %d cases, want at least %d", path, len(g.Cases), atLeast)
	}
	return g.Cases
}

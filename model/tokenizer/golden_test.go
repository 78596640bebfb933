package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

const tokDir = "../../testdata/tokenizers"

type goldenCase struct {
	Name    string  `json:"name"`
	Text    string  `json:"text"`
	IDs     []int32 `json:"ids"`
	Decoded string  `json:"decoded"`
}

type golden struct {
	Tokenizer string       `json:"tokenizer"`
	Cases     []goldenCase `json:"cases"`
}

// The real tokenizers are large; each test binary loads each one once.
var (
	loadMu sync.Mutex
	loaded = map[string]*Tokenizer{}
)

func realTokenizer(t testing.TB, name string) *Tokenizer {
	t.Helper()
	loadMu.Lock()
	defer loadMu.Unlock()
	if tok, ok := loaded[name]; ok {
		return tok
	}
	tok, err := Load(filepath.Join(tokDir, name))
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	loaded[name] = tok
	return tok
}

func readGolden(t *testing.T, name string) golden {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(tokDir, name, "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatalf("golden %s: %v", name, err)
	}
	if len(g.Cases) < 10 {
		t.Fatalf("golden %s: only %d cases", name, len(g.Cases))
	}
	return g
}

// hasSpecialText reports whether text holds a special token of tok, which the
// reference recognises (as Encode does with ParseSpecial).
func hasSpecialText(tok *Tokenizer, text string) bool {
	for _, a := range tok.added {
		if a.special && strings.Contains(text, a.content) {
			return true
		}
	}
	return false
}

// TestGoldenIDs compares Encode with ids made by transformers.js (see
// tools/tokgolden) on real published tokenizer files.
func TestGoldenIDs(t *testing.T) {
	for _, name := range []string{"qwen3", "llama3", "mistral"} {
		t.Run(name, func(t *testing.T) {
			tok := realTokenizer(t, name)
			g := readGolden(t, name)
			for _, c := range g.Cases {
				t.Run(c.Name, func(t *testing.T) {
					enc, err := tok.Encode(c.Text, EncodeOptions{ParseSpecial: true})
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(enc.IDs, c.IDs) {
						t.Fatalf("ids differ from the reference\n got %v\nwant %v", enc.IDs, c.IDs)
					}
					if got := tok.Decode(enc.IDs); got != c.Decoded {
						t.Errorf("Decode = %q, reference decodes to %q", got, c.Decoded)
					}
					if !hasSpecialText(tok, c.Text) {
						if got := tok.Decode(enc.IDs); got != c.Text {
							t.Errorf("Decode(Encode(x)) = %q, want x = %q", got, c.Text)
						}
					}
					checkOffsets(t, tok, c.Text, enc)
					checkStream(t, tok, enc.IDs)
				})
			}
		})
	}
}

// checkOffsets: one span per token, in order, inside the text, covering every
// byte; a token whose bytes are whole characters decodes to its span's text
// (up to the space a SentencePiece "▁" stands for).
func checkOffsets(t *testing.T, tok *Tokenizer, text string, enc Encoding) {
	t.Helper()
	if len(enc.Offsets) != len(enc.IDs) {
		t.Fatalf("%d offsets for %d ids", len(enc.Offsets), len(enc.IDs))
	}
	covered := make([]bool, len(text))
	prev := [2]int{0, 0}
	for i, o := range enc.Offsets {
		if o[0] < 0 || o[1] > len(text) || o[0] > o[1] {
			t.Fatalf("token %d: offsets %v outside text of %d bytes", i, o, len(text))
		}
		if o[0] < prev[0] || o[1] < prev[1] {
			t.Fatalf("token %d: offsets %v go back from %v", i, o, prev)
		}
		prev = o
		for k := o[0]; k < o[1]; k++ {
			covered[k] = true
		}
		if o[1] > o[0] && (!utf8.RuneStart(text[o[0]]) || (o[1] < len(text) && !utf8.RuneStart(text[o[1]]))) {
			t.Fatalf("token %d: offsets %v split a character", i, o)
		}
		p := string(tok.pieces[enc.IDs[i]])
		if utf8.ValidString(p) && !tok.IsSpecial(enc.IDs[i]) {
			span := text[o[0]:o[1]]
			if p != span && strings.TrimPrefix(p, " ") != span && strings.ReplaceAll(p, " ", "") != strings.ReplaceAll(span, " ", "") {
				t.Errorf("token %d %q decodes to %q but covers %q", i, tok.TokenString(enc.IDs[i]), p, span)
			}
		}
	}
	for k, c := range covered {
		if !c {
			t.Fatalf("byte %d (%q) of the text is covered by no token", k, text[k])
		}
	}
}

// checkStream: every chunk the stream decoder emits is valid UTF-8, and the
// chunks add up to Decode.
func checkStream(t *testing.T, tok *Tokenizer, ids []int32) {
	t.Helper()
	d := tok.NewStreamDecoder()
	var b strings.Builder
	for _, id := range ids {
		s := d.Push(id)
		if !utf8.ValidString(s) {
			t.Fatalf("stream emitted broken UTF-8 %q", s)
		}
		b.WriteString(s)
	}
	b.WriteString(d.Flush())
	if got, want := b.String(), tok.Decode(ids); got != want {
		t.Fatalf("stream gives %q, Decode %q", got, want)
	}
}

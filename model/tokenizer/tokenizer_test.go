package tokenizer

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// writeTokJSON writes a tokenizer.json built from doc into a fresh directory.
func writeTokJSON(t *testing.T, doc map[string]any) string {
	t.Helper()
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// tinyByteLevel is a byte-level BPE over the 256 byte characters plus the
// merges given; ids 0..255 are the bytes in byteAlphabet order.
func tinyByteLevel(merges any, extra []string, ignoreMerges bool, added []map[string]any) map[string]any {
	alpha := byteAlphabet()
	vocab := map[string]int{}
	for b := range 256 {
		vocab[string(alpha[b])] = b
	}
	for i, s := range extra {
		vocab[s] = 256 + i
	}
	return map[string]any{
		"added_tokens":  added,
		"normalizer":    nil,
		"pre_tokenizer": map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
		"decoder":       map[string]any{"type": "ByteLevel"},
		"model": map[string]any{"type": "BPE", "vocab": vocab, "merges": merges, "ignore_merges": ignoreMerges,
			"unk_token": nil, "byte_fallback": false},
	}
}

func TestHFSyntheticBPE(t *testing.T) {
	// "hello" with merges h+e, l+l, he+ll, hell+o; "Ġ" is the space character.
	extra := []string{"he", "ll", "hell", "hello", "Ġw", "Ġwo"}
	strMerges := []string{"h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o"}
	pairMerges := [][2]string{{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"Ġ", "w"}, {"Ġw", "o"}}
	hello, wo := int32(259), int32(261)
	for name, m := range map[string]any{"strings": strMerges, "pairs": pairMerges} {
		t.Run(name, func(t *testing.T) {
			tok, err := Load(writeTokJSON(t, tinyByteLevel(m, extra, false, nil)))
			if err != nil {
				t.Fatal(err)
			}
			enc, err := tok.Encode("hello world", EncodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want := []int32{hello, wo, 'r', 'l', 'd'} // a byte's id is its value here
			if !slices.Equal(enc.IDs, want) {
				t.Fatalf("ids %v, want %v", enc.IDs, want)
			}
			wantOff := [][2]int{{0, 5}, {5, 8}, {8, 9}, {9, 10}, {10, 11}}
			if !slices.Equal(enc.Offsets, wantOff) {
				t.Fatalf("offsets %v, want %v", enc.Offsets, wantOff)
			}
			if got := tok.Decode(enc.IDs); got != "hello world" {
				t.Fatalf("Decode = %q", got)
			}
		})
	}
}

// ignore_merges: a word that is itself in the vocabulary is one token even
// when no chain of merges builds it.
func TestHFIgnoreMerges(t *testing.T) {
	extra := []string{"ab", "abc"}
	merges := []string{"a b"} // no merge makes "abc"
	for _, ignore := range []bool{false, true} {
		tok, err := Load(writeTokJSON(t, tinyByteLevel(merges, extra, ignore, nil)))
		if err != nil {
			t.Fatal(err)
		}
		enc, err := tok.Encode("abc", EncodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := []int32{256, 'c'}
		if ignore {
			want = []int32{257}
		}
		if !slices.Equal(enc.IDs, want) {
			t.Errorf("ignore_merges=%v: ids %v, want %v", ignore, enc.IDs, want)
		}
	}
}

func TestHFAddedTokens(t *testing.T) {
	added := []map[string]any{
		{"id": 300, "content": "<|end|>", "special": true},
		{"id": 301, "content": "<pad>", "special": false},
		{"id": 302, "content": "<mask>", "special": true, "lstrip": true, "rstrip": true},
	}
	tok, err := Load(writeTokJSON(t, tinyByteLevel([]string{}, nil, false, added)))
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 303 {
		t.Fatalf("VocabSize = %d, want 303", tok.VocabSize())
	}
	if id, ok := tok.TokenID("<|end|>"); !ok || id != 300 || tok.TokenString(300) != "<|end|>" || !tok.IsSpecial(300) {
		t.Fatalf("TokenID/TokenString/IsSpecial of <|end|> wrong: %d %v", id, ok)
	}
	cases := []struct {
		text    string
		special bool
		want    []int32
		offsets [][2]int
	}{
		{"a<|end|>b", true, []int32{'a', 300, 'b'}, [][2]int{{0, 1}, {1, 8}, {8, 9}}},
		{"a<pad>", false, []int32{'a', 301}, [][2]int{{0, 1}, {1, 6}}},
		{"x <mask> y", true, []int32{'x', 302, 'y'}, [][2]int{{0, 1}, {1, 9}, {9, 10}}},
	}
	for _, c := range cases {
		enc, err := tok.Encode(c.text, EncodeOptions{ParseSpecial: c.special})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(enc.IDs, c.want) || !slices.Equal(enc.Offsets, c.offsets) {
			t.Errorf("%q: ids %v offsets %v, want %v %v", c.text, enc.IDs, enc.Offsets, c.want, c.offsets)
		}
	}
	// Without ParseSpecial a special token's text is ordinary text.
	enc, err := tok.Encode("a<|end|>b", EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(enc.IDs, 300) || tok.Decode(enc.IDs) != "a<|end|>b" {
		t.Fatalf("ParseSpecial=false: ids %v decode %q", enc.IDs, tok.Decode(enc.IDs))
	}
}

func TestHFBadFiles(t *testing.T) {
	base := func() map[string]any { return tinyByteLevel([]string{}, nil, false, nil) }
	cases := []struct {
		name  string
		doc   func() any
		field string
	}{
		{"unknown model", func() any { d := base(); d["model"].(map[string]any)["type"] = "WordPiece"; return d }, "model.type"},
		{"unknown pre_tokenizer", func() any { d := base(); d["pre_tokenizer"] = map[string]any{"type": "Wiggle"}; return d }, "pre_tokenizer.type"},
		{"nested pre_tokenizer", func() any {
			d := base()
			d["pre_tokenizer"] = map[string]any{"type": "Sequence", "pretokenizers": []any{map[string]any{"type": "Wiggle"}}}
			return d
		}, "pre_tokenizer.pretokenizers[0].type"},
		{"unknown normalizer", func() any { d := base(); d["normalizer"] = map[string]any{"type": "Wiggle"}; return d }, "normalizer.type"},
		{"unknown decoder", func() any { d := base(); d["decoder"] = map[string]any{"type": "Wiggle"}; return d }, "decoder.type"},
		{"bad regex", func() any {
			d := base()
			d["pre_tokenizer"] = map[string]any{"type": "Split", "pattern": map[string]any{"Regex": "(("}, "behavior": "Isolated"}
			return d
		}, "pre_tokenizer.pattern.Regex"},
		{"merge out of vocab", func() any { d := base(); d["model"].(map[string]any)["merges"] = []string{"a zz"}; return d }, "model.merges"},
		{"missing model", func() any { d := base(); delete(d, "model"); return d }, "model"},
		{"added without id", func() any { d := base(); d["added_tokens"] = []any{map[string]any{"content": "x"}}; return d }, "added_tokens[0].id"},
		{"empty vocab", func() any { d := base(); d["model"].(map[string]any)["vocab"] = map[string]int{}; return d }, "model.vocab"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data, err := json.Marshal(c.doc())
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(t.TempDir(), "tokenizer.json")
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = Load(p)
			if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), c.field) {
				t.Fatalf("error = %v, want one naming %s and %s", err, p, c.field)
			}
		})
	}
	t.Run("malformed JSON", func(t *testing.T) {
		for _, name := range []string{"tokenizer.json", "tokenizer_config.json"} {
			dir := t.TempDir()
			good, _ := json.Marshal(base())
			if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), good, 0o644); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte(`{"model": {"type": "BPE", `), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), p) {
				t.Errorf("%s: error = %v, want one naming the file", name, err)
			}
		}
	})
	t.Run("missing", func(t *testing.T) {
		if _, err := Load(t.TempDir()); err == nil {
			t.Fatal("Load of an empty directory succeeded")
		}
	})
}

func TestSpecialTokensOfRealFiles(t *testing.T) {
	cases := []struct {
		name     string
		bos, eos int32
		stops    []int32
		addsBOS  bool
	}{
		// Qwen3: no BOS, eos_token <|im_end|>, <|endoftext|> also ends a turn.
		{"qwen3", -1, 151645, []int32{151645, 151643}, false},
		// Llama 3: <|begin_of_text|>, <|end_of_text|>, and <|eot_id|> ends a turn.
		{"llama3", 128000, 128001, []int32{128001, 128009}, false},
		// Mistral: <s> and </s>, add_bos_token true.
		{"mistral", 1, 2, []int32{2}, true},
	}
	for _, c := range cases {
		tok := realTokenizer(t, c.name)
		s := tok.Special()
		if s.BOS != c.bos || s.EOS != c.eos {
			t.Errorf("%s: BOS %d EOS %d, want %d %d", c.name, s.BOS, s.EOS, c.bos, c.eos)
		}
		for _, id := range c.stops {
			if !slices.Contains(s.StopIDs(), id) {
				t.Errorf("%s: StopIDs %v lack %d (%s)", c.name, s.StopIDs(), id, tok.TokenString(id))
			}
		}
		if tok.AddsBOS() != c.addsBOS {
			t.Errorf("%s: AddsBOS = %v", c.name, tok.AddsBOS())
		}
	}
}

// Byte-level tokens can end inside a character; the stream decoder must hold
// such bytes back instead of emitting half a character.
func TestStreamHoldsPartialCharacters(t *testing.T) {
	tok := realTokenizer(t, "qwen3")
	text := "家族👩‍👩‍👧‍👦 𓀀𓁐 🏳️‍🌈"
	enc, err := tok.Encode(text, EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := tok.NewStreamDecoder()
	var out strings.Builder
	held := 0
	for _, id := range enc.IDs {
		p := tok.pieces[id]
		s := d.Push(id)
		if !utf8.Valid(p) {
			held++
		}
		if !utf8.ValidString(s) {
			t.Fatalf("Push(%d) = %q, broken UTF-8", id, s)
		}
		out.WriteString(s)
	}
	out.WriteString(d.Flush())
	if held == 0 {
		t.Fatal("no token of the text ends inside a character; the test checks nothing")
	}
	if out.String() != text {
		t.Fatalf("stream = %q, want %q", out.String(), text)
	}
	// A sequence cut inside a character flushes a replacement character.
	d = tok.NewStreamDecoder()
	var cut []int32
	for _, id := range enc.IDs {
		if !utf8.Valid(tok.pieces[id]) {
			cut = append(cut, id)
			break
		}
	}
	s := d.Push(cut[0])
	if s != "" && !utf8.ValidString(s) {
		t.Fatalf("partial push gave %q", s)
	}
	if f := d.Flush(); !utf8.ValidString(f) || !strings.Contains(s+f, "\uFFFD") {
		t.Fatalf("flush after a partial character = %q", f)
	}
}

// Random and invalid input never panics, and offsets stay well-formed.
func TestEncodeRandomInput(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", " ", "  ", "\n", "\t", "é", "日", "🍕", "\u200d", "<|im_end|>", "<s>", "<|eot_id|>", "1", "99", "'s", "\xff", "\xe6\x97", "\x80", "▁", "<0x41>"}
	for _, name := range []string{"qwen3", "llama3", "mistral"} {
		tok := realTokenizer(t, name)
		for i := range 200 {
			var b strings.Builder
			for range rng.IntN(30) {
				b.WriteString(alphabet[rng.IntN(len(alphabet))])
			}
			text := b.String()
			enc, err := tok.Encode(text, EncodeOptions{ParseSpecial: i%2 == 0})
			if err != nil {
				t.Fatalf("%s %q: %v", name, text, err)
			}
			if len(enc.IDs) != len(enc.Offsets) {
				t.Fatalf("%s %q: %d ids, %d offsets", name, text, len(enc.IDs), len(enc.Offsets))
			}
			prev := [2]int{}
			for _, o := range enc.Offsets {
				if o[0] < prev[0] || o[1] < prev[1] || o[0] > o[1] || o[1] > len(text) {
					t.Fatalf("%s %q: bad offsets %v", name, text, enc.Offsets)
				}
				prev = o
			}
			if dec := tok.Decode(enc.IDs); !utf8.ValidString(dec) {
				t.Fatalf("%s %q: Decode gave invalid UTF-8", name, text)
			} else if utf8.ValidString(text) && i%2 == 1 && name != "mistral" && dec != text {
				t.Fatalf("%s %q: round trip gave %q", name, text, dec)
			}
		}
	}
	// Ids out of range decode to nothing rather than panicking.
	tok := realTokenizer(t, "qwen3")
	if got := tok.Decode([]int32{-5, 1 << 30}); got != "" {
		t.Fatalf("Decode of bad ids = %q", got)
	}
	if tok.TokenString(-1) != "" || tok.TokenString(1<<30) != "" {
		t.Fatal("TokenString of a bad id is not empty")
	}
}

func TestEncodeConcurrent(t *testing.T) {
	tok := realTokenizer(t, "qwen3")
	text := strings.Repeat("Concurrent encoders share the word cache. ", 50)
	want, err := tok.Encode(text, EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 8 {
		wg.Go(func() {
			got, err := tok.Encode(text, EncodeOptions{})
			if err != nil || !slices.Equal(got.IDs, want.IDs) {
				errs <- "concurrent Encode differs"
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// proseText is ~100 KB of varied English prose built from the golden texts.
func proseText(t testing.TB) string {
	data, err := os.ReadFile(filepath.Join(tokDir, "qwen3", "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := 0; b.Len() < 100_000; i++ {
		for _, c := range g.Cases {
			if c.Name == "prose" || c.Name == "ascii" || c.Name == "contractions" || c.Name == "long_word" {
				// vary numbers so the word cache does not see one paragraph only
				b.WriteString(c.Text)
				b.WriteString(" Paragraph ")
				b.WriteString(strings.Repeat("x", i%7))
				b.WriteString(".\n")
			}
		}
	}
	return b.String()
}

func BenchmarkEncodeQwen3Prose(b *testing.B) {
	tok := realTokenizer(b, "qwen3")
	text := proseText(b)
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	n := 0
	for b.Loop() {
		enc, err := tok.Encode(text, EncodeOptions{})
		if err != nil {
			b.Fatal(err)
		}
		n += len(enc.IDs)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "tokens/s")
}

// A Metaspace pre-tokenizer (Llama 2 style files without a normaliser):
// spaces become "▁", one "▁" is prepended, words split before each "▁", and
// the decoder removes the prepended space again.
func TestHFMetaspace(t *testing.T) {
	vocab := map[string]int{"<unk>": 0, "▁": 1, "h": 2, "i": 3, "▁h": 4, "▁hi": 5, "<0x21>": 6, "t": 7, "▁t": 8}
	doc := map[string]any{
		"pre_tokenizer": map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
		"decoder":       map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
		"model": map[string]any{"type": "BPE", "vocab": vocab, "merges": []string{"▁ h", "▁h i", "▁ t"},
			"unk_token": "<unk>", "byte_fallback": true},
	}
	tok, err := Load(writeTokJSON(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := tok.Encode("hi  hit!", EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// "▁hi▁▁hit!" splits as "▁hi" "▁" "▁hit!"; "!" is byte-fallback <0x21>.
	want := []int32{5, 1, 5, 7, 6}
	wantOff := [][2]int{{0, 2}, {2, 3}, {3, 6}, {6, 7}, {7, 8}}
	if !slices.Equal(enc.IDs, want) || !slices.Equal(enc.Offsets, wantOff) {
		t.Fatalf("ids %v offsets %v, want %v %v", enc.IDs, enc.Offsets, want, wantOff)
	}
	if got := tok.Decode(enc.IDs); got != "hi  hit!" {
		t.Fatalf("Decode = %q", got)
	}
	// A character with neither a token nor byte tokens is <unk>.
	enc, err = tok.Encode("é", EncodeOptions{})
	if err != nil || !slices.Equal(enc.IDs, []int32{1, 0}) {
		t.Fatalf("unknown character: %v %v", enc.IDs, err)
	}
}

// Qwen's NFC normaliser: decomposed input encodes like its composed form,
// and offsets still point into the input as given.
func TestNFCOffsets(t *testing.T) {
	tok := realTokenizer(t, "qwen3")
	composed, err := tok.Encode("café au lait", EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	text := "cafe\u0301 au lait"
	dec, err := tok.Encode(text, EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dec.IDs, composed.IDs) {
		t.Fatalf("decomposed ids %v, composed %v", dec.IDs, composed.IDs)
	}
	last := dec.Offsets[len(dec.Offsets)-1]
	if last[1] != len(text) || dec.Offsets[0][0] != 0 {
		t.Fatalf("offsets %v do not span the %d-byte input", dec.Offsets, len(text))
	}
	for i, o := range dec.Offsets {
		if strings.Contains(text[o[0]:o[1]], "\u0301") && !strings.Contains(text[o[0]:o[1]], "e\u0301") {
			t.Fatalf("token %d covers the combining accent without its base: %v", i, o)
		}
	}
}

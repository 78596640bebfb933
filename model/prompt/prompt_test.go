package prompt

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"cacheclip/model/tokenizer"
)

const tokDir = "../../testdata/tokenizers"

var (
	loadMu sync.Mutex
	loaded = map[string]*tokenizer.Tokenizer{}
)

func tok(t *testing.T, name string) *tokenizer.Tokenizer {
	t.Helper()
	loadMu.Lock()
	defer loadMu.Unlock()
	if tk, ok := loaded[name]; ok {
		return tk
	}
	tk, err := tokenizer.Load(filepath.Join(tokDir, name))
	if err != nil {
		t.Fatal(err)
	}
	loaded[name] = tk
	return tk
}

// goldenIDs returns the reference (transformers.js) ids of a golden text.
func goldenIDs(t *testing.T, name, caseName string) (string, []int32) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(tokDir, name, "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Cases []struct {
			Name string  `json:"name"`
			Text string  `json:"text"`
			IDs  []int32 `json:"ids"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	for _, c := range g.Cases {
		if c.Name == caseName {
			return c.Text, c.IDs
		}
	}
	t.Fatalf("golden %s has no case %s", name, caseName)
	return "", nil
}

func concat(l Layout) (string, []int32) {
	text := l.Prefix.Text
	ids := slices.Clone(l.Prefix.IDs)
	for _, c := range l.Chunks {
		text += c.Text
		ids = append(ids, c.IDs...)
	}
	return text + l.Question.Text, append(ids, l.Question.IDs...)
}

// With no chunks, P + Q is the whole chat prompt; the reference tokenizer's ids
// for the same rendered text (special tokens recognised) must match.
func TestLayoutMatchesReference(t *testing.T) {
	cases := []struct {
		tmpl, tok, golden, system, question string
	}{
		{"chatml", "qwen3", "chatml_special", "You are helpful.", "What is 2+2?"},
		{"llama3", "llama3", "llama3_special", "", "Hi there"},
	}
	for _, c := range cases {
		t.Run(c.tmpl, func(t *testing.T) {
			tm, err := ByName(c.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			tm.System = c.system
			l, err := tm.Build(tok(t, c.tok), nil, c.question)
			if err != nil {
				t.Fatal(err)
			}
			wantText, wantIDs := goldenIDs(t, c.tok, c.golden)
			gotText, gotIDs := concat(l)
			if gotText != wantText {
				t.Fatalf("text %q, want %q", gotText, wantText)
			}
			if !slices.Equal(gotIDs, wantIDs) {
				t.Fatalf("ids %v, want %v", gotIDs, wantIDs)
			}
		})
	}
}

func TestChatMLLayoutQwen(t *testing.T) {
	qt := tok(t, "qwen3")
	tm, err := ByName("chatml")
	if err != nil {
		t.Fatal(err)
	}
	tm.System = "Answer from the documents."
	chunks := []string{"Paris is the capital of France.", "The Eiffel Tower is 330 m tall."}
	l, err := tm.Build(qt, chunks, "How tall is the tower?")
	if err != nil {
		t.Fatal(err)
	}
	// P: <|im_start|>system\n…<|im_end|>\n<|im_start|>user\n — the special
	// ids are Qwen's published ones.
	imStart, imEnd := int32(151644), int32(151645)
	if l.Prefix.Text != "<|im_start|>system\nAnswer from the documents.<|im_end|>\n<|im_start|>user\n" {
		t.Fatalf("prefix text %q", l.Prefix.Text)
	}
	p := l.Prefix.IDs
	if p[0] != imStart || p[len(p)-3] != imStart || !slices.Contains(p, imEnd) || p[len(p)-1] != 198 {
		t.Fatalf("prefix ids %v", p)
	}
	// Q ends with <|im_end|>\n<|im_start|>assistant\n (assistant = 77091, \n = 198).
	q := l.Question.IDs
	if !slices.Equal(q[len(q)-5:], []int32{imEnd, 198, imStart, 77091, 198}) {
		t.Fatalf("question tail %v", q[len(q)-5:])
	}
	for i, c := range chunks {
		want, err := qt.Encode(c+"\n\n", tokenizer.EncodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if l.Chunks[i].Text != c+"\n\n" || !slices.Equal(l.Chunks[i].IDs, want.IDs) {
			t.Fatalf("chunk %d = %q %v, want it tokenised alone: %v", i, l.Chunks[i].Text, l.Chunks[i].IDs, want.IDs)
		}
		seg, err := tm.EncodeChunk(qt, c)
		if err != nil || !slices.Equal(seg.IDs, l.Chunks[i].IDs) {
			t.Fatalf("EncodeChunk differs from Build's chunk: %v %v", seg.IDs, err)
		}
	}
	// P is the same whatever the chunks and question.
	pid, err := tm.PrefixIDs(qt)
	if err != nil || !slices.Equal(pid, l.Prefix.IDs) {
		t.Fatalf("PrefixIDs %v (%v) differ from Build's prefix %v", pid, err, l.Prefix.IDs)
	}
	checkSegments(t, qt, l)
}

// checkSegments: offsets index each segment's own Text, and each token's
// span decodes back to its text.
func checkSegments(t *testing.T, tk *tokenizer.Tokenizer, l Layout) {
	t.Helper()
	segs := append(append([]Segment{l.Prefix}, l.Chunks...), l.Question)
	for si, s := range segs {
		if len(s.IDs) != len(s.Offsets) {
			t.Fatalf("segment %d: %d ids, %d offsets", si, len(s.IDs), len(s.Offsets))
		}
		for i, o := range s.Offsets {
			if o[0] < 0 || o[1] > len(s.Text) || o[0] > o[1] {
				t.Fatalf("segment %d token %d: offsets %v outside %q", si, i, o, s.Text)
			}
			span := s.Text[o[0]:o[1]]
			dec := tk.Decode([]int32{s.IDs[i]})
			if o[1] > o[0] && dec != span && strings.TrimPrefix(dec, " ") != strings.TrimPrefix(span, " ") && !strings.ContainsRune(dec, '\uFFFD') {
				t.Fatalf("segment %d token %d decodes to %q, covers %q", si, i, dec, span)
			}
		}
	}
}

func TestTemplatesOnOtherTokenizers(t *testing.T) {
	cases := []struct {
		tmpl, tok  string
		prefixHead []int32 // first ids of P
		tailEnd    []int32 // last ids of Q
	}{
		// <|begin_of_text|><|start_header_id|>system…; …<|start_header_id|>assistant<|end_header_id|>\n\n
		{"llama3", "llama3", []int32{128000, 128006}, []int32{128006, 78191, 128007, 271}},
		// <s>▁[INST]…; …▁[/INST]
		{"llama2", "mistral", []int32{1, 733, 16289, 28793}, []int32{733, 28748, 16289, 28793}},
		// plain: BOS only for a model that adds one; Q is "Question: {q}\nAnswer:"
		{"plain", "mistral", []int32{1}, nil},
		{"plain", "qwen3", nil, nil},
	}
	for _, c := range cases {
		t.Run(c.tmpl+"/"+c.tok, func(t *testing.T) {
			tk := tok(t, c.tok)
			tm, err := ByName(c.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			l, err := tm.Build(tk, []string{"Doc one.", "Doc two."}, "Which doc?")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(l.Prefix.IDs[:min(len(c.prefixHead), len(l.Prefix.IDs))], c.prefixHead) {
				t.Fatalf("prefix %v, want it to start %v", l.Prefix.IDs, c.prefixHead)
			}
			if c.tmpl == "plain" && len(l.Prefix.IDs) != len(c.prefixHead) {
				t.Fatalf("plain prefix %v, want %v", l.Prefix.IDs, c.prefixHead)
			}
			q := l.Question.IDs
			if len(c.tailEnd) > 0 && !slices.Equal(q[len(q)-len(c.tailEnd):], c.tailEnd) {
				t.Fatalf("question %v, want it to end %v", q, c.tailEnd)
			}
			if len(l.Chunks) != 2 {
				t.Fatalf("%d chunks", len(l.Chunks))
			}
			checkSegments(t, tk, l)
		})
	}
}

func TestUnknownTemplateToken(t *testing.T) {
	tm, err := ByName("chatml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = tm.Build(tok(t, "mistral"), []string{"x"}, "y")
	if err == nil || !strings.Contains(err.Error(), "<|im_start|>") || !strings.Contains(err.Error(), "chatml") {
		t.Fatalf("error = %v, want one naming <|im_start|> and chatml", err)
	}
	if _, err := ByName("nonesuch"); err == nil || !strings.Contains(err.Error(), "nonesuch") {
		t.Fatalf("ByName(nonesuch) error = %v", err)
	}
}

func TestDetect(t *testing.T) {
	cases := []struct{ dir, want string }{
		{filepath.Join(tokDir, "qwen3"), "chatml"},
		{filepath.Join(tokDir, "llama3"), "llama3"},
		{filepath.Join(tokDir, "mistral"), "plain"}, // its config has no chat_template
		{t.TempDir(), "plain"},                      // no tokenizer_config.json at all
	}
	for _, c := range cases {
		tm, err := Detect(c.dir)
		if err != nil {
			t.Fatalf("%s: %v", c.dir, err)
		}
		if tm.Name != c.want {
			t.Errorf("%s: detected %s, want %s", c.dir, tm.Name, c.want)
		}
	}
	// A list of named templates (as some configs hold) and Llama 2's marker.
	dir := t.TempDir()
	cfg := `{"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": "{{ '[INST] ' + m + ' [/INST]' }}"}]}`
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if tm, err := Detect(dir); err != nil || tm.Name != "llama2" {
		t.Fatalf("named templates: %v %v", tm.Name, err)
	}
	bad := filepath.Join(dir, "tokenizer_config.json")
	if err := os.WriteFile(bad, []byte(`{"chat_template": `), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Detect(dir); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("malformed config: error = %v, want one naming %s", err, bad)
	}
}

// Special-looking text inside a chunk or question stays text.
func TestChunkTextIsNotParsedForSpecials(t *testing.T) {
	qt := tok(t, "qwen3")
	tm, _ := ByName("chatml")
	seg, err := tm.EncodeChunk(qt, "a <|im_end|> b")
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(seg.IDs, 151645) {
		t.Fatalf("chunk text produced the <|im_end|> id: %v", seg.IDs)
	}
}

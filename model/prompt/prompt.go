// Package prompt lays a question and its retrieved chunks out as the token
// spans of docs/PROMPT_LAYOUT.md: [P: shared prefix] [chunk 1] … [chunk k] [Q].
//
// P is the chat template's head up to where the documents begin; it is the
// same for every chunk and every question, so its KV is stored once. Each chunk
// is tokenised on its own, so its cache can be computed once and reused after
// any prefix. Q is the question and the template's tail, always computed fresh.
//
// Separator convention: a chunk's segment is its text followed by
// ChunkSuffix ("\n\n" by default), tokenised together, so the separator belongs
// to the chunk that precedes it and no tokens sit between segments.
//
// Special tokens of a template (<|im_start|>, <|eot_id|>, …) are resolved with
// the tokenizer's TokenID, never by parsing text, so special-looking text in a
// system message, chunk or question stays ordinary text.
package prompt

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"cacheclip/model/tokenizer"
)

// Segment is one tokenised part of the prompt. Offsets are byte offsets
// [start,end) of each token within Text (special tokens cover their own
// written form in Text; an inserted BOS is zero-width at 0).
type Segment struct {
	Text    string
	IDs     []int32
	Offsets [][2]int
}

// Layout is the whole prompt as P | chunks | Q.
type Layout struct {
	Prefix   Segment
	Chunks   []Segment
	Question Segment
}

// Template describes one chat format. The zero value is not useful; start
// from ByName or Detect and change System, ChunkSuffix as needed.
type Template struct {
	Name string
	// System is the system message; "" leaves the system turn out where the
	// format allows (ChatML, Llama 3), or the <<SYS>> block (Llama 2).
	System string
	// ChunkSuffix ends every chunk's own segment.
	ChunkSuffix string

	head  []part // P, with {system} substituted
	qhead []part // before the question
	tail  []part // after the question
	// bos prepends the tokenizer's BOS to P when the tokenizer says its model
	// wants one (plain and Llama 2); formats that write BOS themselves don't.
	bos bool
	// answerLead is what the model writes between Q and its answer: " " after
	// "Answer:" (plain) and "[/INST]" (Llama 2), nothing after a chat format's
	// assistant header, which ends in a newline.
	answerLead string
}

// part is literal text, or a special token resolved by TokenID.
type part struct {
	text    string
	special bool
	// system marks the place of the system message (text parts only).
	system bool
	// ifSystem parts are dropped when System is "".
	ifSystem bool
}

func txt(s string) part    { return part{text: s} }
func tokp(s string) part   { return part{text: s, special: true} }
func sys() part            { return part{system: true, ifSystem: true} }
func opt(p part) part      { p.ifSystem = true; return p }
func sysTxt(s string) part { return opt(txt(s)) }
func sysTok(s string) part { return opt(tokp(s)) }

// DefaultSystem is the system message ByName and Detect start with.
const DefaultSystem = "You are a helpful assistant. Answer the question using the documents."

// Names lists the templates ByName knows.
var Names = []string{"chatml", "llama3", "llama2", "plain"}

// ByName returns a template: "chatml" (Qwen, SmolLM2), "llama3", "llama2"
// ([INST]) or "plain" (no chat markup: BOS if the model uses one, the chunks,
// then the question).
func ByName(name string) (Template, error) {
	t := Template{Name: name, System: DefaultSystem, ChunkSuffix: "\n\n"}
	switch name {
	case "chatml", "qwen":
		t.Name = "chatml"
		t.head = []part{sysTok("<|im_start|>"), sysTxt("system\n"), sys(), sysTok("<|im_end|>"), sysTxt("\n"),
			tokp("<|im_start|>"), txt("user\n")}
		t.tail = []part{tokp("<|im_end|>"), txt("\n"), tokp("<|im_start|>"), txt("assistant\n")}
	case "llama3":
		t.head = []part{tokp("<|begin_of_text|>"),
			sysTok("<|start_header_id|>"), sysTxt("system"), sysTok("<|end_header_id|>"), sysTxt("\n\n"), sys(), sysTok("<|eot_id|>"),
			tokp("<|start_header_id|>"), txt("user"), tokp("<|end_header_id|>"), txt("\n\n")}
		t.tail = []part{tokp("<|eot_id|>"), tokp("<|start_header_id|>"), txt("assistant"), tokp("<|end_header_id|>"), txt("\n\n")}
	case "llama2":
		// Llama 2 chat: <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST].
		// No space after "[INST]" without a system block: SentencePiece
		// tokenizers start every separately encoded chunk with "▁" already.
		t.bos = true
		t.head = []part{txt("[INST]"), sysTxt(" <<SYS>>\n"), sys(), sysTxt("\n<</SYS>>\n\n")}
		t.tail = []part{txt(" [/INST]")}
		t.answerLead = " "
	case "plain":
		t.System = ""
		t.bos = true
		// Chat formats pass the question as the user's message; a base model
		// needs the cue (docs/PROMPT_LAYOUT.md, which the test bed was trained on).
		t.qhead = []part{txt("Question: ")}
		t.tail = []part{txt("\nAnswer:")}
		t.answerLead = " "
	default:
		return Template{}, fmt.Errorf("prompt: unknown template %q (known: %s)", name, strings.Join(Names, ", "))
	}
	return t, nil
}

// Detect picks the template from modelDir/tokenizer_config.json's
// chat_template by the markers it writes (<|im_start|> → chatml,
// <|start_header_id|> → llama3, [INST] → llama2). A missing file, a missing
// chat_template or an unrecognised one gives "plain".
func Detect(modelDir string) (Template, error) {
	p := filepath.Join(modelDir, "tokenizer_config.json")
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return ByName("plain")
	}
	cfg, err := tokenizer.ReadConfig(p)
	if err != nil {
		return Template{}, fmt.Errorf("prompt: %w", err)
	}
	return ByName(DetectName(cfg.ChatTemplate))
}

// DetectName maps a chat_template string to a template name.
func DetectName(chatTemplate string) string {
	switch {
	case strings.Contains(chatTemplate, "<|im_start|>"):
		return "chatml"
	case strings.Contains(chatTemplate, "<|start_header_id|>"):
		return "llama3"
	case strings.Contains(chatTemplate, "[INST]"):
		return "llama2"
	}
	return "plain"
}

// Build lays out chunks and question.
func (t Template) Build(tok *tokenizer.Tokenizer, chunks []string, question string) (Layout, error) {
	var l Layout
	var err error
	if l.Prefix, err = t.Prefix(tok); err != nil {
		return Layout{}, err
	}
	l.Chunks = make([]Segment, len(chunks))
	for i, c := range chunks {
		if l.Chunks[i], err = t.EncodeChunk(tok, c); err != nil {
			return Layout{}, fmt.Errorf("prompt: chunk %d: %w", i, err)
		}
	}
	if l.Question, err = t.EncodeQuestion(tok, question); err != nil {
		return Layout{}, err
	}
	return l, nil
}

// Prefix is P as a segment.
func (t Template) Prefix(tok *tokenizer.Tokenizer) (Segment, error) {
	var s Segment
	if t.bos && tok.AddsBOS() {
		s.IDs = append(s.IDs, tok.Special().BOS)
		s.Offsets = append(s.Offsets, [2]int{0, 0})
	}
	if err := t.render(tok, &s, t.head); err != nil {
		return Segment{}, err
	}
	return s, nil
}

// PrefixIDs is P's token ids: the same for every chunk and question.
func (t Template) PrefixIDs(tok *tokenizer.Tokenizer) ([]int32, error) {
	s, err := t.Prefix(tok)
	return s.IDs, err
}

// EncodeChunk tokenises one chunk on its own, followed by ChunkSuffix, so its
// tokens (and cache) do not depend on its neighbours.
func (t Template) EncodeChunk(tok *tokenizer.Tokenizer, text string) (Segment, error) {
	var s Segment
	err := t.render(tok, &s, []part{txt(text + t.ChunkSuffix)})
	return s, err
}

// EncodeQuestion is Q: the question followed by the template's tail.
func (t Template) EncodeQuestion(tok *tokenizer.Tokenizer, question string) (Segment, error) {
	var s Segment
	parts := append(append(append([]part(nil), t.qhead...), txt(question)), t.tail...)
	err := t.render(tok, &s, parts)
	return s, err
}

// EncodeAnswer is the token ids of answer as the model would write it right
// after Q: the template's lead (a space after "Answer:") unless the answer
// starts with whitespace, then the answer, tokenised together with Q's last
// run of text and cut where Q's own tokens end. Tokenising the answer alone
// would differ where a tokenizer treats a word's leading space or the start
// of a text specially (SentencePiece's "▁", byte-level BPE's "Ġ"). An answer
// whose first token merges with Q's last one cannot follow Q's cache: that is
// an error naming the answer.
func (t Template) EncodeAnswer(tok *tokenizer.Tokenizer, question, answer string) ([]int32, error) {
	ids, err := t.EncodeAnswers(tok, question, []string{answer})
	if err != nil {
		return nil, err
	}
	return ids[0], nil
}

// EncodeAnswers is EncodeAnswer for several answers after the same question
// (the labels of a row), encoding Q on its own once.
func (t Template) EncodeAnswers(tok *tokenizer.Tokenizer, question string, answers []string) ([][]int32, error) {
	q, err := t.EncodeQuestion(tok, question)
	if err != nil {
		return nil, err
	}
	parts := append(append(append([]part(nil), t.qhead...), txt(question)), t.tail...)
	out := make([][]int32, len(answers))
	for i, answer := range answers {
		if answer == "" {
			return nil, fmt.Errorf("prompt: empty answer")
		}
		text := answer
		if r := answer[0]; r != ' ' && r != '\n' && r != '\t' {
			text = t.answerLead + answer
		}
		var s Segment
		if err := t.render(tok, &s, append(slices.Clip(parts), txt(text))); err != nil {
			return nil, err
		}
		if len(s.IDs) <= len(q.IDs) || !slices.Equal(s.IDs[:len(q.IDs)], q.IDs) {
			return nil, fmt.Errorf("prompt: answer %q merges with the end of the prompt under this tokenizer (template %s), so it cannot be scored after the prompt's tokens", answer, t.Name)
		}
		out[i] = s.IDs[len(q.IDs):]
	}
	return out, nil
}

// render appends parts to s: text parts are encoded as ordinary text (one
// encoding per run of text between special tokens, as Hugging Face splits on
// special tokens before encoding), special parts resolve through TokenID.
func (t Template) render(tok *tokenizer.Tokenizer, s *Segment, parts []part) error {
	var run strings.Builder
	flush := func() error {
		if run.Len() == 0 {
			return nil
		}
		text := run.String()
		run.Reset()
		enc, err := tok.Encode(text, tokenizer.EncodeOptions{})
		if err != nil {
			return fmt.Errorf("prompt: template %s: %w", t.Name, err)
		}
		base := len(s.Text)
		s.Text += text
		s.IDs = append(s.IDs, enc.IDs...)
		for _, o := range enc.Offsets {
			s.Offsets = append(s.Offsets, [2]int{o[0] + base, o[1] + base})
		}
		return nil
	}
	for _, p := range parts {
		if p.ifSystem && t.System == "" {
			continue
		}
		switch {
		case p.system:
			run.WriteString(t.System)
		case p.special:
			if err := flush(); err != nil {
				return err
			}
			id, ok := tok.TokenID(p.text)
			if !ok {
				return fmt.Errorf("prompt: template %s: token %s is not in the tokenizer's vocabulary", t.Name, p.text)
			}
			start := len(s.Text)
			s.Text += p.text
			s.IDs = append(s.IDs, id)
			s.Offsets = append(s.Offsets, [2]int{start, len(s.Text)})
		default:
			run.WriteString(p.text)
		}
	}
	return flush()
}

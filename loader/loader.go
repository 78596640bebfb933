// Package loader opens a Hugging Face model directory as one unit: weights,
// tokenizer, prompt template and the layout function the prefill methods use.
package loader

import (
	"fmt"

	"cacheclip/model"
	"cacheclip/model/prompt"
	"cacheclip/model/tokenizer"
	"cacheclip/prefill"
)

// Bundle is a model directory ready for prefill and decoding.
type Bundle struct {
	Dir      string
	Model    *model.Model
	Tok      *tokenizer.Tokenizer
	Template prompt.Template
	// Stops are the ids that end an answer: the config's EOS and the tokenizer's
	// end-of-turn tokens.
	Stops []int32
}

// Open loads dir; templateName overrides the template detected from
// tokenizer_config.json ("" detects).
func Open(dir, templateName string) (*Bundle, error) {
	m, err := model.LoadDir(dir)
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		m.Close()
		return nil, err
	}
	var tmpl prompt.Template
	if templateName != "" {
		tmpl, err = prompt.ByName(templateName)
	} else {
		tmpl, err = prompt.Detect(dir)
	}
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if tok.VocabSize() > m.Config.Vocab {
		m.Close()
		return nil, fmt.Errorf("%s: tokenizer has %d tokens but the model's vocabulary is %d", dir, tok.VocabSize(), m.Config.Vocab)
	}
	stops := append(append([]int32(nil), m.Config.EOS...), tok.Special().StopIDs()...)
	return &Bundle{Dir: dir, Model: m, Tok: tok, Template: tmpl, Stops: stops}, nil
}

// Close releases the model's mapped weights.
func (b *Bundle) Close() error { return b.Model.Close() }

// Layout lays out chunks and a question with the bundle's tokenizer and template
// (prefill.Layouter).
func (b *Bundle) Layout(chunks []string, question string) (prefill.Layout, error) {
	pl, err := b.Template.Build(b.Tok, chunks, question)
	if err != nil {
		return prefill.Layout{}, err
	}
	out := prefill.Layout{Prefix: seg(pl.Prefix), Question: seg(pl.Question)}
	for _, c := range pl.Chunks {
		out.Chunks = append(out.Chunks, seg(c))
	}
	return out, nil
}

// PrefixIDs is P's token ids.
func (b *Bundle) PrefixIDs() ([]int32, error) { return b.Template.PrefixIDs(b.Tok) }

// ChunkIDs tokenises one chunk as the layout does (kvshards.Tokenize).
func (b *Bundle) ChunkIDs(text string) ([]int32, error) {
	s, err := b.Template.EncodeChunk(b.Tok, text)
	if err != nil {
		return nil, err
	}
	return s.IDs, nil
}

// AnswerIDs is answer's token ids as the model writes it after question's Q
// (prompt.Template.EncodeAnswer): what label scoring teacher-forces.
func (b *Bundle) AnswerIDs(question, answer string) ([]int32, error) {
	return b.Template.EncodeAnswer(b.Tok, question, answer)
}

// LabelIDs is AnswerIDs for each of a row's labels.
func (b *Bundle) LabelIDs(question string, labels []string) ([][]int32, error) {
	return b.Template.EncodeAnswers(b.Tok, question, labels)
}

func seg(s prompt.Segment) prefill.Segment {
	return prefill.Segment{Text: s.Text, IDs: s.IDs, Offsets: s.Offsets}
}

// CountTokens is the number of tokens text encodes to with the bundle's
// tokenizer (the unit task generators size contexts in); it only needs the
// tokenizer, so it works after Close.
func (b *Bundle) CountTokens(text string) int {
	e, err := b.Tok.Encode(text, tokenizer.EncodeOptions{})
	if err != nil {
		return len(text) // encoding fails only on inputs no generator makes
	}
	return len(e.IDs)
}

// Package prefilltest provides tokenizer-free layouts for tests: fixed-width byte
// tokens over the generated test models' byte-level vocabulary, so two layouts
// of different widths behave like two different tokenizers of the same text.
package prefilltest

import (
	"context"
	"fmt"

	"cacheclip/model"
	"cacheclip/model/testmodel"
	"cacheclip/prefill"
)

// Layouter tokenises with the plain template of docs/PROMPT_LAYOUT.md: P = BOS,
// chunk = "{text}\n\n", Q = "Question: {q}\nAnswer:". Each token covers Width
// bytes (the last of a segment may be shorter); its id is the byte-level id of
// its first byte (testmodel's ids 8..263 are the 256 bytes), shifted by Shift so
// that two layouters give different ids for the same text.
type Layouter struct {
	Width int
	Shift int
	// NoOffsets drops the offsets, as a tokenizer that cannot report them would.
	NoOffsets bool
}

// Layout implements prefill.Layouter.
func (l Layouter) Layout(chunks []string, question string) (prefill.Layout, error) {
	if l.Width <= 0 {
		return prefill.Layout{}, fmt.Errorf("prefilltest: width %d", l.Width)
	}
	lay := prefill.Layout{Prefix: prefill.Segment{IDs: []int32{testmodel.TokBOS}, Offsets: [][2]int{{0, 0}}}}
	if l.NoOffsets {
		lay.Prefix.Offsets = nil
	}
	for _, c := range chunks {
		lay.Chunks = append(lay.Chunks, l.Segment(c+"\n\n"))
	}
	if question == "" {
		return lay, fmt.Errorf("prefilltest: empty question")
	}
	lay.Question = l.Segment("Question: " + question + "\nAnswer:")
	return lay, nil
}

// Segment tokenises text.
func (l Layouter) Segment(text string) prefill.Segment {
	s := prefill.Segment{Text: text}
	for i := 0; i < len(text); i += l.Width {
		j := min(i+l.Width, len(text))
		s.IDs = append(s.IDs, int32(8+(int(text[i])+l.Shift)%256))
		if !l.NoOffsets {
			s.Offsets = append(s.Offsets, [2]int{i, j})
		}
	}
	return s
}

// Decode turns ids back into bytes (one byte per id): enough for stop strings.
func (l Layouter) Decode(ids []int32) string {
	b := make([]byte, 0, len(ids))
	for _, id := range ids {
		if id >= 8 && id < 264 {
			b = append(b, byte((int(id)-8-l.Shift%256+256)%256))
		}
	}
	return string(b)
}

// EveryRow is a backend whose forward calls run every row through the last
// layer (a probe that asks for nothing keeps all rows of its sequence): the
// engine as it was before rows nobody reads stopped at the last layer's keys
// and values, kept as the reference that skipping them changes nothing.
type EveryRow struct{ model.Backend }

// Forward gives every sequence without a probe one that asks for nothing.
func (b EveryRow) Forward(ctx context.Context, seqs []*model.Seq) ([]model.Output, error) {
	for _, s := range seqs {
		if s.Probe == nil {
			s.Probe = func(int) []float32 { return nil }
		}
	}
	return b.Backend.Forward(ctx, seqs)
}

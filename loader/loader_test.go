package loader

import (
	"slices"
	"strings"
	"testing"

	"cacheclip/internal/realmodel"
)

// A .gguf path opens as a whole bundle: SmolLM2's ChatML template is detected
// from tokenizer.chat_template, <|im_end|> stops answers, and the layout puts
// the chunks between the template's head and tail.
func TestOpenGGUF(t *testing.T) {
	b, err := Open(realmodel.Path(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Template.Name != "chatml" {
		t.Errorf("template %q, want chatml", b.Template.Name)
	}
	end, ok := b.Tok.TokenID("<|im_end|>")
	if !ok || !slices.Contains(b.Stops, end) {
		t.Errorf("stops %v lack <|im_end|> (%d)", b.Stops, end)
	}
	lay, err := b.Layout([]string{"Paris is the capital of France."}, "What is the capital of France?")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(lay.Prefix.Text, "<|im_start|>system\n") || !strings.HasSuffix(lay.Question.Text, "<|im_start|>assistant\n") {
		t.Errorf("layout prefix %q question %q", lay.Prefix.Text, lay.Question.Text)
	}
	if _, err := Open("missing.gguf", ""); err == nil || !strings.Contains(err.Error(), "missing.gguf") {
		t.Errorf("missing file: %v", err)
	}
}

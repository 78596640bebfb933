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

// "#layers=K" cuts the model to its first K layers, sharing the weights: the
// cut model's layer i is the full model's layer i.
func TestOpenFirstLayers(t *testing.T) {
	p := realmodel.Path(t)
	full, err := Open(p, "")
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	cut, err := Open(p+"#layers=4", "")
	if err != nil {
		t.Fatal(err)
	}
	defer cut.Close()
	if cut.Model.Config.Layers != 4 || len(cut.Model.W.Layers) != 4 || cut.Template.Name != "chatml" {
		t.Fatalf("cut: %d layers, template %s", cut.Model.Config.Layers, cut.Template.Name)
	}
	for i := range 4 {
		a, b := cut.Model.W.Layers[i].Wq.F32, full.Model.W.Layers[i].Wq.F32
		if len(a) != len(b) || a[0] != b[0] || a[len(a)-1] != b[len(b)-1] {
			t.Errorf("layer %d differs from the full model's", i)
		}
	}
	if cut.Model.Fingerprint() == full.Model.Fingerprint() {
		t.Error("cut and full models share a fingerprint")
	}
	for _, bad := range []string{p + "#layers=0", p + "#layers=x", p + "#layers=31"} {
		if _, err := Open(bad, ""); err == nil || !strings.Contains(err.Error(), "#layers=") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

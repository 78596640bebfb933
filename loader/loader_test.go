package loader

import (
	"slices"
	"strings"
	"testing"

	"cacheclip/internal/realmodel"
	"cacheclip/kernels"
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
		a, b := cut.Model.W.Layers[i].Wq, full.Model.W.Layers[i].Wq
		ra, rb := make([]float32, a.Cols), make([]float32, b.Cols)
		for _, r := range []int{0, a.Rows - 1} {
			a.RowF32(r, ra)
			b.RowF32(r, rb)
			if a.Rows != b.Rows || !slices.Equal(ra, rb) {
				t.Errorf("layer %d row %d differs from the full model's", i, r)
			}
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

// The weights mode: native keeps the file's Q4_1/Q8_0 blocks, f32 widens
// them, both say so in the bundle's note; an unknown mode is refused before
// the file is read.
func TestOpenWeightsModes(t *testing.T) {
	p := realmodel.Path(t)
	for _, c := range []struct {
		mode string
		want kernels.DType
		note string
	}{{WeightsNative, kernels.Q4_1, "weights native: Q4_1 ×210, Q8_0 ×1; widened to f32: none"},
		{WeightsF32, kernels.F32, "weights native: none; widened to f32: Q4_1 ×210, Q8_0 ×1"}} {
		b, err := OpenWith(p, Options{Weights: c.mode})
		if err != nil {
			t.Fatal(err)
		}
		if got := b.Model.W.Layers[0].Wgate.DType; got != c.want {
			t.Errorf("weights %q: gate_proj is %s, want %s", c.mode, got, c.want)
		}
		if !strings.Contains(b.Note, c.note) {
			t.Errorf("weights %q: note %q lacks %q", c.mode, b.Note, c.note)
		}
		b.Close()
	}
	if _, err := OpenWith(p, Options{Weights: "q4"}); err == nil || !strings.Contains(err.Error(), `weights "q4" is not auto, native, native-q8 or f32`) {
		t.Errorf("bad mode: %v", err)
	}
}

// auto (the default) is native where the kernel set has SIMD quantized
// kernels, and f32, saying why, on the portable set.
func TestWeightsAuto(t *testing.T) {
	for _, k := range kernels.Available() {
		o, why := native("", k)
		if nat := o.Native; nat != k.HasQuantSIMD() || (why == "") != nat {
			t.Errorf("%s: native %v, note %q", k.Name(), nat, why)
		}
	}
	generic, _ := kernels.Select("generic")
	if o, why := native(WeightsAuto, generic); o.Native || !strings.Contains(why, "generic kernels have no SIMD quantized kernels") {
		t.Errorf("generic: native %v, note %q", o.Native, why)
	}
	if o, _ := native(WeightsNative, generic); !o.Native || o.Q8Act {
		t.Error("an explicit native is not kept (exact) on the portable kernels")
	}
	if o, why := native(WeightsNativeQ8, generic); !o.Native || !o.Q8Act || !strings.Contains(why, "generic kernels have no integer") {
		t.Errorf("an explicit native-q8 on the portable kernels: native %v, q8 %v, note %q (want kept, with a note that it is slow)", o.Native, o.Q8Act, why)
	}
	for _, k := range kernels.Available() {
		if _, why := native(WeightsNativeQ8, k); (why == "") != k.HasQ8ActSIMD() {
			t.Errorf("%s: native-q8 note %q with integer SIMD %v", k.Name(), why, k.HasQ8ActSIMD())
		}
	}
}

// Package loader opens a model as one unit: weights, tokenizer, prompt
// template and the layout function the prefill methods use. A model is a
// Hugging Face directory or a single GGUF file (a path ending in .gguf).
package loader

import (
	"fmt"
	"strconv"
	"strings"

	"cacheclip/kernels"
	"cacheclip/model"
	"cacheclip/model/gguf"
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

	// Note is one line about how the weights are held (a GGUF's native and
	// widened matrices), for the command's log; empty for a directory.
	Note string

	closer interface{ Close() error } // the full model under a cut one
}

// Weights modes: how a GGUF's quantized matrices are held (Options.Weights).
const (
	// WeightsAuto is WeightsNative where this CPU's kernel set has the SIMD
	// quantized kernels (AVX-512), else WeightsF32 (the default).
	WeightsAuto = "auto"
	// WeightsNative keeps Q4_0/Q4_1/Q8_0 matrices in their blocks, read by
	// the quantized kernels, and widens other types to f32.
	WeightsNative = "native"
	// WeightsNativeQ8 is WeightsNative with 8-bit activations in decode:
	// a decode step's row rounds its input to 8-bit blocks and dots them with
	// the weight blocks in integers (kernels.Mat.Q8Act; llama.cpp's
	// numerics); faster than the exact path one row at a time (measured in
	// docs/BENCHMARKS.md). Prefill stays exact.
	WeightsNativeQ8 = "native-q8"
	// WeightsF32 widens every matrix to f32 at load.
	WeightsF32 = "f32"
)

// Options configures OpenWith.
type Options struct {
	// Template overrides the detected prompt template ("" detects).
	Template string
	// Weights is WeightsAuto ("" too), WeightsNative or WeightsF32; it
	// applies to GGUF files (a directory's weights are used in their stored
	// dtype).
	Weights string
}

// CheckWeights validates a weights mode, for settings checked before any
// model loads.
func CheckWeights(mode string) error {
	switch mode {
	case "", WeightsAuto, WeightsNative, WeightsNativeQ8, WeightsF32:
		return nil
	}
	return fmt.Errorf("weights %q is not %s, %s, %s or %s", mode, WeightsAuto, WeightsNative, WeightsNativeQ8, WeightsF32)
}

// native resolves a weights mode for a model whose Pool gets ks.
func native(mode string, ks *kernels.Kernels) (gguf.Options, string) {
	switch mode {
	case WeightsNative:
		return gguf.Options{Native: true}, ""
	case WeightsNativeQ8:
		if !ks.HasQ8ActSIMD() {
			return gguf.Options{Native: true, Q8Act: true}, fmt.Sprintf(" (weights native-q8: the %s kernels have no integer (AVX-512 VNNI) kernels, so its 8-bit products run portable loops, slower than native)", ks.Name())
		}
		return gguf.Options{Native: true, Q8Act: true}, ""
	case WeightsF32:
		return gguf.Options{}, ""
	}
	if ks.HasQuantSIMD() {
		return gguf.Options{Native: true}, ""
	}
	return gguf.Options{}, fmt.Sprintf(" (weights auto: the %s kernels have no SIMD quantized kernels, so f32)", ks.Name())
}

// Open loads dir, a model directory or a .gguf file; templateName overrides
// the template detected from tokenizer_config.json or the GGUF's
// tokenizer.chat_template ("" detects).
//
// A path ending in "#layers=K" opens the model cut to its first K layers: the
// primary's own first layers as a CacheClip auxiliary, with no second model
// (its attention at layer K-1 is what the scorer reads).
func Open(dir, templateName string) (*Bundle, error) {
	return OpenWith(dir, Options{Template: templateName})
}

// OpenWith is Open with options (the template and the GGUF weights mode).
func OpenWith(dir string, o Options) (*Bundle, error) {
	if err := CheckWeights(o.Weights); err != nil {
		return nil, err
	}
	templateName := o.Template
	if base, k, ok, err := firstLayers(dir); err != nil {
		return nil, err
	} else if ok {
		b, err := OpenWith(base, o)
		if err != nil {
			return nil, err
		}
		if k > b.Model.Config.Layers {
			b.Close()
			return nil, fmt.Errorf("%s: #layers=%d but the model has %d layers", dir, k, b.Model.Config.Layers)
		}
		m, err := model.FirstLayers(b.Model, k)
		if err != nil {
			b.Close()
			return nil, err
		}
		m.Dir = dir
		// The full model's mapped weights stay open under the cut one.
		return &Bundle{Dir: dir, Model: m, Tok: b.Tok, Template: b.Template, Stops: b.Stops, Note: b.Note, closer: b}, nil
	}
	if IsGGUF(dir) {
		return openGGUF(dir, templateName, o.Weights)
	}
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
	return bundle(dir, m, tok, tmpl)
}

// IsGGUF reports whether a model path names a GGUF file rather than a
// Hugging Face directory.
func IsGGUF(path string) bool { return strings.HasSuffix(strings.ToLower(path), ".gguf") }

// openGGUF loads weights (quantized matrices kept in their blocks when native,
// else dequantized to f32), tokenizer and chat template from one GGUF file;
// the template is detected from tokenizer.chat_template.
func openGGUF(path, templateName, weights string) (*Bundle, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the model owns its copies of the weights
	opts, why := native(weights, kernels.Detect())
	m, rep, err := f.ModelWith(opts)
	if err != nil {
		return nil, err
	}
	tok, err := f.Tokenizer()
	if err != nil {
		return nil, err
	}
	if templateName == "" {
		ct, err := f.ChatTemplate()
		if err != nil {
			return nil, err
		}
		templateName = prompt.DetectName(ct)
	}
	tmpl, err := prompt.ByName(templateName)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b, err := bundle(path, m, tok, tmpl)
	if err != nil {
		return nil, err
	}
	b.Note = fmt.Sprintf("%s: %s (%.0f MiB)%s", path, rep, float64(weightBytes(m))/(1<<20), why)
	return b, nil
}

// weightBytes is the memory of a model's matrices (the tied head counted once).
func weightBytes(m *model.Model) int64 {
	w := &m.W
	n := w.Embed.Bytes()
	if !m.Config.TiedEmbeddings {
		n += w.LMHead.Bytes()
	}
	for _, L := range w.Layers {
		for _, x := range []kernels.Mat{L.Wq, L.Wk, L.Wv, L.Wo, L.Wgate, L.Wup, L.Wdown} {
			n += x.Bytes()
		}
	}
	return n
}

func bundle(dir string, m *model.Model, tok *tokenizer.Tokenizer, tmpl prompt.Template) (*Bundle, error) {
	if tok.VocabSize() > m.Config.Vocab {
		m.Close()
		return nil, fmt.Errorf("%s: tokenizer has %d tokens but the model's vocabulary is %d", dir, tok.VocabSize(), m.Config.Vocab)
	}
	stops := append(append([]int32(nil), m.Config.EOS...), tok.Special().StopIDs()...)
	return &Bundle{Dir: dir, Model: m, Tok: tok, Template: tmpl, Stops: stops}, nil
}

// Close releases the model's mapped weights.
func (b *Bundle) Close() error {
	if b.closer != nil {
		return b.closer.Close()
	}
	return b.Model.Close()
}

// firstLayers splits "PATH#layers=K".
func firstLayers(path string) (string, int, bool, error) {
	base, spec, ok := strings.Cut(path, "#layers=")
	if !ok {
		return path, 0, false, nil
	}
	k, err := strconv.Atoi(spec)
	if err != nil || k < 1 {
		return "", 0, false, fmt.Errorf("%s: #layers= wants a positive layer count, got %q", path, spec)
	}
	return base, k, true, nil
}

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

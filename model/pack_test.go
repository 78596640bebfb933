package model_test

import (
	"testing"

	"cacheclip/kernels"
	"cacheclip/model"
	"cacheclip/model/testmodel"
)

// A loaded model keeps its linear layers in the kernels' panel layout (the
// embedding table row-major), and its fingerprint is that of the same
// weights row-major: a model rebuilt from the packed weights (as a cut
// model is) and one rebuilt from their row-major copies fingerprint alike.
func TestPackedWeightsKeepFingerprint(t *testing.T) {
	for _, s := range testmodel.Variants() {
		m, err := testmodel.Build(s)
		if err != nil {
			t.Fatal(err)
		}
		L := m.W.Layers[0]
		if L.Wq.DType.Quantized() {
			continue
		}
		if !L.Wq.Panels || !L.Wdown.Panels || !m.W.LMHead.Panels || m.W.Embed.Panels != m.Config.TiedEmbeddings {
			t.Fatalf("%s (tied %v): Wq panels %v, Wdown panels %v, head panels %v, embed panels %v", s.Name, m.Config.TiedEmbeddings,
				L.Wq.Panels, L.Wdown.Panels, m.W.LMHead.Panels, m.W.Embed.Panels)
		}
		rows := m.W
		rows.Layers = make([]model.Layer, len(m.W.Layers))
		for i, L := range m.W.Layers {
			for _, x := range []*kernels.Mat{&L.Wq, &L.Wk, &L.Wv, &L.Wo, &L.Wgate, &L.Wup, &L.Wdown} {
				*x = x.RowMajor()
			}
			rows.Layers[i] = L
		}
		rows.Embed, rows.LMHead = m.W.Embed.RowMajor(), m.W.LMHead.RowMajor()
		if m.Config.TiedEmbeddings {
			rows.LMHead = rows.Embed
		}
		a, err := model.FromWeights(&m.Config, m.W)
		if err != nil {
			t.Fatal(err)
		}
		b, err := model.FromWeights(&m.Config, rows)
		if err != nil {
			t.Fatal(err)
		}
		if a.Fingerprint() != b.Fingerprint() || a.Fingerprint() != m.Fingerprint() {
			t.Errorf("%s: fingerprints differ: loaded %x, from packed %x, from row-major %x", s.Name, m.Fingerprint(), a.Fingerprint(), b.Fingerprint())
		}
	}
}

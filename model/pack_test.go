package model_test

import (
	"testing"

	"cacheclip/kernels"
	"cacheclip/model"
	"cacheclip/model/testmodel"
)

// A model packs its linear layers into the kernels' panel layout at its
// first Pack (or Forward), not at load (the embedding table stays row-major
// unless tied to the head); a model cut from an unpacked one packs its own
// layers and leaves the base's as they were (a base loaded only to be cut,
// or weights only uploaded to a GPU, are never copied). The fingerprint is
// that of the same weights row-major: a model rebuilt from the packed
// weights and one rebuilt from their row-major copies fingerprint alike.
func TestPackedWeightsKeepFingerprint(t *testing.T) {
	for _, s := range testmodel.Variants() {
		m, err := testmodel.Build(s)
		if err != nil {
			t.Fatal(err)
		}
		if m.W.Layers[0].Wq.DType.Quantized() {
			continue
		}
		if m.W.Layers[0].Wq.Panels || m.W.LMHead.Panels {
			t.Fatalf("%s: packed at load", s.Name)
		}
		cut, err := model.FirstLayers(m, 1)
		if err != nil {
			t.Fatal(err)
		}
		cut.Pack()
		if !cut.W.Layers[0].Wq.Panels || m.W.Layers[0].Wq.Panels {
			t.Fatalf("%s: cut model packed %v, its base packed %v; want true, false", s.Name, cut.W.Layers[0].Wq.Panels, m.W.Layers[0].Wq.Panels)
		}
		m.Pack()
		L := m.W.Layers[0]
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

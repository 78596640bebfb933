package agree

import (
	"context"
	"math"
	"testing"

	"cacheclip/model"
	"cacheclip/model/testmodel"
	"cacheclip/prefill"
	"cacheclip/prefill/auxscore"
	"cacheclip/prefill/prefilltest"
)

func TestStatistics(t *testing.T) {
	cases := []struct {
		a, b     []float32
		k        int
		jac, rho float64
	}{
		{[]float32{1, 2, 3, 4}, []float32{10, 20, 30, 40}, 2, 1, 1},
		{[]float32{1, 2, 3, 4}, []float32{4, 3, 2, 1}, 2, 0, -1},
		{[]float32{1, 1, 2, 3}, []float32{0, 0, 5, 9}, 1, 1, 1},
		{[]float32{3, 1, 2, 0}, []float32{3, 2, 1, 0}, 2, 1.0 / 3, 0.8},
	}
	for i, c := range cases {
		if got := Jaccard(TopK(c.a, c.k), TopK(c.b, c.k)); math.Abs(got-c.jac) > 1e-12 {
			t.Errorf("case %d: Jaccard %v, want %v", i, got, c.jac)
		}
		if got := Spearman(c.a, c.b); math.Abs(got-c.rho) > 1e-12 {
			t.Errorf("case %d: Spearman %v, want %v", i, got, c.rho)
		}
	}
}

// selfPair is the qwen2 test model with itself as its auxiliary.
func selfPair(t *testing.T) (*model.Model, prefilltest.Layouter, *auxscore.Scorer) {
	t.Helper()
	var spec testmodel.Spec
	for _, s := range testmodel.Variants() {
		if s.Name == "qwen2" {
			spec = s
		}
	}
	m, err := testmodel.Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	lay := prefilltest.Layouter{Width: 1}
	return m, lay, &auxscore.Scorer{Model: m, Layouter: lay}
}

// A model compared with itself as its own auxiliary agrees perfectly at its last
// layer (the auxiliary's scores are the last layer's attention) and not, in
// general, at the others.
func TestSelfAgreementAtLastLayer(t *testing.T) {
	m, lay, aux := selfPair(t)
	q := prefill.Query{Chunks: []string{"The grass is green and the sky is blue.", "The magic number is 7319."}, Question: "Which number?"}
	layers, err := Question(context.Background(), m, lay, aux, q, 0.2)
	if err != nil {
		t.Fatal(err)
	}
	last := layers[len(layers)-1]
	if last.Jaccard != 1 || math.Abs(last.Spearman-1) > 1e-9 {
		t.Fatalf("self-agreement at the last layer: Jaccard %v Spearman %v", last.Jaccard, last.Spearman)
	}
	if layers[0].Spearman > 0.999 {
		t.Errorf("layer 0 agrees perfectly too (Spearman %v): the per-layer probe is not per layer", layers[0].Spearman)
	}
}

// Average over the same question twice equals that question's figures.
func TestAverage(t *testing.T) {
	m, lay, aux := selfPair(t)
	q := prefill.Query{Chunks: []string{"The grass is green.", "The magic number is 7319."}, Question: "Which number?"}
	one, err := Question(context.Background(), m, lay, aux, q, 0.3)
	if err != nil {
		t.Fatal(err)
	}
	avg, err := Average(context.Background(), m, lay, aux, []prefill.Query{q, q}, 0.3)
	if err != nil {
		t.Fatal(err)
	}
	for l := range one {
		if math.Abs(avg[l].Jaccard-one[l].Jaccard) > 1e-12 || math.Abs(avg[l].Spearman-one[l].Spearman) > 1e-12 || avg[l].Questions != 2 {
			t.Errorf("layer %d: average %+v, single question %+v", l, avg[l], one[l])
		}
	}
}

package eval

import (
	"fmt"
	"math"
	"path/filepath"

	"github.com/parquet-go/parquet-go"
)

// LabelAnswer is one answered row of a label job: the chosen label and the
// probabilities of the row's choices, in the choices' order.
type LabelAnswer struct {
	Label string
	Probs []float64
}

// ReadLabelRun reads the answered rows of a label job's output directory.
func ReadLabelRun(dir string) (map[string]LabelAnswer, error) {
	type row struct {
		QueryID string    `parquet:"query_id"`
		Label   *string   `parquet:"label,optional"`
		Probs   []float64 `parquet:"label_probs"`
	}
	files, err := filepath.Glob(filepath.Join(dir, "part-*.parquet"))
	if err != nil {
		return nil, err
	}
	out := map[string]LabelAnswer{}
	for _, f := range files {
		rows, err := parquet.ReadFile[row](f)
		if err != nil {
			return nil, fmt.Errorf("eval: label run %s: %w", f, err)
		}
		for _, r := range rows {
			if r.Label != nil {
				out[r.QueryID] = LabelAnswer{Label: *r.Label, Probs: r.Probs}
			}
		}
	}
	return out, nil
}

// LabelScore is a label run scored against the references and against full.
type LabelScore struct {
	Answered int
	// Accuracy is the share (×100) of questions whose label is the right choice.
	Accuracy float64
	// AgreeFull is the share (×100) of questions labelled as full labelled
	// them; ProbFull the mean probability the run gives full's label. Both are
	// NaN without a full run.
	AgreeFull float64
	ProbFull  float64
}

// ScoreLabelRun scores run over exs; full may be nil. A question the run did
// not answer counts as wrong, disagreeing and with probability 0, so a method
// cannot gain by failing rows.
func ScoreLabelRun(exs []ChoiceExample, run, full map[string]LabelAnswer) LabelScore {
	s := LabelScore{Answered: len(run), AgreeFull: math.NaN(), ProbFull: math.NaN()}
	if len(exs) == 0 {
		return s
	}
	var right, agree, prob float64
	for _, ex := range exs {
		a, ok := run[ex.QueryID]
		if ok && a.Label == ex.Choices[ex.Correct] {
			right++
		}
		f, fok := full[ex.QueryID]
		if !ok || !fok {
			continue
		}
		if a.Label == f.Label {
			agree++
		}
		for i, c := range ex.Choices {
			if c == f.Label && i < len(a.Probs) {
				prob += a.Probs[i]
			}
		}
	}
	n := float64(len(exs))
	s.Accuracy = 100 * right / n
	if full != nil {
		s.AgreeFull = 100 * agree / n
		s.ProbFull = prob / n
	}
	return s
}

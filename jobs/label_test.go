package jobs

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

type choiceRow struct {
	QueryID  string    `parquet:"query_id"`
	Question string    `parquet:"question"`
	ChunkIDs []string  `parquet:"chunk_ids,list"`
	Choices  []*string `parquet:"choices,list"`
}

// A label job reads each row's choices; an empty, blank, null or duplicate
// choice is an error naming the file, row and column; a null or empty list is
// no choices (the job's labels apply). A generate job only passes it through.
func TestQuestionsChoices(t *testing.T) {
	dir := t.TempDir()
	rows := []choiceRow{
		{"ok", "q", []string{"c"}, []*string{sp("yes"), sp("no")}},
		{"none", "q", []string{"c"}, nil},
		{"empty", "q", []string{"c"}, []*string{sp("yes"), sp("")}},
		{"blank", "q", []string{"c"}, []*string{sp(" "), sp("no")}},
		{"dup", "q", []string{"c"}, []*string{sp("yes"), sp("no"), sp("yes")}},
		{"null", "q", []string{"c"}, []*string{sp("yes"), nil}},
	}
	p := writeParquet(t, dir, "choices.parquet", rows, 4)
	for _, label := range []bool{true, false} {
		r, err := OpenQuestions(p, QuestionsOptions{Choices: label})
		if err != nil {
			t.Fatal(err)
		}
		qs := readAll(t, r)
		r.Close()
		if !label {
			for _, q := range qs {
				if q.Err != nil || q.Choices != nil {
					t.Errorf("generate job, row %d: choices %v, error %v", q.Row, q.Choices, q.Err)
				}
			}
			if f := r.PassthroughFields(); len(f) != 1 || f[0].Name() != ColChoices {
				t.Errorf("choices not passed through: %v", f)
			}
			continue
		}
		want := []string{"", "", "element 1 is an empty string", "label 0 is empty", `label "yes" appears twice`, "element 1 is null"}
		for i, q := range qs {
			switch {
			case want[i] == "" && q.Err != nil:
				t.Errorf("row %d: %v", i, q.Err)
			case want[i] != "" && (q.Err == nil || q.Err.Column != ColChoices || !strings.Contains(q.Err.Error(), want[i]) || !strings.Contains(q.Err.Error(), fmt.Sprintf("row %d", i))):
				t.Errorf("row %d: error %v, want column choices and %q", i, q.Err, want[i])
			}
		}
		if !slices.Equal(qs[0].Choices, []string{"yes", "no"}) || qs[1].Choices != nil {
			t.Errorf("choices %q and %q", qs[0].Choices, qs[1].Choices)
		}
	}
}

// Label columns come last, error rows have nulls there, a margin of NaN (one
// label) is null, and the committed stats count the chosen labels.
func TestOutputLabelColumns(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "out")
	o, err := OpenOutput(ctx, OutputOptions{Dir: dir, Label: true, Diagnostics: true, PartRows: 2, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	results := []Result{
		{QueryID: "a", Status: StatusOK, Answer: "yes", Label: "yes", LabelLogProbs: []float64{-0.1, -2.4}, LabelProbs: []float64{0.9, 0.1}, LabelMargin: 2.3, Method: "full"},
		{QueryID: "b", Status: StatusError, Error: "row 1: no labels", Method: "full"},
		{QueryID: "c", Status: StatusOK, Answer: "no", Label: "no", LabelLogProbs: []float64{-0.7}, LabelProbs: []float64{1}, LabelMargin: math.NaN(), Method: "full"},
		{QueryID: "d", Status: StatusOK, Answer: "yes", Label: "yes", LabelLogProbs: []float64{-0.2, -1.4}, LabelProbs: []float64{0.77, 0.23}, LabelMargin: 1.2, Method: "full"},
	}
	for _, r := range results {
		if err := o.Write(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	st, err := o.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(st.Labels) != "map[no:1 yes:2]" {
		t.Errorf("label distribution %v", st.Labels)
	}
	cols := OutputSchema(nil, true).Fields()
	full := LabelOutputSchema(nil, true).Fields()
	var names []string
	for _, f := range full[len(cols):] {
		names = append(names, f.Name())
	}
	if !slices.Equal(names, LabelColumns()) {
		t.Errorf("label columns %v, want last %v", names, LabelColumns())
	}
	type row struct {
		QueryID string    `parquet:"query_id"`
		Label   *string   `parquet:"label,optional"`
		LogP    []float64 `parquet:"label_logprobs"`
		Probs   []float64 `parquet:"label_probs"`
		Margin  *float64  `parquet:"label_margin,optional"`
	}
	files, _ := filepath.Glob(filepath.Join(dir, "part-*.parquet"))
	got := map[string]row{}
	for _, f := range files {
		rs, err := parquet.ReadFile[row](f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			got[r.QueryID] = r
		}
	}
	if a := got["a"]; a.Label == nil || *a.Label != "yes" || !slices.Equal(a.LogP, results[0].LabelLogProbs) || !slices.Equal(a.Probs, results[0].LabelProbs) || a.Margin == nil || *a.Margin != 2.3 {
		t.Errorf("row a: %+v", a)
	}
	if b := got["b"]; b.Label != nil || b.Margin != nil || len(b.Probs) != 0 {
		t.Errorf("error row b: %+v", b)
	}
	if c := got["c"]; c.Margin != nil || c.Label == nil {
		t.Errorf("row c (one label): %+v", c)
	}
	// Resuming the dataset as a generate job is refused, naming the task.
	_, err = OpenOutput(ctx, OutputOptions{Dir: dir, Diagnostics: true, Logger: quiet})
	if err == nil || !strings.Contains(err.Error(), "label job") {
		t.Errorf("generate job over a label dataset: %v", err)
	}
}

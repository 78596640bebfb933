package runner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"testing"

	"cacheclip/eval"
	"cacheclip/jobs"
	"cacheclip/model/testmodel"
)

// A job with aux_mode=boundary runs on the auxiliary's chunk caches from the
// shard store; with a window longer than every chunk it recomputes every
// context row of the auxiliary, so its selections, and the answers, are the
// full auxiliary prefill's (aux_mode=fresh). A short window also answers
// every row.
func TestAuxModeBoundaryJob(t *testing.T) {
	dir := t.TempDir()
	paths := map[string]string{}
	for _, s := range testmodel.Variants() {
		if s.Name == "llama3" || s.Name == "smollm2" {
			paths[s.Name] = filepath.Join(dir, s.Name)
			if err := testmodel.Write(paths[s.Name], s); err != nil {
				t.Fatal(err)
			}
		}
	}
	corpus := mapCorpus{
		"c1": "The grass is green and the sky is blue over the little village by the river.",
		"c2": "One of the special magic numbers for the key is 7319, remember it well.",
		"c3": "Retrieval augmented generation reuses the cache of every chunk it is given.",
	}
	var rows []qRow
	for i := 0; i < 6; i++ {
		ids := []string{"c1", "c2", "c3"}
		if i%2 == 1 {
			ids = []string{"c3", "c1", "c2"}
		}
		rows = append(rows, qRow{QueryID: fmt.Sprintf("q%d", i), Question: fmt.Sprintf("What is the number %d?", i), ChunkIDs: ids, Lang: "en"})
	}
	questions := writeQuestions(t, dir, rows)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	type row struct {
		QueryID       string    `parquet:"query_id"`
		FirstLogProbs []float32 `parquet:"first_token_logprobs"`
		AuxMS         float64   `parquet:"aux_ms"`
		PrefillMS     float64   `parquet:"prefill_ms"`
	}
	// run returns each row's first-token log-probabilities: they move with any
	// change of the recomputed tokens.
	run := func(name string, params map[string]string) map[string][]float32 {
		js := jobs.DefaultSpec()
		js.Questions, js.Out = questions, filepath.Join(dir, name)
		js.Model, js.Aux, js.Store = paths["llama3"], paths["smollm2"], filepath.Join(dir, "store")
		js.Method, js.Ratio, js.MethodParams = "cacheclip", 0.2, params
		js.MaxNewTokens, js.BatchSize, js.Device, js.Diagnostics = 2, 4, "cpu", true
		eng, err := NewEngine(ctx, js, log)
		if err != nil {
			t.Fatal(err)
		}
		defer eng.Close()
		st, err := Run(ctx, Options{Spec: js, Stages: eng, Corpus: corpus, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		if st.OK != int64(len(rows)) {
			t.Fatalf("%s: %d rows ok of %d", name, st.OK, len(rows))
		}
		rs, err := eval.ReadParts[row](js.Out)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]float32{}
		for _, r := range rs {
			out[r.QueryID] = r.FirstLogProbs
			// The auxiliary scores in its own stage: prefill_ms is the primary's
			// own time, never the difference of the two.
			if r.AuxMS <= 0 || r.PrefillMS <= 0 {
				t.Errorf("%s %s: aux_ms %v, prefill_ms %v: both must be positive", name, r.QueryID, r.AuxMS, r.PrefillMS)
			}
		}
		return out
	}
	diff := func(a, b map[string][]float32) float64 {
		var d float64
		for id, x := range a {
			if len(b[id]) != len(x) {
				t.Fatalf("%s: %d and %d log-probabilities", id, len(x), len(b[id]))
			}
			for i := range x {
				d = max(d, math.Abs(float64(x[i]-b[id][i])))
			}
		}
		return d
	}
	fresh := run("fresh", map[string]string{"aux_mode": "fresh"})
	whole := run("boundary-whole", map[string]string{"aux_mode": "boundary", "aux_boundary": "4096"})
	cached := run("cached", map[string]string{"aux_mode": "cached"})
	run("boundary-short", map[string]string{"aux_mode": "boundary", "aux_boundary": "2"})
	if d := diff(fresh, cached); d < 1e-4 {
		t.Fatalf("the cached auxiliary's selections give the full auxiliary's log-probabilities (max difference %.3g): the test checks nothing", d)
	}
	if d := diff(fresh, whole); d > 1e-4 {
		t.Errorf("a boundary window over whole chunks moves the log-probabilities by %.3g from the full auxiliary's", d)
	}
}

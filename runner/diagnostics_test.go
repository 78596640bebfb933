package runner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/parquet-go/parquet-go"

	"cacheclip/jobs"
	"cacheclip/loader"
	"cacheclip/model/testmodel"
)

func TestLogSoftmax(t *testing.T) {
	for _, c := range []struct {
		name   string
		logits []float32
	}{
		{"small", []float32{1, 2, 3}},
		{"large values do not overflow", []float32{1000, 999, 990}},
		{"very negative", []float32{-1e4, -1e4 + 1, -1e4 - 30}},
		{"one", []float32{42}},
	} {
		lp := logSoftmax(c.logits)
		var sum float64
		for i, v := range lp {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) || v > 0 {
				t.Fatalf("%s: logprob[%d] = %v", c.name, i, v)
			}
			sum += math.Exp(float64(v))
			// Differences of log-probs are differences of logits.
			if d := float64(v-lp[0]) - float64(c.logits[i]-c.logits[0]); math.Abs(d) > 1e-3 {
				t.Errorf("%s: logprob[%d]-logprob[0] off by %v", c.name, i, d)
			}
		}
		if math.Abs(sum-1) > 1e-6 {
			t.Errorf("%s: probabilities sum to %v", c.name, sum)
		}
	}
	if logSoftmax(nil) != nil {
		t.Error("empty logits: want nil")
	}
}

// A full job with diagnostics on a tiny random model: the first-token
// log-probs are a distribution over the vocabulary whose argmax is the greedy
// first token, and the ids decode to the answer text. The llama3 variant is
// used because its random weights give answers that differ between questions
// and one that ends early on a stop token (the other variants can repeat one
// token whatever the prompt, which would not tell the first step's logits
// from the last's).
func TestRunDiagnosticsFull(t *testing.T) {
	var spec testmodel.Spec
	for _, s := range testmodel.Variants() {
		if s.Name == "llama3" {
			spec = s
		}
	}
	if spec.Name == "" {
		t.Fatal("no llama3 test model variant")
	}
	dir := t.TempDir()
	mdir := filepath.Join(dir, "model")
	if err := testmodel.Write(mdir, spec); err != nil {
		t.Fatal(err)
	}
	corpus := mapCorpus{
		"c1": "The grass is green and the sky is blue.",
		"c2": "One of the special magic numbers is 7319.",
		"c3": "Retrieval augmented generation reuses chunk caches.",
	}
	var rows []qRow
	for i := 0; i < 6; i++ {
		rows = append(rows, qRow{QueryID: fmt.Sprintf("q%d", i), Question: fmt.Sprintf("What is number %d?", i),
			ChunkIDs: []string{"c1", "c2", "c3"}[:1+i%3], Lang: "en"})
	}
	rows = append(rows, qRow{QueryID: "bad", Question: "?", ChunkIDs: []string{"nope"}, Lang: "en"})
	js := jobs.DefaultSpec()
	js.Questions = writeQuestions(t, dir, rows)
	js.Out = filepath.Join(dir, "out")
	js.Model = mdir
	js.Method = "full"
	js.MaxNewTokens = 6
	js.BatchSize = 4
	js.Device = "cpu"
	js.Diagnostics = true
	js.MaxErrors = jobs.ErrorBudget{Count: 1}

	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	eng, err := NewEngine(ctx, js, log)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	st, err := Run(ctx, Options{Spec: js, Stages: eng, Corpus: corpus, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if st.OK != 6 || st.Errors != 1 {
		t.Fatalf("ok %d errors %d, want 6 and 1", st.OK, st.Errors)
	}

	b, err := loader.Open(mdir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	vocab := b.Model.Config.Vocab
	type row struct {
		QueryID       string    `parquet:"query_id"`
		Answer        *string   `parquet:"answer,optional"`
		Status        string    `parquet:"status"`
		NGenerated    int32     `parquet:"n_generated"`
		Lang          string    `parquet:"lang"`
		AnswerIDs     []int32   `parquet:"answer_token_ids"`
		FirstLogProbs []float32 `parquet:"first_token_logprobs"`
	}
	parts, _ := filepath.Glob(filepath.Join(js.Out, "part-*.parquet"))
	var got []row
	for _, p := range parts {
		rs, err := parquet.ReadFile[row](p)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rs...)
	}
	if len(got) != 7 {
		t.Fatalf("%d rows, want 7", len(got))
	}
	answered := 0
	for _, r := range got {
		if r.Lang != "en" {
			t.Errorf("%s: passthrough lang %q", r.QueryID, r.Lang)
		}
		if r.Status == "error" {
			if len(r.AnswerIDs) != 0 || len(r.FirstLogProbs) != 0 {
				t.Errorf("%s: error row has diagnostics (%d ids, %d logprobs)", r.QueryID, len(r.AnswerIDs), len(r.FirstLogProbs))
			}
			continue
		}
		if len(r.FirstLogProbs) != vocab {
			t.Fatalf("%s: %d logprobs, want the vocabulary's %d", r.QueryID, len(r.FirstLogProbs), vocab)
		}
		var sum float64
		for _, v := range r.FirstLogProbs {
			sum += math.Exp(float64(v))
		}
		if math.Abs(sum-1) > 1e-4 {
			t.Errorf("%s: exp(first_token_logprobs) sums to %v", r.QueryID, sum)
		}
		if int(r.NGenerated) != len(r.AnswerIDs) {
			t.Errorf("%s: n_generated %d, %d answer ids", r.QueryID, r.NGenerated, len(r.AnswerIDs))
		}
		if r.Answer == nil || b.Tok.Decode(r.AnswerIDs) != *r.Answer {
			t.Errorf("%s: ids %v decode to %q, answer %v", r.QueryID, r.AnswerIDs, b.Tok.Decode(r.AnswerIDs), r.Answer)
		}
		top := int32(argmax(r.FirstLogProbs))
		if len(r.AnswerIDs) == 0 {
			// Nothing generated: greedy picked a stop token, which is left out.
			if !slices.Contains(b.Stops, top) {
				t.Errorf("%s: no answer ids but argmax %d is not a stop id %v", r.QueryID, top, b.Stops)
			}
			continue
		}
		answered++
		if top != r.AnswerIDs[0] {
			t.Errorf("%s: argmax of first_token_logprobs %d, greedy first token %d", r.QueryID, top, r.AnswerIDs[0])
		}
		if slices.ContainsFunc(r.AnswerIDs, func(id int32) bool { return slices.Contains(b.Stops, id) }) {
			t.Errorf("%s: answer ids %v hold a stop id %v", r.QueryID, r.AnswerIDs, b.Stops)
		}
	}
	if answered == 0 {
		t.Fatal("no row generated anything: the test checks nothing")
	}
}

func argmax(xs []float32) int {
	best := 0
	for i, x := range xs {
		if x > xs[best] {
			best = i
		}
	}
	return best
}

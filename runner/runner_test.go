package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/parquet-go/parquet-go"

	"cacheclip/jobs"
)

type qRow struct {
	QueryID  string   `parquet:"query_id"`
	Question string   `parquet:"question"`
	ChunkIDs []string `parquet:"chunk_ids,list"`
	Lang     string   `parquet:"lang"`
}

func writeQuestions(t *testing.T, dir string, rows []qRow) string {
	t.Helper()
	p := filepath.Join(dir, "questions.parquet")
	if err := parquet.WriteFile(p, rows, parquet.MaxRowsPerRowGroup(7)); err != nil {
		t.Fatal(err)
	}
	return p
}

type mapCorpus map[string]string

func (m mapCorpus) Text(id string) (string, bool) { t, ok := m[id]; return t, ok }

// fakeEngine answers with the concatenated chunk texts and the question, so a
// test can tell every row's answer apart; it can be told to stop the job after
// n answers (a crash stand-in) and fails questions containing "boom".
type fakeEngine struct {
	answered  atomic.Int64
	stopAfter int64
	cancel    context.CancelFunc
}

func (e *fakeEngine) Plan(ctx context.Context, w *Work) error {
	if strings.Contains(w.Q.Question, "boom") {
		return errors.New("question: planning failed on purpose")
	}
	return nil
}
func (e *fakeEngine) Load(ctx context.Context, w *Work) error  { return nil }
func (e *fakeEngine) Score(ctx context.Context, w *Work) error { return nil }
func (e *fakeEngine) Answer(ctx context.Context, b []*Work) error {
	for _, w := range b {
		w.Result.Answer = strings.Join(w.Texts, "+") + "?" + w.Q.Question
		w.Result.NGenerated = 3
		if n := e.answered.Add(1); e.stopAfter > 0 && n == e.stopAfter {
			e.cancel()
		}
	}
	return nil
}
func (e *fakeEngine) Counters() map[string]int64 { return map[string]int64{"fake": 1} }

func readAnswers(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "part-*.parquet"))
	got := map[string]string{}
	type row struct {
		QueryID string  `parquet:"query_id"`
		Answer  *string `parquet:"answer,optional"`
		Status  string  `parquet:"status"`
		Error   *string `parquet:"error,optional"`
		Lang    string  `parquet:"lang"`
	}
	for _, f := range files {
		rows, err := parquet.ReadFile[row](f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if _, dup := got[r.QueryID]; dup {
				t.Errorf("query_id %s written twice", r.QueryID)
			}
			v := r.Status + "|" + r.Lang + "|"
			if r.Answer != nil {
				v += *r.Answer
			}
			if r.Error != nil {
				v += *r.Error
			}
			got[r.QueryID] = v
		}
	}
	return got
}

func setup(t *testing.T, n int) (string, mapCorpus, jobs.Spec) {
	dir := t.TempDir()
	corpus := mapCorpus{"c1": "alpha", "c2": "beta", "c3": "gamma"}
	var rows []qRow
	for i := 0; i < n; i++ {
		q := qRow{QueryID: fmt.Sprintf("q%03d", i), Question: fmt.Sprintf("question %d", i), ChunkIDs: []string{"c1", "c2"}, Lang: "en"}
		switch {
		case i == 5:
			q.ChunkIDs = []string{"c1", "nope"}
		case i == 9:
			q.Question = "boom"
		case i%3 == 0:
			q.ChunkIDs = []string{"c3"}
		}
		rows = append(rows, q)
	}
	spec := jobs.DefaultSpec()
	spec.Questions = writeQuestions(t, dir, rows)
	spec.Out = filepath.Join(dir, "out")
	spec.Model = dir
	spec.BatchSize = 4
	spec.PartRows = 5
	spec.MaxErrors = jobs.ErrorBudget{Fraction: 0.5, IsFraction: true}
	return dir, corpus, spec
}

func TestRunWritesEveryRow(t *testing.T) {
	_, corpus, spec := setup(t, 30)
	st, err := Run(context.Background(), Options{Spec: spec, Stages: &fakeEngine{}, Corpus: corpus})
	if err != nil {
		t.Fatal(err)
	}
	if st.Rows != 30 || st.Errors != 2 {
		t.Fatalf("rows %d errors %d, want 30 and 2", st.Rows, st.Errors)
	}
	got := readAnswers(t, spec.Out)
	if len(got) != 30 {
		t.Fatalf("%d distinct rows", len(got))
	}
	if g := got["q005"]; !strings.HasPrefix(g, "error|en|") || !strings.Contains(g, `unknown chunk id "nope"`) || !strings.Contains(g, "chunk_ids") {
		t.Errorf("unknown chunk row: %q", g)
	}
	if g := got["q009"]; !strings.Contains(g, "planning failed") {
		t.Errorf("failed row: %q", g)
	}
	if g := got["q003"]; g != "ok|en|gamma?question 3" {
		t.Errorf("q003 = %q", g)
	}
	if _, err := os.Stat(filepath.Join(spec.Out, jobs.SuccessFile)); err != nil {
		t.Error("no _SUCCESS after a complete run")
	}
	if code := jobs.ExitCodeOf(nil, false, &st, spec.MaxErrors); code != jobs.ExitPartial {
		t.Errorf("exit code %v, want partial", code)
	}
}

func TestRunResumesAfterInterruption(t *testing.T) {
	_, corpus, spec := setup(t, 40)
	want := func() map[string]string {
		s := spec
		s.Out = spec.Out + "-ref"
		if _, err := Run(context.Background(), Options{Spec: s, Stages: &fakeEngine{}, Corpus: corpus}); err != nil {
			t.Fatal(err)
		}
		return readAnswers(t, s.Out)
	}()
	for _, stop := range []int64{3, 11, 17} {
		ctx, cancel := context.WithCancel(context.Background())
		_, err := Run(ctx, Options{Spec: spec, Stages: &fakeEngine{stopAfter: stop, cancel: cancel}, Corpus: corpus})
		cancel()
		if err == nil {
			continue // the stop landed after the last row
		}
		if jobs.ExitCodeOf(err, true, nil, spec.MaxErrors) != jobs.ExitInterrupted {
			t.Fatalf("interrupted run: %v", err)
		}
		if _, err := os.Stat(filepath.Join(spec.Out, jobs.SuccessFile)); err == nil {
			t.Fatal("_SUCCESS after an interrupted run")
		}
	}
	if _, err := Run(context.Background(), Options{Spec: spec, Stages: &fakeEngine{}, Corpus: corpus}); err != nil {
		t.Fatal(err)
	}
	got := readAnswers(t, spec.Out)
	if len(got) != len(want) {
		t.Fatalf("resumed dataset has %d rows, uninterrupted %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, uninterrupted %q", k, got[k], v)
		}
	}
}

func TestFanOutCoversOneRun(t *testing.T) {
	_, corpus, spec := setup(t, 31)
	one := spec
	one.Out = spec.Out + "-one"
	if _, err := Run(context.Background(), Options{Spec: one, Stages: &fakeEngine{}, Corpus: corpus}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		s := spec
		s.Partition = jobs.Partition{I: i, N: 3}
		if _, err := Run(context.Background(), Options{Spec: s, Stages: &fakeEngine{}, Corpus: corpus}); err != nil {
			t.Fatal(err)
		}
	}
	a, b := readAnswers(t, one.Out), readAnswers(t, spec.Out)
	ka, kb := keys(a), keys(b)
	if strings.Join(ka, ",") != strings.Join(kb, ",") {
		t.Fatalf("fan-out rows %v\n one run %v", kb, ka)
	}
	for k := range a {
		if a[k] != b[k] {
			t.Errorf("%s differs", k)
		}
	}
	ds, err := jobs.FinalizeDataset(spec.Out)
	if err != nil {
		t.Fatal(err)
	}
	if !ds.Complete || ds.Rows != 31 || ds.PartitionsComplete != 3 {
		t.Errorf("merged stats: complete %v rows %d shards %d", ds.Complete, ds.Rows, ds.PartitionsComplete)
	}
	if _, err := os.Stat(filepath.Join(spec.Out, jobs.SuccessFile)); err != nil {
		t.Error("no _SUCCESS after all shards")
	}
}

func keys(m map[string]string) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}

package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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

// A retry must not launder an exceeded error budget: the budget counts the
// shard's error rows of every run, _SUCCESS never appears while they exceed
// it, and only an explicit --max-errors changes it on a rerun.
func TestRetryCannotLaunderBudget(t *testing.T) {
	_, corpus, spec := setup(t, 60)
	// 10 rows with unknown chunk ids (every 6th), budget 3 rows.
	rows := make([]qRow, 60)
	for i := range rows {
		rows[i] = qRow{QueryID: fmt.Sprintf("q%03d", i), Question: fmt.Sprintf("question %d", i), ChunkIDs: []string{"c1"}, Lang: "en"}
		if i%6 == 2 {
			rows[i].ChunkIDs = []string{"c1", fmt.Sprintf("nope%03d", i)}
		}
	}
	spec.Questions = writeQuestions(t, filepath.Dir(spec.Out), rows)
	spec.MaxErrors = jobs.ErrorBudget{Count: 3}
	success := filepath.Join(spec.Out, jobs.SuccessFile)
	var st jobs.Stats
	var err error
	completed := false
	for run := 1; run <= 12 && !completed; run++ {
		st, err = Run(context.Background(), Options{Spec: spec, Stages: &fakeEngine{}, Corpus: corpus})
		if code := jobs.ExitCodeOf(err, false, &st, spec.MaxErrors); code != jobs.ExitBudgetExceeded {
			t.Fatalf("run %d: exit %v (%v), want budget exceeded", run, code, err)
		}
		if _, serr := os.Stat(success); serr == nil {
			t.Fatalf("run %d wrote _SUCCESS with %d error rows over all runs, budget 3", run, st.Errors)
		}
		if run == 1 && !errors.Is(err, jobs.ErrBudgetExceeded) {
			t.Fatalf("run 1 did not stop on the budget: %v", err)
		}
		if run == 2 && err == nil {
			t.Fatal("run 2 answered on past a budget run 1 had already exceeded")
		}
		completed = err == nil
	}
	if !completed || st.Errors != 10 || st.Rows != 60 {
		t.Fatalf("after the reruns: completed %v, rows %d, errors %d", completed, st.Rows, st.Errors)
	}
	ds, err := jobs.FinalizeDataset(spec.Out)
	if err != nil || ds.Success || len(ds.OverBudget) != 1 {
		t.Fatalf("finalize: %+v %v", ds, err)
	}

	// The default budget, not given explicitly, does not replace the dataset's.
	loose := spec
	loose.MaxErrors = jobs.ErrorBudget{Count: 20}
	var logb strings.Builder
	log := slog.New(slog.NewTextHandler(&logb, nil))
	st, err = Run(context.Background(), Options{Spec: loose, Stages: &fakeEngine{}, Corpus: corpus, Logger: log})
	if code := jobs.ExitCodeOf(err, false, &st, loose.MaxErrors); code != jobs.ExitBudgetExceeded {
		t.Fatalf("rerun with a budget not given explicitly: exit %v (%v)", code, err)
	}
	if _, serr := os.Stat(success); serr == nil {
		t.Fatal("a budget not given explicitly laundered the failure")
	}
	// Given explicitly: accepted, logged with both budgets, recorded.
	logb.Reset()
	st, err = Run(context.Background(), Options{Spec: loose, Stages: &fakeEngine{}, Corpus: corpus, Logger: log, MaxErrorsGiven: true})
	if code := jobs.ExitCodeOf(err, false, &st, loose.MaxErrors); code != jobs.ExitPartial {
		t.Fatalf("rerun with an explicit budget of 20: exit %v (%v)", code, err)
	}
	if _, serr := os.Stat(success); serr != nil {
		t.Error("no _SUCCESS after the budget was raised explicitly")
	}
	if l := logb.String(); !strings.Contains(l, "error budget changed") || !strings.Contains(l, "previous_max_errors=3") || !strings.Contains(l, "effective_max_errors=20") {
		t.Errorf("budget change not logged with both budgets:\n%s", l)
	}
	b, _ := os.ReadFile(filepath.Join(spec.Out, jobs.ManifestName(spec.Partition)))
	var m jobs.Manifest
	if err := json.Unmarshal(b, &m); err != nil || m.MaxErrors != "20" || len(m.BudgetChanges) != 1 || m.BudgetChanges[0].From != "3" {
		t.Errorf("manifest budget %q changes %+v (%v)", m.MaxErrors, m.BudgetChanges, err)
	}
}

// Every error row names the file, row, column and cause.
func TestErrorRowsNameFileRowColumn(t *testing.T) {
	_, corpus, spec := setup(t, 12)
	if _, err := Run(context.Background(), Options{Spec: spec, Stages: &fakeEngine{}, Corpus: corpus}); err != nil {
		t.Fatal(err)
	}
	got := readAnswers(t, spec.Out)
	for id, want := range map[string]string{
		"q005": `questions.parquet row 5, column chunk_ids: unknown chunk id "nope"`,
		"q009": `questions.parquet row 9, column question, chunk_ids: plan: question: planning failed on purpose`,
	} {
		if !strings.Contains(got[id], want) {
			t.Errorf("%s: %q, want it to contain %q", id, got[id], want)
		}
	}
}

package jobs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// diagResult is fakeResult with diagnostics: ok rows get Row%4 answer ids
// (none for every 4th, as when nothing was generated) and 5+Row%3 log-probs;
// error rows get none.
func diagResult(q *Question) Result {
	r := fakeResult(q)
	if r.Status != StatusOK {
		return r
	}
	row := int(q.Row)
	for k := 0; k < row%4; k++ {
		r.AnswerIDs = append(r.AnswerIDs, int32(row*100+k))
	}
	for k := 0; k < 5+row%3; k++ {
		r.FirstLogProbs = append(r.FirstLogProbs, -float32(row)-float32(k)/8)
	}
	return r
}

type diagRow struct {
	QueryID       string    `parquet:"query_id"`
	Status        string    `parquet:"status"`
	AnswerIDs     []int32   `parquet:"answer_token_ids"`
	FirstLogProbs []float32 `parquet:"first_token_logprobs"`
}

// bareQ has no passthrough columns.
type bareQ struct {
	QueryID  string   `parquet:"query_id"`
	Question string   `parquet:"question"`
	ChunkIDs []string `parquet:"chunk_ids,list"`
}

func makeBareQuestions(t *testing.T, dir string, n int) string {
	rows := make([]bareQ, n)
	for i := range rows {
		rows[i] = bareQ{fmt.Sprintf("q%05d", i), fmt.Sprintf("question %d?", i), []string{"c1"}}
	}
	return writeParquet(t, dir, "bare.parquet", rows, 64)
}

func partColumns(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, c := range pf.Root().Columns() {
		rep := ""
		if c.Repeated() {
			rep = " repeated"
		}
		cols = append(cols, c.Name()+rep)
	}
	return cols
}

func TestOutputDiagnosticsRoundTrip(t *testing.T) {
	const n = 100
	cases := []struct {
		name     string
		make     func(t *testing.T, dir string, n int) string
		passCols []string
	}{
		{"with passthrough", makeQuestions, []string{"answers", "lang", "score", "tags", "weight"}},
		{"without passthrough", makeBareQuestions, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			qp := c.make(t, dir, n)
			out := filepath.Join(dir, "out")
			// Killed once, then resumed with the same setting.
			runJobDiag(t, qp, out, whole, 30, 37, true)
			runJobDiag(t, qp, out, whole, 30, -1, true)

			parts, _ := filepath.Glob(filepath.Join(out, "part-*.parquet"))
			if len(parts) == 0 {
				t.Fatal("no parts")
			}
			want := append(OutputColumns(), c.passCols...)
			want = append(want, "answer_token_ids repeated", "first_token_logprobs repeated")
			if got := partColumns(t, parts[0]); !slices.Equal(got, want) {
				t.Errorf("columns\n got %v\nwant %v", got, want)
			}

			r, err := OpenQuestions(qp, QuestionsOptions{})
			if err != nil {
				t.Fatal(err)
			}
			qs := readAll(t, r)
			r.Close()
			wantRows := map[string]Result{}
			for i := range qs {
				wantRows[qs[i].QueryID] = diagResult(&qs[i])
			}
			got := map[string]diagRow{}
			for _, p := range parts {
				rows, err := parquet.ReadFile[diagRow](p)
				if err != nil {
					t.Fatal(err)
				}
				for _, row := range rows {
					got[row.QueryID] = row
				}
			}
			if len(got) != n {
				t.Fatalf("%d rows, want %d", len(got), n)
			}
			var errRows, emptyOK int
			for id, w := range wantRows {
				g := got[id]
				if g.Status != string(w.Status) {
					t.Errorf("%s: status %s, want %s", id, g.Status, w.Status)
				}
				if w.Status == StatusError {
					errRows++
				} else if len(w.AnswerIDs) == 0 {
					emptyOK++
				}
				if !slices.Equal(g.AnswerIDs, w.AnswerIDs) || len(g.AnswerIDs) != len(w.AnswerIDs) {
					t.Errorf("%s: answer_token_ids %v, want %v", id, g.AnswerIDs, w.AnswerIDs)
				}
				if !slices.Equal(g.FirstLogProbs, w.FirstLogProbs) {
					t.Errorf("%s: first_token_logprobs %v, want %v", id, g.FirstLogProbs, w.FirstLogProbs)
				}
			}
			if errRows == 0 || emptyOK == 0 {
				t.Fatalf("test data lacks error rows (%d) or empty ok lists (%d)", errRows, emptyOK)
			}
			if c.passCols != nil {
				// The passthrough columns did not move or change.
				for id, r := range readDataset(t, out) {
					var i int
					fmt.Sscanf(id, "q%05d", &i)
					if r.Lang != "en" || r.Score != float64(i)/4 || len(r.Tags) != 2 || r.Tags[1] != fmt.Sprint(i) || r.Answers[0] != fmt.Sprintf("ans%d", i) {
						t.Errorf("%s passthrough %+v", id, r)
					}
				}
			}
		})
	}
}

func TestOutputSchemaDiagnostics(t *testing.T) {
	r, err := OpenQuestions(makeQuestions(t, t.TempDir(), 3), QuestionsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pass := r.PassthroughFields()
	r.Close()
	nPass := 0
	for _, f := range pass {
		nPass += leafCount(f)
	}
	for _, c := range []struct {
		name string
		pass []parquet.Field
		diag bool
		want int // leaf columns
	}{
		{"off, no passthrough", nil, false, len(outputColumns)},
		{"off, passthrough", pass, false, len(outputColumns) + nPass},
		{"on, no passthrough", nil, true, len(outputColumns) + 2},
		{"on, passthrough", pass, true, len(outputColumns) + nPass + 2},
	} {
		cols := OutputSchema(c.pass, c.diag).Columns()
		if len(cols) != c.want {
			t.Errorf("%s: %d leaf columns, want %d", c.name, len(cols), c.want)
			continue
		}
		if c.diag {
			base := len(outputColumns) + leafCountOf(c.pass)
			if cols[base][0] != "answer_token_ids" || cols[base+1][0] != "first_token_logprobs" {
				t.Errorf("%s: diagnostics leaves at %d: %v %v", c.name, base, cols[base], cols[base+1])
			}
		}
	}
}

func leafCountOf(fs []parquet.Field) int {
	n := 0
	for _, f := range fs {
		n += leafCount(f)
	}
	return n
}

// Resuming with the other diagnostics setting is refused, naming the setting.
func TestOutputDiagnosticsResumeMismatch(t *testing.T) {
	for _, c := range []struct {
		name        string
		wrote, with bool
		want        []string
	}{
		{"off then on", false, true, []string{"without diagnostics", "answer_token_ids", "diagnostics: false"}},
		{"on then off", true, false, []string{"with diagnostics", "first_token_logprobs", "diagnostics: true"}},
		{"on then on", true, true, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			qp := makeQuestions(t, dir, 20)
			out := filepath.Join(dir, "out")
			runJobDiag(t, qp, out, whole, 8, -1, c.wrote)
			r, _ := OpenQuestions(qp, QuestionsOptions{})
			pass := r.PassthroughFields()
			r.Close()
			o, err := OpenOutput(context.Background(), OutputOptions{Dir: out, Passthrough: pass, Diagnostics: c.with, Logger: quiet})
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if o.NumCommitted() != 20 {
					t.Errorf("%d committed rows, want 20", o.NumCommitted())
				}
				o.Close()
				return
			}
			if err == nil || !IsConfigError(err) {
				t.Fatalf("err = %v, want a ConfigError", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	// A passthrough change still gets the general message, which names both.
	dir := t.TempDir()
	qp := makeQuestions(t, dir, 5)
	out := filepath.Join(dir, "out")
	runJobDiag(t, qp, out, whole, 8, -1, true)
	_, err := OpenOutput(context.Background(), OutputOptions{Dir: out, Diagnostics: true, Logger: quiet})
	if err == nil || !strings.Contains(err.Error(), "passthrough") || !strings.Contains(err.Error(), "diagnostics") {
		t.Errorf("passthrough change: %v", err)
	}
}

// An input column named like a diagnostics column would give the part two
// columns of one name.
func TestOutputDiagnosticsNameClash(t *testing.T) {
	type clash struct {
		QueryID  string   `parquet:"query_id"`
		Question string   `parquet:"question"`
		ChunkIDs []string `parquet:"chunk_ids,list"`
		IDs      string   `parquet:"answer_token_ids"`
	}
	dir := t.TempDir()
	qp := writeParquet(t, dir, "clash.parquet", []clash{{"q", "?", []string{"c"}, "x"}}, 0)
	r, err := OpenQuestions(qp, QuestionsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pass := r.PassthroughFields()
	r.Close()
	_, err = OpenOutput(context.Background(), OutputOptions{Dir: filepath.Join(dir, "on"), Passthrough: pass, Diagnostics: true, Logger: quiet})
	if err == nil || !IsConfigError(err) || !strings.Contains(err.Error(), "answer_token_ids") {
		t.Errorf("diagnostics on: err = %v, want a ConfigError naming the column", err)
	}
	o, err := OpenOutput(context.Background(), OutputOptions{Dir: filepath.Join(dir, "off"), Passthrough: pass, Logger: quiet})
	if err != nil {
		t.Fatalf("diagnostics off: %v", err)
	}
	o.Close()
}

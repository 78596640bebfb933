package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"cacheclip/jobs"
	"cacheclip/loader"
	"cacheclip/methods"
	"cacheclip/model"
	"cacheclip/model/testmodel"
)

// TestMain lets the test binary stand in for the cacheclip binary in subprocess
// tests (killed with SIGKILL mid-run).
func TestMain(m *testing.M) {
	if args := os.Getenv("CACHECLIP_TEST_MAIN"); args != "" {
		os.Exit(mainCode(strings.Split(args, "\x1f"), os.Stdout, os.Stderr))
	}
	// Called by a script (the Slurm example) as "$CACHECLIP" run …
	if os.Getenv("CACHECLIP_TEST_ARGV") == "1" {
		os.Exit(mainCode(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

type corpusRow struct {
	ChunkID string `parquet:"chunk_id"`
	Text    string `parquet:"text"`
}

type questionRow struct {
	QueryID  string   `parquet:"query_id"`
	Question string   `parquet:"question"`
	ChunkIDs []string `parquet:"chunk_ids,list"`
	Topic    string   `parquet:"topic"`
}

type jobFixture struct {
	dir, primary, aux, corpus, questions, store string
	rows                                        []questionRow
	texts                                       map[string]string
}

func newJobFixture(t testing.TB, nq int) *jobFixture {
	t.Helper()
	f := &jobFixture{dir: t.TempDir(), texts: map[string]string{}}
	specs := map[string]testmodel.Spec{}
	for _, s := range testmodel.Variants() {
		specs[s.Name] = s
	}
	f.primary, f.aux = filepath.Join(f.dir, "primary"), filepath.Join(f.dir, "aux")
	if err := testmodel.Write(f.primary, specs["qwen2"]); err != nil {
		t.Fatal(err)
	}
	if err := testmodel.Write(f.aux, specs["smollm2"]); err != nil {
		t.Fatal(err)
	}
	var cs []corpusRow
	for i := 0; i < 8; i++ {
		id := fmt.Sprintf("c%d", i)
		f.texts[id] = fmt.Sprintf("Document %d. The grass is green. The special magic number for key %d is %d. Here we go.", i, i, 1000+37*i)
		cs = append(cs, corpusRow{id, f.texts[id]})
	}
	for i := 0; i < nq; i++ {
		f.rows = append(f.rows, questionRow{QueryID: fmt.Sprintf("q%03d", i), Question: fmt.Sprintf("What is the magic number for key %d?", i%8),
			ChunkIDs: []string{fmt.Sprintf("c%d", i%8), fmt.Sprintf("c%d", (i+3)%8), fmt.Sprintf("c%d", (i+5)%8)}, Topic: fmt.Sprint("t", i%3)})
	}
	f.corpus = filepath.Join(f.dir, "corpus.parquet")
	f.questions = filepath.Join(f.dir, "questions.parquet")
	f.store = filepath.Join(f.dir, "store")
	if err := parquet.WriteFile(f.corpus, cs); err != nil {
		t.Fatal(err)
	}
	if err := parquet.WriteFile(f.questions, f.rows, parquet.MaxRowsPerRowGroup(5)); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *jobFixture) runArgs(method, out string, extra ...string) []string {
	return append([]string{"run", "--questions", f.questions, "--corpus", f.corpus, "--store", f.store, "--model", f.primary,
		"--aux", f.aux, "--method", method, "--ratio", "0.3", "--out", out, "--max-new-tokens", "6", "--progress", "none",
		"--batch-size", "3", "--part-rows", "4"}, extra...)
}

type outRow struct {
	QueryID     string   `parquet:"query_id"`
	Answer      *string  `parquet:"answer,optional"`
	Status      string   `parquet:"status"`
	Error       *string  `parquet:"error,optional"`
	Method      string   `parquet:"method"`
	Recompute   float64  `parquet:"recompute_ratio"`
	Requested   *float64 `parquet:"requested_ratio,optional"`
	NContext    int32    `parquet:"n_context_tokens"`
	NRecomputed int32    `parquet:"n_recomputed"`
	NGenerated  int32    `parquet:"n_generated"`
	TTFT        float64  `parquet:"ttft_ms"`
	Topic       string   `parquet:"topic"`
}

func readOut(t *testing.T, dir string) map[string]outRow {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "part-*.parquet"))
	got := map[string]outRow{}
	for _, p := range files {
		rows, err := parquet.ReadFile[outRow](p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, r := range rows {
			if _, dup := got[r.QueryID]; dup {
				t.Fatalf("query_id %s appears twice", r.QueryID)
			}
			got[r.QueryID] = r
		}
	}
	return got
}

func run(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := mainCode(args, &out, &errb)
	return code, out.String() + errb.String()
}

// plainAnswer is the engine's own greedy generation over the same prompt, laid
// out by the template and prefilled in one call.
func plainAnswer(t *testing.T, b *loader.Bundle, texts []string, q string, maxNew int) string {
	t.Helper()
	lay, err := b.Layout(texts, q)
	if err != nil {
		t.Fatal(err)
	}
	ids := append([]int32(nil), lay.Prefix.IDs...)
	for _, c := range lay.Chunks {
		ids = append(ids, c.IDs...)
	}
	ids = append(ids, lay.Question.IDs...)
	c := b.Model.HostCache(len(ids) + maxNew)
	first, _ := c.Alloc(len(ids))
	s := &model.Seq{Cache: c, Tokens: ids, Logits: []int{len(ids) - 1}}
	for i := range ids {
		s.Pos = append(s.Pos, int32(i))
		s.Slots = append(s.Slots, int32(first+i))
	}
	out, err := b.Model.Forward(context.Background(), []*model.Seq{s})
	if err != nil {
		t.Fatal(err)
	}
	g := &model.GenState{Cache: c, NextPos: int32(len(ids)), Logits: out[0].Logits[0], Tok: b.Tok, Opts: model.GenOptions{MaxNewTokens: maxNew, StopIDs: b.Stops}}
	if err := b.Model.Generate(context.Background(), []*model.GenState{g}); err != nil {
		t.Fatal(err)
	}
	return g.Text
}

func TestRunEveryMethod(t *testing.T) {
	f := newJobFixture(t, 10)
	if code, out := run(t, "shards", "build", "--store", f.store, "--corpus", f.corpus, "--model", f.primary); code != 0 {
		t.Fatalf("shards build: exit %d\n%s", code, out)
	}
	b, err := loader.Open(f.primary, "")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, method := range methods.Default().Names() {
		t.Run(method, func(t *testing.T) {
			out := filepath.Join(f.dir, "out-"+method)
			if code, log := run(t, f.runArgs(method, out)...); code != 0 {
				t.Fatalf("exit %d\n%s", code, log)
			}
			got := readOut(t, out)
			if len(got) != len(f.rows) {
				t.Fatalf("%d rows, want %d", len(got), len(f.rows))
			}
			if _, err := os.Stat(filepath.Join(out, jobs.SuccessFile)); err != nil {
				t.Error("no _SUCCESS")
			}
			for _, q := range f.rows {
				r := got[q.QueryID]
				if r.Status != "ok" || r.Method != method || r.Topic != q.Topic || r.NContext == 0 || r.Answer == nil {
					t.Fatalf("%s: %+v", q.QueryID, r)
				}
				// recompute_ratio is what was recomputed; requested_ratio the
				// job's --ratio 0.3, null for a method without a ratio.
				if want := float64(r.NRecomputed) / float64(r.NContext); r.Recompute != want {
					t.Errorf("%s: recompute_ratio %v, n_recomputed/n_context %v", q.QueryID, r.Recompute, want)
				}
				e, _ := methods.Default().Lookup(method)
				if e.TakesRatio != (r.Requested != nil) || r.Requested != nil && *r.Requested != 0.3 {
					t.Errorf("%s: requested_ratio %v for %s", q.QueryID, r.Requested, method)
				}
				switch method {
				case "full":
					if r.NRecomputed != r.NContext {
						t.Errorf("%s: full recomputed %d of %d", q.QueryID, r.NRecomputed, r.NContext)
					}
					var texts []string
					for _, id := range q.ChunkIDs {
						texts = append(texts, f.texts[id])
					}
					if want := plainAnswer(t, b, texts, q.Question, 6); *r.Answer != want {
						t.Errorf("%s: full answer %q, plain generation %q", q.QueryID, *r.Answer, want)
					}
				case "reuse", "ape":
					if r.NRecomputed != 0 {
						t.Errorf("%s: %s recomputed %d", q.QueryID, method, r.NRecomputed)
					}
				}
			}
		})
	}
}

// A bad method parameter stops the job before any work: exit 2, a message
// naming the key (and an enumeration's allowed values), nothing written.
func TestRunBadMethodParams(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		method string
		param  string
		want   []string
	}{
		{"cacheclip", "windw=8", []string{"method_params.windw", "unknown parameter of method cacheclip", "window"}},
		{"cacheclip", "reduce=avg", []string{"method_params.reduce", `"avg" is not one of mean, max, last`}},
		{"cacheclip", "window=0", []string{"method_params.window", "0 is not an integer in [1, inf)"}},
		{"cacheblend", "rank_by=q", []string{"method_params.rank_by", "one of v, k"}},
		{"ape", "temp=-1", []string{"method_params.temp"}},
		{"reuse", "window=8", []string{"method_params.window", "method reuse (it takes none)"}},
	} {
		out := filepath.Join(dir, "out-"+c.param)
		code, log := run(t, "run", "--questions", filepath.Join(dir, "q.parquet"), "--corpus", filepath.Join(dir, "c.parquet"),
			"--model", filepath.Join(dir, "model"), "--aux", filepath.Join(dir, "aux"), "--out", out,
			"--method", c.method, "--method-param", c.param)
		if code != int(jobs.ExitBadConfig) {
			t.Errorf("--method %s --method-param %s: exit %d, want %d\n%s", c.method, c.param, code, jobs.ExitBadConfig, log)
		}
		for _, w := range c.want {
			if !strings.Contains(log, w) {
				t.Errorf("--method-param %s: message lacks %q:\n%s", c.param, w, log)
			}
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("--method-param %s: the output directory was created before the settings were checked", c.param)
		}
	}
}

func TestRunBadRows(t *testing.T) {
	f := newJobFixture(t, 4)
	bad := append(f.rows, questionRow{QueryID: "unknown-chunk", Question: "q?", ChunkIDs: []string{"c1", "nope"}},
		questionRow{QueryID: "empty-question", Question: "", ChunkIDs: []string{"c1"}},
		questionRow{QueryID: "too-long", Question: strings.Repeat("very long question ", 900), ChunkIDs: []string{"c2"}})
	if err := parquet.WriteFile(f.questions, bad); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(f.dir, "out")
	code, log := run(t, f.runArgs("reuse", out, "--max-errors", "50%")...)
	if code != int(jobs.ExitPartial) {
		t.Fatalf("exit %d, want %d (partial)\n%s", code, jobs.ExitPartial, log)
	}
	got := readOut(t, out)
	if len(got) != len(bad) {
		t.Fatalf("%d rows, want %d", len(got), len(bad))
	}
	for id, want := range map[string]string{"unknown-chunk": `unknown chunk id "nope"`, "empty-question": "question", "too-long": "exceeds the model's limit"} {
		r := got[id]
		if r.Status != "error" || r.Error == nil || !strings.Contains(*r.Error, want) {
			t.Errorf("%s: status %s error %v, want mention of %q", id, r.Status, r.Error, want)
		}
	}
	// A missing column is a configuration error naming the file and column.
	type noChunks struct {
		QueryID  string `parquet:"query_id"`
		Question string `parquet:"question"`
	}
	if err := parquet.WriteFile(f.questions, []noChunks{{"a", "b"}}); err != nil {
		t.Fatal(err)
	}
	code, log = run(t, f.runArgs("reuse", filepath.Join(f.dir, "out2"))...)
	if code != int(jobs.ExitBadConfig) || !strings.Contains(log, "chunk_ids") || !strings.Contains(log, "questions.parquet") {
		t.Fatalf("missing column: exit %d\n%s", code, log)
	}
}

// TestRunResumeAfterSIGKILL kills the job at random points several times, then
// reruns it to completion: every query_id once, answers equal to an
// uninterrupted run's.
func TestRunResumeAfterSIGKILL(t *testing.T) {
	f := newJobFixture(t, 60)
	ref := filepath.Join(f.dir, "ref")
	if code, log := run(t, f.runArgs("cacheclip", ref)...); code != 0 {
		t.Fatalf("reference run: exit %d\n%s", code, log)
	}
	want := readOut(t, ref)
	out := filepath.Join(f.dir, "out")
	rng := rand.New(rand.NewPCG(1, 2))
	kills := 0
	for attempt := 0; attempt < 12; attempt++ {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "CACHECLIP_TEST_MAIN="+strings.Join(f.runArgs("cacheclip", out), "\x1f"))
		var logb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logb, &logb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		killAfter := time.Duration(200+rng.IntN(900)) * time.Millisecond
		if kills >= 4 {
			killAfter = time.Hour // let it finish
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run ended with %v\n%s", err, logb.String())
			}
		case <-time.After(killAfter):
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
			kills++
			continue
		}
		break
	}
	if _, err := os.Stat(filepath.Join(out, jobs.SuccessFile)); err != nil {
		t.Fatal("no _SUCCESS after the final run")
	}
	got := readOut(t, out)
	var ids []string
	for id := range want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if len(got) != len(want) {
		t.Fatalf("resumed dataset has %d rows, uninterrupted %d (killed %d times)", len(got), len(want), kills)
	}
	for _, id := range ids {
		if got[id].Answer == nil || want[id].Answer == nil || *got[id].Answer != *want[id].Answer {
			t.Errorf("%s differs after resume", id)
		}
	}
	t.Logf("killed %d times", kills)
}

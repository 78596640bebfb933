package runner

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"cacheclip/eval"
	"cacheclip/jobs"
	"cacheclip/kvshards"
	"cacheclip/loader"
	"cacheclip/progress"
)

type recomputeRow struct {
	QueryID     string  `parquet:"query_id"`
	Status      string  `parquet:"status"`
	Answer      *string `parquet:"answer,optional"`
	NContext    int32   `parquet:"n_context_tokens"`
	NRecomputed int32   `parquet:"n_recomputed"`
}

// adaptiveJob runs a job over the questions and corpus in dir with the test
// bed's pair, 4 questions per batch in read order, and returns its rows by
// question index.
func adaptiveJob(t *testing.T, dir, method string, ratio float64, params map[string]string, n int) map[int]recomputeRow {
	t.Helper()
	return testbedJob(t, dir, method, ratio, params, n, func(*jobs.Spec) {})
}

// testbedJob runs the job adaptiveJob describes, with edit applied to its spec.
func testbedJob(t *testing.T, dir, method string, ratio float64, params map[string]string, n int, edit func(*jobs.Spec)) map[int]recomputeRow {
	t.Helper()
	js := jobs.DefaultSpec()
	js.Questions, js.Corpus = filepath.Join(dir, "q.parquet"), filepath.Join(dir, "c.parquet")
	js.Out = filepath.Join(dir, fmt.Sprintf("out-%s-%v-%s-%d", method, ratio, params["budget"], len(params)))
	js.Model, js.Aux = testbedPrimary, "../testdata/testbed/aux"
	js.Method, js.Ratio, js.MethodParams = method, ratio, params
	js.MaxNewTokens = 6
	js.BatchSize = 4
	js.Device = "cpu"
	edit(&js)
	if err := js.Validate(); err != nil {
		t.Fatal(err)
	}
	st, err := RunSpec(context.Background(), Options{Spec: js, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if int(st.OK) != n {
		t.Fatalf("%s %v %v: %d ok rows of %d", method, ratio, params, st.OK, n)
	}
	parts, _ := filepath.Glob(filepath.Join(js.Out, "part-*.parquet"))
	out := map[int]recomputeRow{}
	for _, p := range parts {
		rs, err := parquet.ReadFile[recomputeRow](p)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			i, err := strconv.Atoi(r.QueryID[strings.LastIndexAny(r.QueryID, "-_")+1:])
			if err != nil {
				t.Fatalf("query id %q: %v", r.QueryID, err)
			}
			out[i] = r
		}
	}
	if len(out) != n {
		t.Fatalf("%d rows read back, want %d", len(out), n)
	}
	return out
}

// vtDataset writes n variable-tracking questions (192 context tokens in
// chunks of 48, the test bed's tokenizer) as q.parquet and c.parquet into a
// new directory, and returns it.
func vtDataset(t *testing.T, n int, seed uint64) string {
	t.Helper()
	b, err := loader.Open(testbedPrimary, "")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	exs, err := eval.Generate(context.Background(), eval.Config{Task: eval.TaskVT, N: n, Seed: seed, ContextTokens: 192, ChunkTokens: 48, Count: b.CountTokens})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := eval.WriteDataset(context.Background(), filepath.Join(dir, "q.parquet"), filepath.Join(dir, "c.parquet"), exs); err != nil {
		t.Fatal(err)
	}
	return dir
}

// budget=adaptive through the job path: each batch (4 questions in read order)
// recomputes exactly the tokens fixed r recomputes over it, spread unevenly;
// at r = 1 every token is recomputed and the answers are full's.
func TestAdaptiveBudgetJob(t *testing.T) {
	const n = 10
	dir := vtDataset(t, n, 1919)
	fixed := adaptiveJob(t, dir, "cacheclip", 0.2, nil, n)
	adaptive := adaptiveJob(t, dir, "cacheclip", 0.2, map[string]string{"budget": "adaptive"}, n)
	differs := false
	for b := 0; b*4 < n; b++ {
		sumF, sumA := 0, 0
		for i := b * 4; i < min(n, b*4+4); i++ {
			f, a := fixed[i], adaptive[i]
			if f.NContext != a.NContext {
				t.Fatalf("question %d: %d context tokens fixed, %d adaptive", i, f.NContext, a.NContext)
			}
			if a.NRecomputed < f.NRecomputed/2 || a.NRecomputed > a.NContext {
				t.Fatalf("question %d: %d recomputed of %d (fixed: %d)", i, a.NRecomputed, a.NContext, f.NRecomputed)
			}
			sumF += int(f.NRecomputed)
			sumA += int(a.NRecomputed)
			differs = differs || f.NRecomputed != a.NRecomputed
		}
		if sumF != sumA {
			t.Errorf("batch %d: adaptive recomputes %d tokens, fixed %d", b, sumA, sumF)
		}
	}
	if !differs {
		t.Error("adaptive gave every question its fixed budget: nothing was allocated")
	}

	full := adaptiveJob(t, dir, "full", 0, nil, n)
	all := adaptiveJob(t, dir, "cacheclip", 1, map[string]string{"budget": "adaptive"}, n)
	for i := range n {
		if all[i].NRecomputed != all[i].NContext {
			t.Errorf("r=1: question %d recomputes %d of %d tokens", i, all[i].NRecomputed, all[i].NContext)
		}
		if *all[i].Answer != *full[i].Answer {
			t.Errorf("r=1: question %d answers %q, full %q", i, *all[i].Answer, *full[i].Answer)
		}
	}
}

// aux_mode=cached (the default) over a store the job may not write: the
// primary's shards are there, the auxiliary's are not, and every row is
// still answered, as it is with the auxiliary's shards built on the way.
func TestCachedAuxReadOnlyStore(t *testing.T) {
	const n = 4
	ctx := context.Background()
	dir := vtDataset(t, n, 1920)
	store := filepath.Join(dir, "shards")
	st, err := kvshards.OpenStore(store, kvshards.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := BuildShards(ctx, ShardBuild{Store: st, Corpus: filepath.Join(dir, "c.parquet"), Model: testbedPrimary, Progress: progress.None, Stderr: io.Discard}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	files := func() int {
		n := 0
		filepath.WalkDir(store, func(_ string, d fs.DirEntry, _ error) error {
			if d != nil && !d.IsDir() {
				n++
			}
			return nil
		})
		return n
	}
	before := files()
	// testbedJob fails the test unless every row is answered.
	readOnly := testbedJob(t, dir, "cacheclip", 0.2, nil, n, func(s *jobs.Spec) { s.Store, s.WriteThrough = store, false })
	if after := files(); after != before {
		t.Errorf("a read-only job wrote into the store: %d files before, %d after", before, after)
	}
	for i := range n {
		if want := int32(math.Ceil(0.2*float64(readOnly[i].NContext) - 1e-9)); readOnly[i].NRecomputed != want {
			t.Errorf("question %d: %d recomputed, budget %d", i, readOnly[i].NRecomputed, want)
		}
	}
	// With write-through the auxiliary's shards are built on the way.
	testbedJob(t, dir, "cacheclip", 0.2, map[string]string{"window": "8"}, n, func(s *jobs.Spec) { s.Store = store })
	if after := files(); after <= before {
		t.Errorf("a write-through job built no auxiliary shards: %d files before, %d after", before, after)
	}
}

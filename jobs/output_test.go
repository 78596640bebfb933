package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

var quiet = slog.New(slog.DiscardHandler)

// makeQuestions writes n questions with passthrough columns and returns the path.
func makeQuestions(t *testing.T, dir string, n int) string {
	rows := make([]qRow, n)
	for i := range rows {
		w := int64(i * 10)
		rows[i] = qRow{QueryID: sp(fmt.Sprintf("q%05d", i)), Question: sp(fmt.Sprintf("question %d?", i)),
			ChunkIDs: []string{"c1", "c2"}, Answers: []string{fmt.Sprintf("ans%d", i)}, Lang: "en",
			Score: float64(i) / 4, Tags: []string{"a", fmt.Sprint(i)}, Weight: &w}
		if i%7 == 3 {
			rows[i].Weight = nil
		}
	}
	return writeParquet(t, dir, "questions.parquet", rows, 64)
}

// fakeResult answers q deterministically; every 10th question fails.
func fakeResult(q *Question) Result {
	if q.Err != nil {
		return ErrorResult(q, "cacheclip", 0.2, q.Err)
	}
	if q.Row%10 == 9 {
		return ErrorResult(q, "cacheclip", 0.2, errors.New("unknown chunk id c2"))
	}
	return Result{QueryID: q.QueryID, Answer: "A:" + q.Question, Status: StatusOK, Method: "cacheclip",
		RecomputeRatio: 0.2, NContextTokens: 100, NRecomputed: 20, NGenerated: int32(q.Row%5 + 1),
		LoadMS: 1, AuxMS: 2, PrefillMS: 3, TTFTMS: float64(q.Row%100 + 1), DecodeMS: 4, TotalMS: float64(q.Row%100+1) * 2,
		Device: fmt.Sprintf("cuda:%d (GPU)", q.Row%2), Passthrough: q.Passthrough}
}

// runJob reads the questions of one shard and writes them, stopping (as if
// killed) after stopAfter writes when stopAfter >= 0. It returns rows written.
func runJob(t *testing.T, qpath, out string, sh Partition, partRows, stopAfter int) int {
	t.Helper()
	return runJobDiag(t, qpath, out, sh, partRows, stopAfter, false)
}

// runJobDiag is runJob with the diagnostics columns on or off; with them on,
// rows come from diagResult.
func runJobDiag(t *testing.T, qpath, out string, sh Partition, partRows, stopAfter int, diag bool) int {
	t.Helper()
	ctx := context.Background()
	r, err := OpenQuestions(qpath, QuestionsOptions{BatchSize: 16, Partition: sh})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// fakeResult fails every 10th row: a budget of 20% keeps the dataset a success.
	budget := ErrorBudget{Fraction: 0.2, IsFraction: true}
	o, err := OpenOutput(ctx, OutputOptions{Dir: out, Partition: sh, Passthrough: r.PassthroughFields(), PartRows: partRows, Diagnostics: diag, Logger: quiet, MaxErrors: &budget})
	if err != nil {
		t.Fatal(err)
	}
	written := 0
	for {
		b, err := r.Next(ctx)
		for i := range b {
			q := &b[i]
			if o.Committed(q.QueryID) {
				continue
			}
			if stopAfter >= 0 && written == stopAfter {
				o.Close() // abandon pending rows, like a kill
				return written
			}
			res := fakeResult(q)
			if diag {
				res = diagResult(q)
			}
			if err := o.Write(ctx, res); err != nil {
				t.Fatal(err)
			}
			written++
		}
		if err != nil {
			break
		}
	}
	o.SetDuplicates(r.Stats().Duplicates)
	o.SetRunCounters(map[string]time.Duration{"primary": time.Second}, map[string]int64{"shard_cache_hits": 3})
	if _, err := o.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	return written
}

type outRow struct {
	QueryID        string   `parquet:"query_id"`
	Answer         *string  `parquet:"answer,optional"`
	Status         string   `parquet:"status"`
	Error          *string  `parquet:"error,optional"`
	Method         string   `parquet:"method"`
	RecomputeRatio float64  `parquet:"recompute_ratio"`
	NContextTokens int32    `parquet:"n_context_tokens"`
	NRecomputed    int32    `parquet:"n_recomputed"`
	NGenerated     int32    `parquet:"n_generated"`
	TTFTMS         float64  `parquet:"ttft_ms"`
	TotalMS        float64  `parquet:"total_ms"`
	Device         string   `parquet:"device"`
	Answers        []string `parquet:"answers,list"`
	Lang           string   `parquet:"lang"`
	Score          float64  `parquet:"score"`
	Tags           []string `parquet:"tags,list"`
	Weight         *int64   `parquet:"weight,optional"`
}

// readDataset reads every committed part listed by the manifests.
func readDataset(t *testing.T, out string) map[string]outRow {
	t.Helper()
	got := map[string]outRow{}
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		if !manifestRE.MatchString(e.Name()) {
			continue
		}
		var m Manifest
		b, _ := os.ReadFile(filepath.Join(out, e.Name()))
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, p := range m.Parts {
			rows, err := parquet.ReadFile[outRow](filepath.Join(out, p.File))
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(rows)) != p.Rows {
				t.Fatalf("%s: %d rows, manifest says %d", p.File, len(rows), p.Rows)
			}
			for _, r := range rows {
				if _, dup := got[r.QueryID]; dup {
					t.Fatalf("query_id %s twice", r.QueryID)
				}
				got[r.QueryID] = r
			}
		}
	}
	return got
}

func TestOutputSchemaAndValues(t *testing.T) {
	dir := t.TempDir()
	qp := makeQuestions(t, dir, 100)
	out := filepath.Join(dir, "out")
	runJob(t, qp, out, whole, 30, -1)

	// Column order and types, read from a part file's footer.
	ents, _ := filepath.Glob(filepath.Join(out, "part-*.parquet"))
	if len(ents) != 4 {
		t.Fatalf("parts: %v", ents)
	}
	rows, err := parquet.ReadFile[outRow](ents[0])
	if err != nil || len(rows) == 0 {
		t.Fatal(err)
	}
	f, _ := os.Open(ents[0])
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, c := range pf.Root().Columns() {
		cols = append(cols, c.Name()+":"+typeName(c))
	}
	f.Close()
	want := []string{"query_id:STRING", "answer:STRING", "status:STRING", "error:STRING", "method:STRING",
		"recompute_ratio:DOUBLE", "n_context_tokens:INT(32,true)", "n_recomputed:INT(32,true)", "n_generated:INT(32,true)",
		"load_ms:DOUBLE", "aux_ms:DOUBLE", "prefill_ms:DOUBLE", "ttft_ms:DOUBLE", "decode_ms:DOUBLE", "total_ms:DOUBLE", "device:STRING",
		"answers:group LIST", "lang:STRING", "score:DOUBLE", "tags:group LIST", "weight:INT(64,true)"}
	if strings.Join(cols, ",") != strings.Join(want, ",") {
		t.Errorf("columns\n got %v\nwant %v", cols, want)
	}

	got := readDataset(t, out)
	if len(got) != 100 {
		t.Fatalf("%d rows", len(got))
	}
	for i := 0; i < 100; i++ {
		r := got[fmt.Sprintf("q%05d", i)]
		wantW := int64(i * 10)
		if (r.Weight == nil) != (i%7 == 3) || (r.Weight != nil && *r.Weight != wantW) {
			t.Errorf("row %d weight %v", i, r.Weight)
		}
		if r.Lang != "en" || r.Score != float64(i)/4 || len(r.Tags) != 2 || r.Tags[1] != fmt.Sprint(i) || r.Answers[0] != fmt.Sprintf("ans%d", i) {
			t.Errorf("row %d passthrough %+v", i, r)
		}
		if i%10 == 9 {
			if r.Status != "error" || r.Answer != nil || r.Error == nil || !strings.Contains(*r.Error, "unknown chunk") {
				t.Errorf("row %d error row %+v", i, r)
			}
		} else if r.Status != "ok" || r.Answer == nil || *r.Answer != fmt.Sprintf("A:question %d?", i) || r.Error != nil {
			t.Errorf("row %d ok row %+v", i, r)
		} else if want := fmt.Sprintf("cuda:%d (GPU)", i%2); r.Device != want {
			t.Errorf("row %d device %q, want %q", i, r.Device, want)
		}
	}
	if _, err := os.Stat(filepath.Join(out, SuccessFile)); err != nil {
		t.Errorf("no _SUCCESS: %v", err)
	}
	var ds DatasetStats
	b, _ := os.ReadFile(filepath.Join(out, StatsFile))
	if err := json.Unmarshal(b, &ds); err != nil {
		t.Fatal(err)
	}
	if ds.Rows != 100 || ds.Errors != 10 || ds.OK != 90 || !ds.Complete || ds.StageBusySeconds["primary"] != 1 || ds.Counters["shard_cache_hits"] != 3 {
		t.Errorf("stats %+v", ds.Stats)
	}
}

// Kill the job at several points and rerun until done: the dataset must hold
// every query_id once with the answers of an uninterrupted run.
func TestOutputResumeAfterKills(t *testing.T) {
	dir := t.TempDir()
	qp := makeQuestions(t, dir, 300)
	ref := filepath.Join(dir, "ref")
	runJob(t, qp, ref, whole, 25, -1)
	want := readDataset(t, ref)

	out := filepath.Join(dir, "out")
	for _, stop := range []int{0, 7, 60, 24, 133} {
		runJob(t, qp, out, whole, 25, stop)
		if _, err := os.Stat(filepath.Join(out, SuccessFile)); err == nil {
			t.Fatal("_SUCCESS before completion")
		}
	}
	// Simulate a crash after a part was renamed but before the manifest listed
	// it, and a crash mid-write of a temp file.
	os.WriteFile(filepath.Join(out, PartName(whole, 999)), []byte("PAR1 junk"), 0o644)
	os.WriteFile(filepath.Join(out, tmpPrefix+whole.Tag()+"-abc-part.parquet"), []byte("half"), 0o644)
	other := filepath.Join(out, tmpPrefix+"s0001of0002-abc-x")
	os.WriteFile(other, nil, 0o644)
	runJob(t, qp, out, whole, 25, -1)
	got := readDataset(t, out)
	if len(got) != len(want) {
		t.Fatalf("%d rows after resume, want %d", len(got), len(want))
	}
	for id, w := range want {
		g := got[id]
		if g.Status != w.Status || fmt.Sprint(g.Answer) == "" || (g.Answer == nil) != (w.Answer == nil) || (g.Answer != nil && *g.Answer != *w.Answer) {
			t.Errorf("%s differs: %+v vs %+v", id, g, w)
		}
	}
	if _, err := os.Stat(filepath.Join(out, PartName(whole, 999))); !os.IsNotExist(err) {
		t.Error("orphan part not removed")
	}
	if _, err := os.Stat(other); err != nil {
		t.Error("another shard's temp file was removed")
	}
	ds, err := MergeStats(out)
	if err != nil {
		t.Fatal(err)
	}
	if ds.Rows != 300 || ds.Errors != 30 || !ds.Complete || ds.Runs < 2 {
		t.Errorf("stats after resume: rows %d errors %d complete %v runs %d", ds.Rows, ds.Errors, ds.Complete, ds.Runs)
	}
}

func TestOutputFanOut(t *testing.T) {
	dir := t.TempDir()
	qp := makeQuestions(t, dir, 200)
	out := filepath.Join(dir, "out")
	var total int
	for i := 0; i < 3; i++ {
		total += runJob(t, qp, out, Partition{i, 3}, 20, -1)
		_, err := os.Stat(filepath.Join(out, SuccessFile))
		if done := err == nil; done != (i == 2) {
			t.Errorf("after shard %d: _SUCCESS present = %v", i, done)
		}
	}
	got := readDataset(t, out)
	if total != 200 || len(got) != 200 {
		t.Fatalf("wrote %d, dataset has %d", total, len(got))
	}
	ents, _ := filepath.Glob(filepath.Join(out, "part-*"))
	for _, e := range ents {
		m := partRE.FindStringSubmatch(filepath.Base(e))
		if m == nil || !strings.HasSuffix(m[1], "of0003") {
			t.Errorf("part name %s", e)
		}
	}
	ds, err := MergeStats(out)
	if err != nil {
		t.Fatal(err)
	}
	if ds.Partitions != 3 || ds.Rows != 200 || ds.PartitionsComplete != 3 || ds.StageBusySeconds["primary"] != 3 {
		t.Errorf("merged: %+v", ds)
	}
	// Reusing the directory with another shard count is refused.
	_, err = OpenOutput(context.Background(), OutputOptions{Dir: out, Partition: Partition{0, 2}})
	if err == nil || !IsConfigError(err) || !strings.Contains(err.Error(), "3 shards") {
		t.Errorf("N mismatch: %v", err)
	}
}

func TestOutputRefusesDamage(t *testing.T) {
	dir := t.TempDir()
	qp := makeQuestions(t, dir, 50)
	out := filepath.Join(dir, "out")
	runJob(t, qp, out, whole, 20, -1)
	ctx := context.Background()

	// Different passthrough schema.
	_, err := OpenOutput(ctx, OutputOptions{Dir: out})
	if err == nil || !IsConfigError(err) || !strings.Contains(err.Error(), "schema") {
		t.Errorf("schema change: %v", err)
	}
	// A committed part gone.
	r, _ := OpenQuestions(qp, QuestionsOptions{})
	pass := r.PassthroughFields()
	r.Close()
	os.Remove(filepath.Join(out, PartName(whole, 2)))
	_, err = OpenOutput(ctx, OutputOptions{Dir: out, Passthrough: pass})
	if err == nil || !strings.Contains(err.Error(), PartName(whole, 2)) {
		t.Errorf("missing part: %v", err)
	}
	// A torn manifest.
	os.WriteFile(filepath.Join(out, ManifestName(whole)), []byte("{\"format\":"), 0o644)
	_, err = OpenOutput(ctx, OutputOptions{Dir: out, Passthrough: pass})
	if err == nil || !strings.Contains(err.Error(), "manifest") {
		t.Errorf("torn manifest: %v", err)
	}
}

func TestOutputRejectsBadResults(t *testing.T) {
	dir := t.TempDir()
	qp := makeQuestions(t, dir, 5)
	r, _ := OpenQuestions(qp, QuestionsOptions{})
	defer r.Close()
	o, err := OpenOutput(context.Background(), OutputOptions{Dir: filepath.Join(dir, "o"), Passthrough: r.PassthroughFields()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cases := []struct {
		r    Result
		want string
	}{
		{Result{Status: StatusOK}, "without query_id"},
		{Result{QueryID: "x", Status: "maybe"}, "status"},
		{Result{QueryID: "x", Status: StatusOK}, "passthrough"},
	}
	for _, c := range cases {
		if err := o.Write(ctx, c.r); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v", c.r, err)
		}
	}
}

func TestOutputCommitInterval(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	o, err := OpenOutput(context.Background(), OutputOptions{Dir: dir, PartRows: 1000, CommitInterval: time.Minute, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	o.Write(ctx, Result{QueryID: "a", Status: StatusOK})
	if o.NumCommitted() != 0 {
		t.Fatal("committed too early")
	}
	now = now.Add(61 * time.Second)
	o.Write(ctx, Result{QueryID: "b", Status: StatusOK})
	if o.NumCommitted() != 2 || !o.Committed("a") || !o.Committed("b") || o.Committed("c") {
		t.Fatalf("committed %d", o.NumCommitted())
	}
}

func TestHistogramQuantiles(t *testing.T) {
	cases := []struct {
		name string
		vals []float64
	}{
		{"uniform", func() []float64 {
			v := make([]float64, 1000)
			for i := range v {
				v[i] = float64(i + 1)
			}
			return v
		}()},
		{"skewed", func() []float64 {
			v := make([]float64, 5000)
			for i := range v {
				v[i] = math.Exp(float64(i%97) / 10)
			}
			return v
		}()},
		{"single", []float64{42}},
		{"tiny", []float64{0, 0.0001, 0.5, 3}},
	}
	for _, c := range cases {
		// Split across three "shards" and merge.
		var parts [3]Histogram
		for i, v := range c.vals {
			parts[i%3].Add(v)
		}
		var h Histogram
		for _, p := range parts {
			h.Merge(p)
		}
		sorted := append([]float64{}, c.vals...)
		sort.Float64s(sorted)
		for _, q := range []float64{0.5, 0.95, 0.99} {
			rank := int(math.Ceil(q*float64(len(sorted)))) - 1
			exact := sorted[max(rank, 0)]
			got := h.Quantile(q)
			if math.Abs(got-exact) > 0.006*exact+histMin {
				t.Errorf("%s p%v = %v, exact %v", c.name, q*100, got, exact)
			}
		}
		if h.Count != int64(len(c.vals)) || h.Max != sorted[len(sorted)-1] {
			t.Errorf("%s count %d max %v", c.name, h.Count, h.Max)
		}
	}
	var empty Histogram
	if empty.Quantile(0.5) != 0 {
		t.Error("empty quantile")
	}
}

// A shard that owns no question still completes, so _SUCCESS can appear.
func TestOutputEmptyPartitionCompletes(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		o, err := OpenOutput(ctx, OutputOptions{Dir: dir, Partition: Partition{i, 2}, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if err := o.Write(ctx, Result{QueryID: "only", Status: StatusOK}); err != nil {
				t.Fatal(err)
			}
		}
		st, err := o.Finish(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Rows != int64(i) {
			t.Errorf("shard %d rows %d", i, st.Rows)
		}
		if err := o.Write(ctx, Result{QueryID: "late", Status: StatusOK}); err == nil {
			t.Error("write after Finish accepted")
		}
	}
	if _, err := os.Stat(filepath.Join(dir, SuccessFile)); err != nil {
		t.Error("no _SUCCESS")
	}
	ds, err := MergeStats(dir)
	if err != nil || ds.Rows != 1 || !ds.Complete || len(ds.Missing) != 0 {
		t.Errorf("merged %+v %v", ds, err)
	}
}

func TestMergeStatsReportsMissingPartitions(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	o, _ := OpenOutput(ctx, OutputOptions{Dir: dir, Partition: Partition{1, 3}, Logger: quiet})
	o.Write(ctx, Result{QueryID: "a", Status: StatusOK, TTFTMS: 5, TotalMS: 10})
	if _, err := o.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	ds, err := MergeStats(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ds.Complete || strings.Join(ds.Missing, ",") != "0/3,2/3" || ds.TTFT.P50 < 4.9 || ds.TTFT.P50 > 5.1 {
		t.Errorf("%+v", ds)
	}
	if _, err := os.Stat(filepath.Join(dir, SuccessFile)); err == nil {
		t.Error("_SUCCESS with shards missing")
	}
	if _, err := MergeStats(t.TempDir()); err == nil || !IsConfigError(err) {
		t.Errorf("empty dir: %v", err)
	}
}

func TestOutputRemovesStaleSharedTemps(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, tmpPrefix+"final-abc-stats.json")
	fresh := filepath.Join(dir, tmpPrefix+"any-def-_SUCCESS")
	os.WriteFile(stale, nil, 0o644)
	os.WriteFile(fresh, nil, 0o644)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(stale, old, old)
	if _, err := OpenOutput(context.Background(), OutputOptions{Dir: dir, Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Error("stale temp kept")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Error("fresh temp of another writer removed")
	}
}

// stats.json describes finished datasets only: a shard that is not the last
// to finish does not write it (docs/JOBS.md, Fan-out).
func TestStatsJSONOnlyFromTheLastPartition(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		o, err := OpenOutput(ctx, OutputOptions{Dir: dir, Partition: Partition{i, 3}, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		o.Write(ctx, Result{QueryID: fmt.Sprint("q", i), Status: StatusOK})
		if _, err := o.Finish(ctx); err != nil {
			t.Fatal(err)
		}
		_, err = os.Stat(filepath.Join(dir, StatsFile))
		if last := i == 2; last != (err == nil) {
			t.Errorf("after shard %d of 3: stats.json present = %v", i, err == nil)
		}
	}
}

// With the job's default settings, an answered row is committed within 10 s
// even when no further row arrives to trigger the commit.
func TestOutputCommitsOnTimeWithoutFurtherRows(t *testing.T) {
	if d := DefaultSpec().CommitInterval; d <= 0 || d > 10*time.Second {
		t.Errorf("default commit_interval %v: a kill could lose more than 10 s of answered rows", d)
	}
	dir := t.TempDir()
	o, err := OpenOutput(context.Background(), OutputOptions{Dir: dir, PartRows: 1000, CommitInterval: 150 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := o.Write(context.Background(), Result{QueryID: "a", Status: StatusOK}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !o.Committed("a") {
		if time.Now().After(deadline) {
			t.Fatal("a pending row was not committed after its commit interval passed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, err := os.ReadFile(filepath.Join(dir, ManifestName(Partition{})))
	if err != nil || !strings.Contains(string(b), PartName(Partition{}, 1)) {
		t.Fatalf("manifest does not list the timed part: %v\n%s", err, b)
	}
}

// stats.json's device lists every device a job's runs and shards used, once.
func TestJoinDevices(t *testing.T) {
	for _, c := range []struct{ a, b, want string }{
		{"", "", ""},
		{"cpu", "", "cpu"},
		{"", "cuda:0 (H100)", "cuda:0 (H100)"},
		{"cpu", "cpu", "cpu"},
		{"cuda:1 (H100)", "cpu", "cpu; cuda:1 (H100)"},
		{"cpu; cuda:1 (H100)", "cuda:0 (H100)", "cpu; cuda:0 (H100); cuda:1 (H100)"},
	} {
		if got := joinDevices(c.a, c.b); got != c.want {
			t.Errorf("joinDevices(%q, %q) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
}

// stage_overlap is the stages' busy time (read left out) over the wall time.
func TestStageOverlap(t *testing.T) {
	for _, c := range []struct {
		busy map[string]float64
		wall float64
		want float64
	}{
		{map[string]float64{"read": 10, "plan": 1, "load": 2, "aux": 3, "primary": 4}, 10, 1.0},
		{map[string]float64{"read": 5, "aux": 4, "primary": 5}, 5, 1.8},
		{map[string]float64{"aux": 4}, 0, 0},
		{nil, 3, 0},
	} {
		s := Stats{StageBusySeconds: c.busy, WallSeconds: c.wall}
		s.finish()
		if math.Abs(s.StageOverlap-c.want) > 1e-12 {
			t.Errorf("busy %v wall %g: overlap %g, want %g", c.busy, c.wall, s.StageOverlap, c.want)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"cacheclip/jobs"
	"cacheclip/kvshards/s3store"
	"cacheclip/kvshards/s3store/s3test"
)

// newFanOutFixture is a job of nq questions over a corpus of nc chunks; every
// chunk is some question's first chunk, and most are shared by several
// questions (and so by several workers).
func newFanOutFixture(t testing.TB, nq, nc int) *jobFixture {
	t.Helper()
	f := newJobFixture(t, 0)
	var cs []corpusRow
	for i := range nc {
		id := fmt.Sprintf("c%03d", i)
		f.texts[id] = fmt.Sprintf("Record %d. The special magic number for key %d is %d.", i, i, 1000+37*i)
		cs = append(cs, corpusRow{id, f.texts[id]})
	}
	f.rows = nil
	for i := range nq {
		f.rows = append(f.rows, questionRow{QueryID: fmt.Sprintf("q%04d", i), Question: fmt.Sprintf("Magic number for key %d?", i%nc),
			ChunkIDs: []string{fmt.Sprintf("c%03d", i%nc), fmt.Sprintf("c%03d", (i*7+13)%nc), fmt.Sprintf("c%03d", (i*11+5)%nc)}, Topic: "t"})
	}
	if err := parquet.WriteFile(f.corpus, cs); err != nil {
		t.Fatal(err)
	}
	if err := parquet.WriteFile(f.questions, f.rows, parquet.MaxRowsPerRowGroup(50)); err != nil {
		t.Fatal(err)
	}
	return f
}

// fanOutArgs are a worker's arguments: method reuse with one generated
// token keeps the 600-question job to seconds on the tiny test models while
// every chunk still goes through the shard store.
func (f *jobFixture) fanOutArgs(store, out string, extra ...string) []string {
	return append([]string{"run", "--questions", f.questions, "--corpus", f.corpus, "--store", store, "--model", f.primary,
		"--method", "reuse", "--out", out, "--max-new-tokens", "2", "--progress", "none", "--batch-size", "8", "--part-rows", "100"}, extra...)
}

// fanOutEnv is a fan-out test's world: versitygw with a bucket "shards", a
// counting proxy in front of it, a job of nq questions over nc chunks and
// the single-process reference run of it (directory store) in ref.
type fanOutEnv struct {
	srv *s3test.Server
	px  *s3test.Proxy
	f   *jobFixture
	ref string
}

func newFanOutEnv(t *testing.T, nq, nc int) *fanOutEnv {
	t.Helper()
	e := &fanOutEnv{srv: s3test.Start(t)}
	e.srv.MakeBucket(t, "shards")
	e.px = s3test.NewProxy(t, e.srv)
	e.f = newFanOutFixture(t, nq, nc)
	e.ref = filepath.Join(e.f.dir, "ref")
	if code, log := run(t, e.f.fanOutArgs(e.f.store, e.ref)...); code != 0 {
		t.Fatalf("single-process reference run: exit %d\n%s", code, log)
	}
	return e
}

// uploadedOnce checks that want shard objects were uploaded, each by one PUT.
func (e *fanOutEnv) uploadedOnce(t *testing.T, want int) map[string]int {
	t.Helper()
	puts := e.px.Puts(".kvs")
	if len(puts) != want {
		t.Errorf("%d shard objects uploaded, want one per chunk (%d)", len(puts), want)
	}
	for k, n := range puts {
		if n != 1 {
			t.Errorf("%s uploaded %d times", k, n)
		}
	}
	return puts
}

// scriptEnv lets a script run this test binary as "$CACHECLIP" (TestMain)
// and returns the absolute path of an example under examples/.
func scriptEnv(t *testing.T, example string) (path string, env []string) {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("..", "..", "examples", example))
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return path, []string{"CACHECLIP=" + self, "CACHECLIP_TEST_ARGV=1"}
}

// worker starts the test binary as a cacheclip process.
func worker(t *testing.T, env []string, args []string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), env...), "CACHECLIP_TEST_MAIN="+strings.Join(args, "\x1f"))
	var logb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logb, &logb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &logb
}

func sameAnswers(t *testing.T, got, want map[string]outRow) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for id, w := range want {
		g, ok := got[id]
		switch {
		case !ok:
			t.Fatalf("query_id %s missing", id)
		case g.Status != w.Status || g.Status != string(jobs.StatusOK):
			t.Fatalf("query_id %s: status %s (%v), reference %s", id, g.Status, deref(g.Error), w.Status)
		case deref(g.Answer) != deref(w.Answer):
			t.Fatalf("query_id %s: answer %q, single-worker run %q", id, deref(g.Answer), deref(w.Answer))
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// Four worker processes share one S3 store: every chunk's shard is built and
// uploaded exactly once, the merged dataset equals a single-worker run per
// query_id, and _SUCCESS appears once all four shards finished.
func TestS3FanOutBuildsEachShardOnce(t *testing.T) {
	const nq, nc = 600, 400
	e := newFanOutEnv(t, nq, nc)
	srv, px, f, ref := e.srv, e.px, e.f, e.ref
	out := filepath.Join(f.dir, "out")
	var wg sync.WaitGroup
	logs := make([]*bytes.Buffer, 4)
	errs := make([]error, 4)
	for i := range 4 {
		cmd, lb := worker(t, srv.Env(px.URL), f.fanOutArgs("s3://shards/team/qwen", out, "--shard", fmt.Sprintf("%d/4", i),
			"--store-cache", filepath.Join(f.dir, fmt.Sprintf("tier%d", i)), "--log-format", "json"))
		logs[i] = lb
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = cmd.Wait() }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v\n%s", i, err, logs[i])
		}
	}
	puts := e.uploadedOnce(t, nc)
	// The workers' own counters (summed in the merged stats.json) agree.
	c := readCounters(t, out)
	built, downloads := c["shards_built"], c["shard_downloads"]
	if built != nc {
		t.Errorf("workers report %d shards built, want %d", built, nc)
	}
	t.Logf("%d shard objects, %d builds, %d downloads across 4 workers", len(puts), built, downloads)
	if _, err := os.Stat(filepath.Join(out, jobs.SuccessFile)); err != nil {
		t.Fatalf("no _SUCCESS after all four shards: %v", err)
	}
	sameAnswers(t, readOut(t, out), readOut(t, ref))
	if code, log := run(t, "stats", out); code != 0 || !strings.Contains(log, fmt.Sprint(nq)) {
		t.Fatalf("cacheclip stats: exit %d\n%s", code, log)
	}
}

// A worker killed with SIGKILL half way through a shard upload leaves no
// object (partial or whole) behind it; the rerun completes with every row
// once and the single-worker answers.
func TestS3KillMidUpload(t *testing.T) {
	e := newFanOutEnv(t, 80, 40)
	srv, px, f, ref := e.srv, e.px, e.f, e.ref
	out := filepath.Join(f.dir, "out")
	tier := filepath.Join(f.dir, "tier")
	args := f.fanOutArgs("s3://shards/k", out, "--store-cache", tier)
	hit, release := px.StallPut(".kvs", 12)
	defer release()
	cmd, logb := worker(t, srv.Env(px.URL), args)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var stalled string
	select {
	case stalled = <-hit:
	case err := <-done:
		t.Fatalf("worker ended before any upload: %v\n%s", err, logb)
	case <-time.After(2 * time.Minute):
		t.Fatal("no shard upload within 2 minutes")
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
	release() // the proxy now aborts the half-sent request to the server
	time.Sleep(200 * time.Millisecond)
	// The interrupted object: neither visible nor on the backend's disk.
	obj := strings.TrimPrefix(stalled, "/shards/")
	if _, err := os.Stat(filepath.Join(srv.Root, "shards", obj)); err == nil {
		t.Fatalf("%s exists after its upload was killed half way", obj)
	}
	// Uploads run concurrently, so the 12 PUTs let through before the stalled
	// one may not all have finished at the kill: what must be in the store,
	// whole, is every shard whose PUT the server accepted.
	accepted := len(px.Puts(".kvs"))
	if accepted == 0 {
		t.Fatal("no shard upload was accepted before the kill")
	}
	if n := verifyAll(t, srv, "s3://shards/k"); n < accepted {
		t.Fatalf("%d complete shards in the store at the kill, want the %d whose upload the server accepted", n, accepted)
	} else {
		t.Logf("killed mid-upload of %s; %d complete shards before the kill (%d uploads accepted)", obj, n, accepted)
	}
	cmd, logb = worker(t, srv.Env(px.URL), args)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("rerun: %v\n%s", err, logb)
	}
	sameAnswers(t, readOut(t, out), readOut(t, ref)) // readOut fails on a duplicated query_id
	if _, err := os.Stat(filepath.Join(srv.Root, "shards", obj)); err != nil {
		t.Fatalf("the rerun did not upload %s: %v", obj, err)
	}
	if n := verifyAll(t, srv, "s3://shards/k"); n != 40 {
		t.Fatalf("%d shards in the store after the rerun, want 40", n)
	}
}

// readCounters reads the counters of a dataset's merged stats.json.
func readCounters(t *testing.T, out string) map[string]int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, jobs.StatsFile))
	if err != nil {
		t.Fatalf("merged stats: %v", err)
	}
	var st struct {
		Counters map[string]int64 `json:"counters"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st.Counters
}

// verifyAll downloads and checks every shard under url; any damage fails.
func verifyAll(t *testing.T, srv *s3test.Server, url string) int {
	t.Helper()
	st, err := s3store.Open(context.Background(), url, s3store.Options{Config: srv.Config(srv.Endpoint), CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rep, err := st.Verify(context.Background(), nil, false, 2, nil)
	if err != nil {
		t.Fatalf("verify %s: %v (%+v)", url, err, rep.Damaged)
	}
	return rep.Checked
}

// shards build/verify/inspect/gc on an s3:// store, and a flipped bit in a
// remote shard: verify names the object; a read-only job fails exactly the
// rows that need it, naming the cause; a write-through job rebuilds and
// replaces it and answers every row as the reference does.
func TestS3ShardsCommandsAndBitFlip(t *testing.T) {
	const nq, nc = 30, 20
	e := newFanOutEnv(t, nq, nc)
	f := e.f
	for _, kv := range e.srv.Env(e.px.URL) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	const store = "s3://shards/cli"
	tier := func(name string) string { return filepath.Join(f.dir, "tier-"+name) }
	if code, log := run(t, "shards", "build", "--store", store, "--store-cache", tier("build"), "--corpus", f.corpus, "--model", f.primary); code != 0 {
		t.Fatalf("shards build: exit %d\n%s", code, log)
	}
	if n := len(e.px.Puts(".kvs")); n != nc+1 { // the chunks and the prefix's own shard
		t.Fatalf("%d shard objects after build, want %d", n, nc+1)
	}
	if code, log := run(t, "shards", "verify", "--store", store, "--store-cache", tier("v1"), "--model", f.primary); code != 0 || !strings.Contains(log, fmt.Sprintf("checked %d shards", nc+1)) {
		t.Fatalf("shards verify: exit %d\n%s", code, log)
	}
	ro := filepath.Join(f.dir, "ro")
	if code, log := run(t, f.fanOutArgs(store, ro, "--store-cache", tier("ro0"), "--write-through=false")...); code != 0 {
		t.Fatalf("read-only run before the flip: exit %d\n%s", code, log)
	}
	// Damage one object the job downloaded (so not the prefix's own shard).
	used, _ := filepath.Glob(filepath.Join(tier("ro0"), "*", "*", "*.kvs"))
	if len(used) == 0 {
		t.Fatal("the read-only run downloaded no shard")
	}
	key := strings.TrimSuffix(filepath.Base(used[0]), ".kvs")
	victim := filepath.Join(e.srv.Root, "shards", "cli", key[0:2], key[2:4], key+".kvs")
	b, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-40] ^= 0x04
	if err := os.WriteFile(victim, b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, log := run(t, "shards", "verify", "--store", store, "--store-cache", tier("v2"), "--quarantine=false")
	if code != 1 || !strings.Contains(log, "DAMAGED "+key) || !strings.Contains(log, "s3://shards/cli/") {
		t.Fatalf("verify after the flip: exit %d, want 1 naming %s\n%s", code, key, log)
	}
	out := filepath.Join(f.dir, "ro2")
	code, log = run(t, f.fanOutArgs(store, out, "--store-cache", tier("ro1"), "--write-through=false", "--max-errors", "90%")...)
	rows := readOut(t, out)
	var failed int
	for id, r := range rows {
		if r.Status == "ok" {
			continue
		}
		failed++
		if msg := deref(r.Error); !strings.Contains(msg, "damaged") || !strings.Contains(msg, key) {
			t.Errorf("row %s failed with %q; want the damaged shard %s named", id, msg, key)
		}
	}
	if code != 3 || failed == 0 || len(rows) != nq {
		t.Fatalf("read-only run over the damaged shard: exit %d, %d of %d rows failed; want exit 3 and some failures\n%s", code, failed, len(rows), log)
	}
	wt := filepath.Join(f.dir, "wt")
	if code, log := run(t, f.fanOutArgs(store, wt, "--store-cache", tier("wt"))...); code != 0 {
		t.Fatalf("write-through run over the damaged shard: exit %d\n%s", code, log)
	}
	sameAnswers(t, readOut(t, wt), readOut(t, e.ref))
	if c := readCounters(t, wt); c["shards_remote_corrupt"] != 1 || c["shards_remote_replaced"] != 1 {
		t.Errorf("write-through run counters %v: want the damaged download refused once and replaced once", c)
	}
	if code, log := run(t, "shards", "verify", "--store", store, "--store-cache", tier("v3")); code != 0 {
		t.Fatalf("verify after the rebuild: exit %d\n%s", code, log)
	}
	if code, log := run(t, "shards", "inspect", "--store", store, "--store-cache", tier("i"), key); code != 0 || !strings.Contains(log, key) {
		t.Fatalf("inspect %s: exit %d\n%s", key, code, log)
	}
	if code, log := run(t, "shards", "gc", "--store", store, "--store-cache", tier("gc"), "--dry-run", "--unused-for", "0s", "--grace", "0s"); code != 0 || !strings.Contains(log, fmt.Sprintf("would remove %d", nc+1)) {
		t.Fatalf("gc dry run: exit %d\n%s", code, log)
	}
	if code, log := run(t, "shards", "gc", "--store", store, "--store-cache", tier("gc"), "--unused-for", "0s"); code != 0 || !strings.Contains(log, "removed 0") {
		t.Fatalf("gc within the default grace period removed shards: exit %d\n%s", code, log)
	}
}

// A store that cannot be used stops the job before any work: a missing
// bucket is a bad setting (exit 2, naming it); a server that does not answer
// is an outage (exit 1, which schedulers retry).
func TestS3StoreUnusable(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "shards")
	f := newJobFixture(t, 3)
	closed := "http://127.0.0.1:1" // nothing listens on port 1
	for _, tc := range []struct {
		name, endpoint, store string
		code                  int
		want                  string
	}{
		{"missing bucket", srv.Endpoint, "s3://nosuchbucket/kv", 2, "store s3://nosuchbucket/kv: bucket"},
		{"server down", closed, "s3://shards/kv", 1, "object store unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, kv := range srv.Env(tc.endpoint) {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			out := filepath.Join(t.TempDir(), "out")
			args := []string{"run", "--questions", f.questions, "--corpus", f.corpus, "--store", tc.store, "--store-cache", t.TempDir(),
				"--model", f.primary, "--method", "reuse", "--out", out, "--progress", "none"}
			code, log := run(t, args...)
			if code != tc.code || !strings.Contains(log, tc.want) {
				t.Fatalf("exit %d, want %d mentioning %q\n%s", code, tc.code, tc.want, log)
			}
			if parts, _ := filepath.Glob(filepath.Join(out, "part-*")); len(parts) != 0 {
				t.Fatalf("%d part files written before the store was usable", len(parts))
			}
		})
	}
}

// A worker whose object store stops answering right after the job starts
// keeps answering every question: it builds what it cannot download, keeps
// those shards in its tier and uploads them when a later run on the same
// tier ends with the server back.
func TestS3ConnectionLostMidJob(t *testing.T) {
	const nq, nc = 40, 20
	e := newFanOutEnv(t, nq, nc)
	for _, kv := range e.srv.Env(e.px.URL) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	tier := filepath.Join(e.f.dir, "tier")
	e.px.DownAfter(3) // the bucket check and the two probe writes
	out := filepath.Join(e.f.dir, "out")
	if code, log := run(t, e.f.fanOutArgs("s3://shards/lost", out, "--store-cache", tier)...); code != 0 {
		t.Fatalf("run with the store gone: exit %d\n%s", code, log)
	}
	sameAnswers(t, readOut(t, out), readOut(t, e.ref))
	c := readCounters(t, out)
	if c["shards_built"] != nc || c["shard_uploads"] != 0 || c["shard_uploads_pending"] != nc {
		t.Fatalf("counters %v: want %d shards built locally and pending, none uploaded", c, nc)
	}
	pending, _ := os.ReadDir(filepath.Join(tier, "pending"))
	if len(pending) != nc {
		t.Fatalf("%d pending marks in the tier, want %d", len(pending), nc)
	}
	e.px.SetDown(false)
	out2 := filepath.Join(e.f.dir, "out2")
	if code, log := run(t, e.f.fanOutArgs("s3://shards/lost", out2, "--store-cache", tier)...); code != 0 {
		t.Fatalf("rerun with the store back: exit %d\n%s", code, log)
	}
	sameAnswers(t, readOut(t, out2), readOut(t, e.ref))
	e.uploadedOnce(t, nc)
	if pending, _ := os.ReadDir(filepath.Join(tier, "pending")); len(pending) != 0 {
		t.Fatalf("%d shards still pending after the server came back", len(pending))
	}
	if n := verifyAll(t, e.srv, "s3://shards/lost"); n != nc {
		t.Fatalf("%d shards in the store, want %d", n, nc)
	}
}

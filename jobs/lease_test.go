package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"cacheclip/internal/proc"
)

// Child-process mode: the test binary re-executes itself as a writer of one
// shard (real processes, so that SIGKILL and SIGSTOP hit a real lease holder).
const (
	envChild     = "CACHECLIP_JOBS_CHILD"
	envChildQ    = "CACHECLIP_JOBS_CHILD_QUESTIONS"
	envChildOut  = "CACHECLIP_JOBS_CHILD_OUT"
	envChildWait = "CACHECLIP_JOBS_CHILD_ROW_DELAY"
	envChildTTL  = "CACHECLIP_JOBS_CHILD_LEASE"
)

func TestMain(m *testing.M) {
	switch os.Getenv(envChild) {
	case "":
	case "scan":
		os.Exit(runScanChild())
	default:
		os.Exit(runWriterChild())
	}
	os.Exit(m.Run())
}

// runWriterChild answers every question of the file with fakeResult, one row
// per delay, committing every 4 rows, and exits with the job's exit code.
func runWriterChild() int {
	ctx := context.Background()
	delay, _ := time.ParseDuration(os.Getenv(envChildWait))
	ttl, _ := time.ParseDuration(os.Getenv(envChildTTL))
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	budget := ErrorBudget{Fraction: 0.5, IsFraction: true}
	r, err := OpenQuestions(os.Getenv(envChildQ), QuestionsOptions{BatchSize: 16})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return int(ExitBadConfig)
	}
	defer r.Close()
	o, err := OpenOutput(ctx, OutputOptions{Dir: os.Getenv(envChildOut), Passthrough: r.PassthroughFields(), PartRows: 4,
		Logger: log, MaxErrors: &budget, LeaseTimeout: ttl})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return int(ExitCodeOf(err, false, nil, budget))
	}
	fmt.Fprintln(os.Stderr, "lease acquired")
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, err)
		o.Close()
		return int(ExitCodeOf(err, false, nil, budget))
	}
	for {
		b, rerr := r.Next(ctx)
		for i := range b {
			if o.Committed(b[i].QueryID) {
				continue
			}
			time.Sleep(delay)
			if err := o.Write(ctx, fakeResult(&b[i])); err != nil {
				return fail(err)
			}
		}
		if rerr != nil {
			break
		}
	}
	st, err := o.Finish(ctx)
	if err != nil {
		return fail(err)
	}
	return int(ExitCodeOf(nil, false, &st, budget))
}

// done is a writer's exit code when it completes the shard: fakeResult fails
// every 10th row, within the child's budget.
const done = int(ExitPartial)

type child struct {
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan struct{}
	code int
}

func startWriter(t *testing.T, qpath, out string, delay, lease time.Duration) *child {
	t.Helper()
	c := &child{log: &bytes.Buffer{}, done: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(os.Environ(), envChild+"=1", envChildQ+"="+qpath, envChildOut+"="+out,
		envChildWait+"="+delay.String(), envChildTTL+"="+lease.String())
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.cmd.Wait()
		c.code = c.cmd.ProcessState.ExitCode()
		if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			c.code = -int(ws.Signal())
		}
		close(c.done)
	}()
	t.Cleanup(func() {
		c.cmd.Process.Signal(syscall.SIGCONT)
		c.cmd.Process.Kill()
		<-c.done
	})
	return c
}

func (c *child) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case <-c.done:
		return c.code
	case <-time.After(limit):
		t.Fatalf("writer %d still running after %v\n%s", c.cmd.Process.Pid, limit, c.log)
		return 0
	}
}

// committedRows is the number of rows the shard's manifest lists.
func committedRows(out string) int64 {
	b, err := os.ReadFile(filepath.Join(out, ManifestName(Partition{})))
	if err != nil {
		return 0
	}
	var m Manifest
	if json.Unmarshal(b, &m) != nil {
		return 0
	}
	var n int64
	for _, p := range m.Parts {
		n += p.Rows
	}
	return n
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkDataset asserts that the dataset holds every question exactly once
// with the answer fakeResult gives it (readDataset fails on a duplicate).
func checkDataset(t *testing.T, out string, n int) {
	t.Helper()
	got := readDataset(t, out)
	if len(got) != n {
		t.Fatalf("dataset has %d rows, want %d", len(got), n)
	}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("q%05d", i)
		r, ok := got[id]
		switch {
		case !ok:
			t.Errorf("%s missing", id)
		case i%10 == 9:
			if r.Status != "error" {
				t.Errorf("%s: status %s, want error", id, r.Status)
			}
		case r.Answer == nil || *r.Answer != fmt.Sprintf("A:question %d?", i):
			t.Errorf("%s: answer %v", id, r.Answer)
		}
	}
	if _, err := os.Stat(filepath.Join(out, SuccessFile)); err != nil {
		t.Error("no _SUCCESS")
	}
}

func TestLeaseTwoWritersStartedTogether(t *testing.T) {
	dir := t.TempDir()
	q := makeQuestions(t, dir, 40)
	out := filepath.Join(dir, "out")
	os.MkdirAll(out, 0o755)
	a := startWriter(t, q, out, 20*time.Millisecond, 2*time.Second)
	b := startWriter(t, q, out, 20*time.Millisecond, 2*time.Second)
	ca, cb := a.wait(t, time.Minute), b.wait(t, time.Minute)
	// One wins; the other refuses at once, naming the holder.
	codes := []int{ca, cb}
	loser := b
	if cb == done {
		loser = a
	}
	if !(ca == done && cb == int(ExitLeaseHeld) || cb == done && ca == int(ExitLeaseHeld)) {
		t.Fatalf("exit codes %v, want one %d and one %d\nA:\n%s\nB:\n%s", codes, done, ExitLeaseHeld, a.log, b.log)
	}
	if !strings.Contains(loser.log.String(), "is held by pid ") {
		t.Errorf("refusal does not name the holder:\n%s", loser.log)
	}
	if strings.Contains(loser.log.String(), "lease acquired") {
		t.Errorf("the refused writer started work:\n%s", loser.log)
	}
	checkDataset(t, out, 40)
}

func TestLeaseHolderKilled(t *testing.T) {
	dir := t.TempDir()
	q := makeQuestions(t, dir, 40)
	out := filepath.Join(dir, "out")
	a := startWriter(t, q, out, 30*time.Millisecond, 2*time.Second)
	waitFor(t, "a committed part", 30*time.Second, func() bool { return committedRows(out) >= 4 })
	a.cmd.Process.Signal(syscall.SIGKILL)
	a.wait(t, 10*time.Second)
	// Same host, pid gone: the next writer takes the lease over without
	// waiting for the timeout.
	if _, err := os.Stat(filepath.Join(out, LeaseName(Partition{}))); err != nil {
		t.Fatal("the killed holder's lease file is gone; the test needs it left behind")
	}
	t0 := time.Now()
	b := startWriter(t, q, out, 0, time.Hour)
	if code := b.wait(t, time.Minute); code != done {
		t.Fatalf("writer after a killed holder: exit %d\n%s", code, b.log)
	}
	if !strings.Contains(b.log.String(), "taking over a stale lease") || !strings.Contains(b.log.String(), "is gone") {
		t.Errorf("no takeover logged:\n%s", b.log)
	}
	if el := time.Since(t0); el > 30*time.Second {
		t.Errorf("takeover took %v", el)
	}
	checkDataset(t, out, 40)
}

// A holder that hangs (SIGSTOP) keeps its lease until the heartbeat is older
// than the timeout; then another writer takes over, and the old holder, once
// resumed, must notice and stop before committing anything.
func TestLeaseHolderStoppedIsFenced(t *testing.T) {
	dir := t.TempDir()
	q := makeQuestions(t, dir, 40)
	out := filepath.Join(dir, "out")
	const ttl = 2 * time.Second
	a := startWriter(t, q, out, 40*time.Millisecond, ttl)
	waitFor(t, "a committed part", 30*time.Second, func() bool { return committedRows(out) >= 4 })
	a.cmd.Process.Signal(syscall.SIGSTOP)
	stoppedAt := committedRows(out)

	// At once: the holder is alive and its heartbeat fresh.
	b := startWriter(t, q, out, 0, ttl)
	if code := b.wait(t, 30*time.Second); code != int(ExitLeaseHeld) {
		t.Fatalf("second writer while the holder is paused: exit %d, want %d\n%s", code, ExitLeaseHeld, b.log)
	}
	if want := fmt.Sprintf("is held by pid %d", a.cmd.Process.Pid); !strings.Contains(b.log.String(), want) {
		t.Errorf("refusal does not say %q:\n%s", want, b.log)
	}

	time.Sleep(ttl + 300*time.Millisecond)
	c := startWriter(t, q, out, 0, ttl)
	if code := c.wait(t, time.Minute); code != done {
		t.Fatalf("writer after the heartbeat went stale: exit %d\n%s", code, c.log)
	}
	if !strings.Contains(c.log.String(), "no heartbeat for") {
		t.Errorf("takeover reason not logged:\n%s", c.log)
	}
	checkDataset(t, out, 40)
	before := snapshot(t, out)

	a.cmd.Process.Signal(syscall.SIGCONT)
	if code := a.wait(t, 30*time.Second); code != int(ExitLeaseHeld) {
		t.Fatalf("resumed old holder: exit %d, want %d\n%s", code, ExitLeaseHeld, a.log)
	}
	if !strings.Contains(a.log.String(), "lease") {
		t.Errorf("old holder does not say it lost the lease:\n%s", a.log)
	}
	if after := snapshot(t, out); after != before {
		t.Errorf("the resumed old holder changed the dataset (it had committed %d rows when stopped)\nbefore: %s\nafter:  %s", stoppedAt, before, after)
	}
	checkDataset(t, out, 40)
}

// snapshot lists the dataset's committed files with sizes and the manifest.
func snapshot(t *testing.T, out string) string {
	t.Helper()
	es, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range es {
		if strings.HasPrefix(e.Name(), "part-") || strings.HasPrefix(e.Name(), "_manifest") || e.Name() == SuccessFile {
			info, _ := e.Info()
			fmt.Fprintf(&b, "%s:%d ", e.Name(), info.Size())
		}
	}
	m, _ := os.ReadFile(filepath.Join(out, ManifestName(Partition{})))
	return b.String() + strconv.Itoa(len(m))
}

func TestLeaseOtherHost(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, LeaseName(Partition{}))
	other := LeaseInfo{ID: proc.ID{Host: "elsewhere", PID: 1}, Token: "x", Started: time.Now().UTC(), TimeoutS: 1}
	b, _ := json.Marshal(other)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// Fresh heartbeat of a process this host cannot check: held.
	_, err := AcquireLease(dir, Partition{}, time.Second, quiet)
	var held *LeaseHeldError
	if !errors.As(err, &held) || held.Holder.Host != "elsewhere" || ExitCodeOf(err, false, nil, ErrorBudget{}) != ExitLeaseHeld {
		t.Fatalf("fresh lease of another host: %v", err)
	}
	if !strings.Contains(err.Error(), "pid 1 on elsewhere") {
		t.Errorf("error does not name the holder: %v", err)
	}
	// Heartbeat older than the timeout: taken over.
	old := time.Now().Add(-2 * time.Second)
	os.Chtimes(path, old, old)
	l, err := AcquireLease(dir, Partition{}, time.Second, quiet)
	if err != nil {
		t.Fatalf("stale lease of another host: %v", err)
	}
	info, _, _ := readLease(path)
	if info.PID != os.Getpid() {
		t.Errorf("lease after takeover: %+v", info)
	}
	l.Release()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Error("released lease file left behind")
	}
}

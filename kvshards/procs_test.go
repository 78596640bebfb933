package kvshards_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"cacheclip/kernels"
	"cacheclip/kvshards"
	"cacheclip/kvshards/kvtest"
	"cacheclip/kvshards/shardcmd"
)

// Child-process modes: the test binary re-executes itself as a builder.
const (
	envMode  = "KVSHARDS_TEST_CHILD"
	envStore = "KVSHARDS_TEST_STORE"
	envRows  = "KVSHARDS_TEST_ROWS"
)

var testPrefix = []int32{7, 7, 7, 1, 2}

func childComputer() *kvtest.Computer { return kvtest.New(11, 2, 2, 16) }

func TestMain(m *testing.M) {
	if mode := os.Getenv(envMode); mode != "" {
		os.Exit(runChild(mode))
	}
	os.Exit(m.Run())
}

// runChild builds envRows chunks into envStore. In "crash" mode the fifth
// shard write stops half way, announces itself with a marker file and waits to
// be killed; in "build" mode it prints its BuildResult as JSON.
func runChild(mode string) int {
	dir := os.Getenv(envStore)
	rows, _ := strconv.Atoi(os.Getenv(envRows))
	o := kvshards.DefaultOptions()
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := kvshards.OpenStore(dir, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c := childComputer()
	workers := 1
	if mode == "crash" {
		writes := 0
		kvshards.SetWriteHook(s, func(tmp string) {
			writes++
			if writes == 5 {
				os.WriteFile(filepath.Join(dir, "child-mid-write"), []byte(tmp), 0o644)
				time.Sleep(time.Hour)
			}
		})
	} else {
		c.Delay = 3 * time.Millisecond
		workers = 2
	}
	res, err := shardcmd.Build(context.Background(), shardcmd.BuildOptions{Store: s, Computer: c,
		Source: kvtest.NewSource(rows, 12), Tokenize: kvtest.Tokenize, Prefix: testPrefix, Workers: workers})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

func child(t *testing.T, mode, dir string, rows int) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envMode+"="+mode, envStore+"="+dir, envRows+"="+strconv.Itoa(rows))
	cmd.Stderr = os.Stderr
	return cmd
}

func quietStore(t *testing.T, dir string) *kvshards.Store {
	o := kvshards.DefaultOptions()
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := kvshards.OpenStore(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestCrashMidWriteLeavesStoreValid(t *testing.T) {
	dir := t.TempDir()
	const rows = 20
	cmd := child(t, "crash", dir, rows)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "child-mid-write")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("builder never reached the fifth write")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	tmp, _ := os.ReadFile(marker)
	os.Remove(marker)
	if fi, err := os.Stat(string(tmp)); err != nil || fi.Size() == 0 {
		t.Fatalf("expected the killed builder's half-written temp file at %s: %v", tmp, err)
	}

	s := quietStore(t, dir)
	ctx := context.Background()
	rep, err := shardcmd.Verify(ctx, s, shardcmd.VerifyOptions{})
	if err != nil || rep.Checked != 4 || rep.Leftovers != 2 { // prefix + 3 chunks; the temp file and its lock
		t.Fatalf("after the crash: verify %+v, %v; want 4 intact shards and 2 leftovers", rep, err)
	}

	c := childComputer()
	res, err := shardcmd.Build(ctx, shardcmd.BuildOptions{Store: s, Computer: c, Source: kvtest.NewSource(rows, 12),
		Tokenize: kvtest.Tokenize, Prefix: testPrefix, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Built != rows-3 || res.Skipped != 4 || c.Calls.Load() != rows-3 {
		t.Fatalf("resumed build: %+v with %d computations; want %d built, 4 skipped", res, c.Calls.Load(), rows-3)
	}
	gc, err := shardcmd.GC(ctx, s, liveSet(t, c, rows), false)
	if err != nil || gc.Removed != 0 || gc.Leftovers != 1 || gc.Kept != rows+1 {
		t.Fatalf("gc after resume: %+v, %v; want the dead builder's temp file removed and %d shards kept", gc, err, rows+1)
	}
	rep, err = shardcmd.Verify(ctx, s, shardcmd.VerifyOptions{Fingerprint: ptr(c.Fingerprint())})
	if err != nil || rep.Checked != rows+1 || rep.Leftovers != 0 {
		t.Fatalf("final verify: %+v, %v", rep, err)
	}
	assertContents(t, s, c, rows)
}

func ptr[T any](v T) *T { return &v }

func liveSet(t *testing.T, c *kvtest.Computer, rows int) map[kvshards.Key]struct{} {
	live, err := shardcmd.LiveKeys(context.Background(), c.Fingerprint(), testPrefix, kvtest.NewSource(rows, 12), kvtest.Tokenize)
	if err != nil {
		t.Fatal(err)
	}
	return live
}

// assertContents compares every stored chunk with a fresh computation.
func assertContents(t *testing.T, s *kvshards.Store, c *kvtest.Computer, rows int) {
	t.Helper()
	ctx := context.Background()
	src := kvtest.NewSource(rows, 12)
	for {
		_, text, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		toks, _ := kvtest.Tokenize(text)
		got, err := s.Load(ctx, kvshards.KeyOf(c.Fingerprint(), testPrefix, toks), kvshards.ExpectFor(c, testPrefix))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := c.ComputeChunk(ctx, testPrefix, toks)
		for l := range want.Layers {
			for i := range want.K[l] {
				if !withinBound(kernels.BF16, want.K[l][i], got.K[l][i]) || !withinBound(kernels.BF16, want.V[l][i], got.V[l][i]) {
					t.Fatalf("chunk %v layer %d elem %d differs from a fresh computation", toks[:2], l, i)
				}
			}
		}
	}
}

func TestTwoBuilderProcessesShareOneStore(t *testing.T) {
	dir := t.TempDir()
	const rows = 40
	var outs [2]strings.Builder
	var cmds [2]*exec.Cmd
	for i := range cmds {
		cmds[i] = child(t, "build", dir, rows)
		cmds[i].Stdout = &outs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	built := 0
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("builder %d: %v", i, err)
		}
		var r shardcmd.BuildResult
		if err := json.Unmarshal([]byte(outs[i].String()), &r); err != nil {
			t.Fatalf("builder %d output %q: %v", i, outs[i].String(), err)
		}
		if r.Chunks != rows {
			t.Fatalf("builder %d handled %d chunks, want %d", i, r.Chunks, rows)
		}
		built += r.Built
	}
	if built != rows+1 {
		t.Fatalf("the two builders computed %d shards between them, want exactly %d (no duplicate work)", built, rows+1)
	}
	s := quietStore(t, dir)
	c := childComputer()
	rep, err := shardcmd.Verify(context.Background(), s, shardcmd.VerifyOptions{Fingerprint: ptr(c.Fingerprint())})
	if err != nil || rep.Checked != rows+1 || rep.Leftovers != 0 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	assertContents(t, s, c, rows)
}

package shardcmd_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"cacheclip/kvshards"
	"cacheclip/kvshards/kvtest"
	"cacheclip/kvshards/shardcmd"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func store(t *testing.T) *kvshards.Store {
	t.Helper()
	o := kvshards.DefaultOptions()
	o.NoSync, o.Logger = true, quiet
	s, err := kvshards.OpenStore(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type prog struct {
	mu           sync.Mutex
	added, total int64
}

func (p *prog) Add(n int)            { p.mu.Lock(); p.added += int64(n); p.mu.Unlock() }
func (p *prog) SetTotal(total int64) { p.total = total }

var prefix = []int32{1, 2, 3}

func build(t *testing.T, s *kvshards.Store, c *kvtest.Computer, rows int, p shardcmd.Progress, out io.Writer) (shardcmd.BuildResult, error) {
	return shardcmd.Build(context.Background(), shardcmd.BuildOptions{Store: s, Computer: c, Source: kvtest.NewSource(rows, 8),
		Tokenize: kvtest.Tokenize, Prefix: prefix, Workers: 3, Progress: p, Out: out, Logger: quiet})
}

func TestBuildIsResumable(t *testing.T) {
	s := store(t)
	c := kvtest.New(1, 2, 1, 8)
	var p prog
	var out bytes.Buffer
	r, err := build(t, s, c, 10, &p, &out)
	if err != nil || r.Chunks != 10 || r.Built != 11 || r.Skipped != 0 || r.BytesWritten <= 0 {
		t.Fatalf("first build: %+v, %v", r, err)
	}
	if p.total != 10 || p.added != 10 {
		t.Fatalf("progress total %d added %d, want 10/10", p.total, p.added)
	}
	if !strings.Contains(out.String(), "chunks/s") || !strings.Contains(out.String(), "written") {
		t.Fatalf("summary %q lacks the rate or bytes written", out.String())
	}
	// Growing the corpus: only the new rows are computed.
	r, err = build(t, s, c, 15, nil, nil)
	if err != nil || r.Built != 5 || r.Skipped != 11 || c.Calls.Load() != 16 {
		t.Fatalf("second build: %+v, %d computations, %v", r, c.Calls.Load(), err)
	}
	if !s.Has(kvshards.PrefixKey(c.Fingerprint(), prefix)) {
		t.Fatal("the prefix's own shard was not stored")
	}
}

type badSource struct{ n int }

func (b *badSource) Next(ctx context.Context) (string, string, error) {
	b.n++
	if b.n == 3 {
		return "", "", errors.New("parquet page checksum")
	}
	return "r", "5 6 7", nil
}

func TestBuildReportsFailures(t *testing.T) {
	ctx := context.Background()
	c := kvtest.New(1, 1, 1, 4)
	for _, tc := range []struct {
		name string
		o    shardcmd.BuildOptions
		want string
	}{
		{"source error", shardcmd.BuildOptions{Source: &badSource{}, Tokenize: kvtest.Tokenize}, "read chunk 2: parquet page checksum"},
		{"tokenizer error", shardcmd.BuildOptions{Source: &kvtest.Source{IDs: []string{"row-a"}, Texts: []string{"1 x"}}, Tokenize: kvtest.Tokenize}, `chunk "row-a"`},
		{"missing tokenizer", shardcmd.BuildOptions{Source: kvtest.NewSource(1, 2)}, "required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Store, tc.o.Computer, tc.o.Logger = store(t), c, quiet
			if _, err := shardcmd.Build(ctx, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestVerifyFindsDamageAndWrongModel(t *testing.T) {
	ctx := context.Background()
	s := store(t)
	c := kvtest.New(1, 2, 1, 8)
	if _, err := build(t, s, c, 6, nil, nil); err != nil {
		t.Fatal(err)
	}
	rep, err := shardcmd.Verify(ctx, s, shardcmd.VerifyOptions{Workers: 2})
	if err != nil || rep.Checked != 7 || len(rep.Damaged) != 0 {
		t.Fatalf("clean store: %+v, %v", rep, err)
	}
	other := kvtest.New(2, 2, 1, 8).Fingerprint()
	rep, err = shardcmd.Verify(ctx, s, shardcmd.VerifyOptions{Fingerprint: &other})
	if !errors.Is(err, shardcmd.ErrDamaged) || len(rep.Damaged) != 7 || !errors.Is(rep.Damaged[0].Err, kvshards.ErrMismatch) {
		t.Fatalf("wrong model: %+v, %v", rep, err)
	}
	k := kvshards.KeyOf(c.Fingerprint(), prefix, []int32{1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007})
	path := s.Path(k)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-3] ^= 0x40
	os.WriteFile(path, data, 0o644)
	rep, err = shardcmd.Verify(ctx, s, shardcmd.VerifyOptions{Quarantine: true})
	if !errors.Is(err, shardcmd.ErrDamaged) || len(rep.Damaged) != 1 || rep.Damaged[0].Key != k || !strings.Contains(err.Error(), path) {
		t.Fatalf("flipped byte: %+v, %v", rep, err)
	}
	if q := rep.Damaged[0].Quarantined; q == "" || !strings.HasPrefix(q, filepath.Join(s.Dir(), "quarantine")) {
		t.Fatalf("not quarantined: %q", q)
	}
	if rep, err := shardcmd.Verify(ctx, s, shardcmd.VerifyOptions{}); err != nil || rep.Checked != 6 {
		t.Fatalf("after quarantine: %+v, %v", rep, err)
	}
}

func TestInspect(t *testing.T) {
	s := store(t)
	c := kvtest.New(1, 3, 2, 4)
	if _, err := build(t, s, c, 1, nil, nil); err != nil {
		t.Fatal(err)
	}
	k := kvshards.KeyOf(c.Fingerprint(), prefix, []int32{1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007})
	pk := kvshards.PrefixKey(c.Fingerprint(), prefix)
	for _, tc := range []struct {
		name, arg string
		want      []string
	}{
		{"by key", k.String(), []string{k.String(), "3 × 2 × 4", "bf16", "8 at positions 3..10", "OK", "1000 1001"}},
		{"by path", s.Path(k), []string{"format version", "128 bytes each, 6 blocks", "header  ", "256 bytes"}},
		{"prefix shard", pk.String(), []string{"empty prefix", "3 at positions 0..2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := shardcmd.Inspect(&out, s, tc.arg); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
	data, _ := os.ReadFile(s.Path(k))
	data[300] ^= 1
	os.WriteFile(s.Path(k), data, 0o644)
	var out bytes.Buffer
	if err := shardcmd.Inspect(&out, s, k.String()); err == nil || !strings.Contains(out.String(), "DAMAGED") {
		t.Fatalf("damaged shard inspected as fine: %v\n%s", err, out.String())
	}
	if err := shardcmd.Inspect(&out, s, "not-a-key"); err == nil {
		t.Fatal("bad argument accepted")
	}
}

func TestGC(t *testing.T) {
	ctx := context.Background()
	s := store(t)
	c := kvtest.New(1, 1, 1, 4)
	if _, err := build(t, s, c, 10, nil, nil); err != nil {
		t.Fatal(err)
	}
	live, err := shardcmd.LiveKeys(ctx, c.Fingerprint(), prefix, kvtest.NewSource(6, 8), kvtest.Tokenize)
	if err != nil || len(live) != 7 {
		t.Fatalf("live keys: %d, %v", len(live), err)
	}
	dry, err := shardcmd.GC(ctx, s, live, true)
	if err != nil || dry.Removed != 4 || dry.Kept != 7 || len(dry.Sample) != 4 {
		t.Fatalf("dry run: %+v, %v", dry, err)
	}
	if rep, _ := shardcmd.Verify(ctx, s, shardcmd.VerifyOptions{}); rep.Checked != 11 {
		t.Fatalf("dry run removed shards: %d left", rep.Checked)
	}
	rep, err := shardcmd.GC(ctx, s, live, false)
	if err != nil || rep.Removed != 4 || rep.RemovedBytes <= 0 {
		t.Fatalf("gc: %+v, %v", rep, err)
	}
	r, err := build(t, s, c, 6, nil, nil)
	if err != nil || r.Built != 0 || r.Skipped != 7 {
		t.Fatalf("after gc the live corpus must still be complete: %+v, %v", r, err)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 20: "3.0 MiB", 5 << 40: "5.0 TiB"} {
		if got := shardcmd.HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// The log names where a damaged shard went, never an empty destination.
func TestVerifyLogsQuarantineDestination(t *testing.T) {
	var logb bytes.Buffer
	o := kvshards.DefaultOptions()
	o.NoSync, o.Logger = true, slog.New(slog.NewTextHandler(&logb, nil))
	s, err := kvshards.OpenStore(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	c := kvtest.New(1, 2, 1, 8)
	if _, err := build(t, s, c, 2, nil, nil); err != nil {
		t.Fatal(err)
	}
	k := kvshards.KeyOf(c.Fingerprint(), prefix, []int32{1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007})
	data, err := os.ReadFile(s.Path(k))
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-3] ^= 0x40
	os.WriteFile(s.Path(k), data, 0o644)
	rep, err := shardcmd.Verify(context.Background(), s, shardcmd.VerifyOptions{Quarantine: true})
	if !errors.Is(err, shardcmd.ErrDamaged) || len(rep.Damaged) != 1 || rep.Damaged[0].Quarantined == "" {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	l := logb.String()
	if strings.Contains(l, `quarantined=""`) {
		t.Errorf("log has an empty quarantine destination for a file that was moved:\n%s", l)
	}
	if !strings.Contains(l, "quarantined="+rep.Damaged[0].Quarantined) {
		t.Errorf("log does not name the quarantine destination %s:\n%s", rep.Damaged[0].Quarantined, l)
	}
}

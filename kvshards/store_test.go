package kvshards_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cacheclip/kernels"
	"cacheclip/kvshards"
	"cacheclip/kvshards/kvtest"
)

func quietOpts(dt kernels.DType) kvshards.Options {
	o := kvshards.DefaultOptions()
	o.DType = dt
	o.NoSync = true
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return o
}

func newStore(t *testing.T, dt kernels.DType, cache int64) *kvshards.Store {
	t.Helper()
	o := quietOpts(dt)
	o.CacheBytes = cache
	s, err := kvshards.OpenStore(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func seq(start, n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(start + i)
	}
	return out
}

// relErr bounds: round to nearest gives |y-x| ≤ u·|x| with u = 2^-8 (bf16,
// 8 significant bits) and 2^-11 (f16, 11 bits); f16 subnormals (|x| < 2^-14)
// add an absolute 2^-25.
func withinBound(dt kernels.DType, x, y float32) bool {
	d := math.Abs(float64(x) - float64(y))
	switch dt {
	case kernels.F32:
		return x == y
	case kernels.BF16:
		return d <= math.Abs(float64(x))*(1.0/256)
	default:
		return d <= math.Abs(float64(x))*(1.0/2048)+1.0/(1<<25)
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name                     string
		dt                       kernels.DType
		layers, kvh, hd, prefixN int
		chunkN                   int
	}{
		{"f32", kernels.F32, 3, 2, 8, 5, 7},
		{"f16", kernels.F16, 2, 1, 16, 0, 33},
		{"bf16", kernels.BF16, 4, 2, 4, 100, 1},
		{"bf16 odd row", kernels.BF16, 1, 3, 5, 2, 3},
		{"empty chunk", kernels.F32, 2, 1, 4, 3, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, tc.dt, 1<<20)
			c := kvtest.New(7, tc.layers, tc.kvh, tc.hd)
			prefix, chunk := seq(1, tc.prefixN), seq(500, tc.chunkN)
			h, err := s.GetOrBuild(ctx, c, prefix, chunk)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			want, _ := c.ComputeChunk(ctx, prefix, chunk)
			got, err := s.Load(ctx, h.Key(), kvshards.ExpectFor(c, prefix))
			if err != nil {
				t.Fatal(err)
			}
			if got.BasePos != int32(tc.prefixN) || !equalTokens(got.Tokens, chunk) || got.Layers != tc.layers || got.KVHeads != tc.kvh || got.HeadDim != tc.hd {
				t.Fatalf("header round trip: got base %d tokens %v dims %d/%d/%d", got.BasePos, got.Tokens, got.Layers, got.KVHeads, got.HeadDim)
			}
			for l := range tc.layers {
				for i := range want.K[l] {
					if !withinBound(tc.dt, want.K[l][i], got.K[l][i]) || !withinBound(tc.dt, want.V[l][i], got.V[l][i]) {
						t.Fatalf("layer %d elem %d: K %v→%v V %v→%v beyond the %v bound", l, i, want.K[l][i], got.K[l][i], want.V[l][i], got.V[l][i], tc.dt)
					}
				}
			}
			if k, v, ok := h.LayerF32(0); ok != (tc.dt == kernels.F32) || (ok && (len(k) != len(want.K[0]) || len(v) != len(want.V[0]))) {
				t.Fatalf("LayerF32 ok=%v for %v", ok, tc.dt)
			}
			if h.Key() != kvshards.KeyOf(c.Fingerprint(), prefix, chunk) {
				t.Fatal("key is not KeyOf(fingerprint, prefix, chunk)")
			}
		})
	}
}

func equalTokens(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestKeysDistinguishInputs(t *testing.T) {
	var fp1, fp2 [32]byte
	fp2[0] = 1
	base := kvshards.KeyOf(fp1, seq(1, 3), seq(10, 3))
	for name, k := range map[string]kvshards.Key{
		"fingerprint":           kvshards.KeyOf(fp2, seq(1, 3), seq(10, 3)),
		"prefix":                kvshards.KeyOf(fp1, seq(2, 3), seq(10, 3)),
		"chunk":                 kvshards.KeyOf(fp1, seq(1, 3), seq(11, 3)),
		"prefix/chunk boundary": kvshards.KeyOf(fp1, seq(1, 4), seq(11, 2)),
		"prefix shard":          kvshards.PrefixKey(fp1, seq(1, 3)),
	} {
		if k == base {
			t.Errorf("changing the %s does not change the key", name)
		}
	}
	if p, err := kvshards.ParseKey(base.String()); err != nil || p != base {
		t.Fatalf("ParseKey(String()) = %v, %v", p, err)
	}
	if _, err := kvshards.ParseKey("zz"); err == nil {
		t.Fatal("ParseKey accepted a short key")
	}
}

// writeShard builds one shard and returns the store, computer, key and path.
func writeShard(t *testing.T, dt kernels.DType) (*kvshards.Store, *kvtest.Computer, []int32, []int32, kvshards.Key, string) {
	t.Helper()
	s := newStore(t, dt, 0)
	c := kvtest.New(3, 2, 2, 8)
	prefix, chunk := seq(1, 4), seq(100, 6)
	r, err := s.Ensure(context.Background(), c, prefix, chunk)
	if err != nil || !r.Built {
		t.Fatalf("ensure: %+v %v", r, err)
	}
	return s, c, prefix, chunk, r.Key, s.Path(r.Key)
}

func TestRefusesMismatch(t *testing.T) {
	ctx := context.Background()
	s, c, prefix, _, key, path := writeShard(t, kernels.BF16)
	good := kvshards.ExpectFor(c, prefix)
	otherModel := good
	otherModel.Fingerprint[5] ^= 1
	otherPrefix := kvshards.ExpectFor(c, seq(9, 4))
	badLayers := good
	badLayers.Layers = 3
	for _, tc := range []struct {
		name  string
		want  kvshards.Expect
		field string
	}{
		{"other model", otherModel, "model fingerprint"},
		{"other prefix", otherPrefix, "prefix hash"},
		{"other shape", badLayers, "layers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Load(ctx, key, tc.want)
			var me *kvshards.MismatchError
			if !errors.As(err, &me) || me.Field != tc.field {
				t.Fatalf("got %v, want a mismatch of %q", err, tc.field)
			}
			for _, part := range []string{key.String(), path, tc.field, "cacheclip shards build"} {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error %q does not mention %q", err, part)
				}
			}
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("a mismatched but intact shard was moved: %v", err)
			}
		})
	}
	t.Run("other version", func(t *testing.T) {
		data, _ := os.ReadFile(path)
		data[8] = 99 // version field; parsed before the header checksum
		os.WriteFile(path, data, 0o644)
		_, err := s.Load(ctx, key, good)
		var me *kvshards.MismatchError
		if !errors.As(err, &me) || me.Field != "format version" || me.Got != "99" || !strings.Contains(err.Error(), path) {
			t.Fatalf("got %v, want a format version mismatch", err)
		}
		// Write-through replaces it.
		h, err := s.GetOrBuild(ctx, c, prefix, seq(100, 6))
		if err != nil {
			t.Fatal(err)
		}
		h.Close()
	})
	t.Run("missing", func(t *testing.T) {
		_, err := s.Load(ctx, kvshards.KeyOf(c.Fingerprint(), prefix, seq(7, 1)), good)
		if !errors.Is(err, kvshards.ErrNotFound) || !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("got %v, want not found", err)
		}
	})
}

func TestDamageDetectedQuarantinedRebuilt(t *testing.T) {
	ctx := context.Background()
	_, _, _, _, _, path0 := writeShard(t, kernels.F16)
	pristine, _ := os.ReadFile(path0)
	nblocks := 1 + 2*2
	type damage struct {
		name  string
		block string
		edit  func([]byte) []byte
	}
	cases := []damage{
		{"magic", "header", func(b []byte) []byte { b[0] ^= 0xff; return b }},
		{"fingerprint byte", "header", func(b []byte) []byte { b[20] ^= 1; return b }},
		{"layers field", "header", func(b []byte) []byte { b[112] = 7; return b }},
		{"checksum table", "header", func(b []byte) []byte { b[160] ^= 4; return b }},
		{"truncated to 100", "file", func(b []byte) []byte { return b[:100] }},
		{"truncated by one", "file", func(b []byte) []byte { return b[:len(b)-1] }},
		{"empty", "file", func(b []byte) []byte { return b[:0] }},
		{"trailing byte", "header", func(b []byte) []byte { return append(b, 0) }},
	}
	for i := range nblocks {
		off, end := kvshards.BlockExtent(pristine, i)
		for _, at := range []int64{off, (off + end) / 2, end - 1} {
			cases = append(cases, damage{"flip in " + kvshards.BlockName(i), kvshards.BlockName(i), func(b []byte) []byte { b[at] ^= 0x10; return b }})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, c, prefix, chunk, key, path := writeShard(t, kernels.F16)
			data, _ := os.ReadFile(path)
			damaged := tc.edit(data)
			if err := os.WriteFile(path, damaged, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := s.Load(ctx, key, kvshards.ExpectFor(c, prefix))
			var ce *kvshards.CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("damaged shard loaded: err = %v", err)
			}
			if ce.Block != tc.block || ce.Key != key || ce.Path != path || !strings.Contains(err.Error(), key.String()) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %v: block %q key %s path %s, want block %q naming %s", err, ce.Block, ce.Key, ce.Path, tc.block, path)
			}
			if ce.Quarantined == "" || filepath.Dir(ce.Quarantined) != filepath.Join(s.Dir(), "quarantine") {
				t.Fatalf("not quarantined: %q", ce.Quarantined)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("damaged file still at %s", path)
			}
			if q, _ := os.ReadFile(ce.Quarantined); !bytes.Equal(q, damaged) {
				t.Fatalf("quarantined file holds %d bytes, not the %d damaged ones", len(q), len(damaged))
			}
			calls := c.Calls.Load()
			h, err := s.GetOrBuild(ctx, c, prefix, chunk)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			if c.Calls.Load() != calls+1 {
				t.Fatalf("GetOrBuild did not rebuild (calls %d → %d)", calls, c.Calls.Load())
			}
			if st := s.Stats(); st.Corrupt != 1 {
				t.Fatalf("stats count %d corrupt shards, want 1", st.Corrupt)
			}
		})
	}
}

func TestVerifyOncePerProcess(t *testing.T) {
	ctx := context.Background()
	o := quietOpts(kernels.F32)
	o.Verify = kvshards.VerifyOncePerProcess
	o.CacheBytes = 0 // every Load maps the file
	s, err := kvshards.OpenStore(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	c := kvtest.New(1, 1, 1, 4)
	want := kvshards.ExpectFor(c, nil)
	r, _ := s.Ensure(ctx, c, nil, seq(1, 8))
	for range 3 {
		if _, err := s.Load(ctx, r.Key, want); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.FullVerifies != 1 || st.Maps != 3 {
		t.Fatalf("once mode: %d full verifications over %d maps, want 1 over 3", st.FullVerifies, st.Maps)
	}
	// A replaced file (new inode) is verified again, and damage in it is caught.
	data, _ := os.ReadFile(s.Path(r.Key))
	data[len(data)-1] ^= 1
	tmp := s.Path(r.Key) + ".x"
	os.WriteFile(tmp, data, 0o644)
	os.Rename(tmp, s.Path(r.Key))
	if _, err := s.Load(ctx, r.Key, want); !errors.Is(err, kvshards.ErrCorrupt) {
		t.Fatalf("replaced damaged file accepted in once mode: %v", err)
	}
}

func TestCopyIntoChecksDestinations(t *testing.T) {
	s := newStore(t, kernels.BF16, 0)
	c := kvtest.New(1, 2, 1, 4)
	h, err := s.GetOrBuild(context.Background(), c, nil, seq(1, 3))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		layer int
		k, v  int
	}{{"short K", 0, 11, 12}, {"long V", 1, 12, 13}, {"layer -1", -1, 12, 12}, {"layer 2", 2, 12, 12}} {
		if err := h.CopyInto(tc.layer, make([]float32, tc.k), make([]float32, tc.v)); err == nil || !strings.Contains(err.Error(), h.Key().String()) {
			t.Errorf("%s: err = %v", tc.name, err)
		}
	}
	h.Close()
	if err := h.CopyInto(0, make([]float32, 12), make([]float32, 12)); !errors.Is(err, kvshards.ErrClosed) {
		t.Fatalf("CopyInto after Close: %v", err)
	}
}

func TestLRUEvictsByBytes(t *testing.T) {
	ctx := context.Background()
	c := kvtest.New(1, 2, 1, 8)
	probe := newStore(t, kernels.F32, 0)
	r, _ := probe.Ensure(ctx, c, nil, seq(0, 16))
	size := func() int64 { fi, _ := os.Stat(probe.Path(r.Key)); return fi.Size() }()
	s := newStore(t, kernels.F32, 3*size) // room for exactly three equal-sized shards
	want := kvshards.ExpectFor(c, nil)
	keys := make([]kvshards.Key, 5)
	for i := range keys {
		r, err := s.Ensure(ctx, c, nil, seq(100*i, 16))
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = r.Key
	}
	load := func(i int) {
		t.Helper()
		if _, err := s.Load(ctx, keys[i], want); err != nil {
			t.Fatal(err)
		}
	}
	load(0)
	load(1)
	load(2)
	load(0) // hit; 1 is now least recent
	load(3) // evicts 1
	st := s.Stats()
	if st.CacheHits != 1 || st.CacheMisses != 4 || st.Evictions != 1 || st.CacheBytes != 3*size || st.CacheEntries != 3 || st.EvictedBytes != size {
		t.Fatalf("after 0,1,2,0,3: %+v", st)
	}
	load(0) // still cached
	load(1) // evicted: miss
	st = s.Stats()
	if st.CacheHits != 2 || st.CacheMisses != 5 || st.Evictions != 2 {
		t.Fatalf("after 0 (hit) and 1 (miss): %+v", st)
	}
	// A shard bigger than the whole budget is served but not cached.
	tiny := newStore(t, kernels.F32, size-1)
	tr, _ := tiny.Ensure(ctx, c, nil, seq(0, 16))
	if _, err := tiny.Load(ctx, tr.Key, want); err != nil {
		t.Fatal(err)
	}
	if st := tiny.Stats(); st.CacheBytes != 0 || st.CacheEntries != 0 {
		t.Fatalf("oversized shard cached: %+v", st)
	}
}

func TestConcurrentLoadsAndEvictions(t *testing.T) {
	ctx := context.Background()
	c := kvtest.New(1, 2, 2, 8)
	s := newStore(t, kernels.BF16, 1) // forces eviction churn
	var keys []kvshards.Key
	for i := range 8 {
		r, err := s.Ensure(ctx, c, nil, seq(50*i, 10))
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, r.Key)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]float32, 10*2*8)
			dv := make([]float32, 10*2*8)
			for i := range 200 {
				h, err := s.Open(ctx, keys[(g+i)%len(keys)], kvshards.ExpectFor(c, nil))
				if err != nil {
					errs <- err
					return
				}
				if err := h.CopyInto(i%2, dst, dv); err != nil {
					errs <- err
				}
				h.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestConcurrentGetOrBuildComputesOnce(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, kernels.BF16, 1<<20)
	c := kvtest.New(1, 1, 1, 4)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := s.GetOrBuild(ctx, c, seq(1, 2), seq(9, 5))
			if err != nil {
				t.Error(err)
				return
			}
			h.Close()
		}()
	}
	wg.Wait()
	if n := c.Calls.Load(); n != 1 {
		t.Fatalf("8 concurrent GetOrBuild computed %d times, want 1", n)
	}
}

func TestComputerErrorsAndBadResults(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, kernels.BF16, 0)
	c := kvtest.New(1, 1, 1, 4)
	c.FailOn(42, errors.New("engine out of memory"))
	if _, err := s.GetOrBuild(ctx, c, nil, []int32{42, 1}); err == nil || !strings.Contains(err.Error(), "engine out of memory") {
		t.Fatalf("computer error not reported: %v", err)
	}
	if _, err := s.Ensure(ctx, badComputer{c}, seq(0, 3), seq(5, 2)); err == nil || !strings.Contains(err.Error(), "base position") {
		t.Fatalf("wrong base position accepted: %v", err)
	}
}

type badComputer struct{ *kvtest.Computer }

func (b badComputer) ComputeChunk(ctx context.Context, prefix, chunk []int32) (*kvshards.ChunkKV, error) {
	kv, err := b.Computer.ComputeChunk(ctx, prefix, chunk)
	if err == nil {
		kv.BasePos++
	}
	return kv, err
}

func TestForeignLocks(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string
		age     time.Duration
		builds  bool
	}{
		{"fresh lock of another host waits", "1 other-host 2026-01-01T00:00:00Z\n", 0, false},
		{"old lock is broken", "1 other-host 2026-01-01T00:00:00Z\n", time.Hour, true},
		{"lock of a dead local process is broken", fmt.Sprintf("%d %s x\n", deadPID(t), hostname()), 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := quietOpts(kernels.BF16)
			o.StaleLock = 30 * time.Minute
			s, err := kvshards.OpenStore(t.TempDir(), o)
			if err != nil {
				t.Fatal(err)
			}
			c := kvtest.New(1, 1, 1, 4)
			k := kvshards.KeyOf(c.Fingerprint(), nil, seq(1, 4))
			lock := strings.TrimSuffix(s.Path(k), ".kvs") + ".lock"
			os.MkdirAll(filepath.Dir(lock), 0o755)
			os.WriteFile(lock, []byte(tc.content), 0o644)
			old := time.Now().Add(-tc.age)
			os.Chtimes(lock, old, old)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			r, err := s.Ensure(ctx, c, nil, seq(1, 4))
			if tc.builds {
				if err != nil || !r.Built {
					t.Fatalf("stale lock not broken: %+v, %v", r, err)
				}
				if _, err := os.Stat(lock); !errors.Is(err, os.ErrNotExist) {
					t.Fatal("lock left behind after the build")
				}
				return
			}
			if err == nil || !r.Waited || !strings.Contains(err.Error(), lock) || c.Calls.Load() != 0 {
				t.Fatalf("live foreign lock: %+v, %v (calls %d); want a wait ending in an error naming the lock", r, err, c.Calls.Load())
			}
		})
	}
}

func hostname() string { h, _ := os.Hostname(); return h }

// deadPID starts and reaps a short process, whose pid is then free.
func deadPID(t *testing.T) int {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestFileTruncatedWhileMappedIsAnErrorNotACrash(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, kernels.F32, 1<<30)
	c := kvtest.New(1, 4, 4, 64) // 4 layers × 64 tokens × 256 floats × 4 B × 2 = 512 KiB: mmap'd, not read
	h, err := s.GetOrBuild(ctx, c, nil, seq(0, 64))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.Bytes() < 256<<10 {
		t.Fatalf("shard of %d bytes is below the mmap threshold; the test needs a mapped file", h.Bytes())
	}
	if err := os.Truncate(h.Path(), 4096); err != nil { // an outside process breaking the rules
		t.Fatal(err)
	}
	n := 64 * 4 * 64
	err = h.CopyInto(3, make([]float32, n), make([]float32, n))
	if err == nil || !strings.Contains(err.Error(), "fault") || !strings.Contains(err.Error(), h.Key().String()) {
		t.Fatalf("CopyInto over a truncated mapping: %v", err)
	}
	// The tokens sit in the first page: only a file truncated to nothing
	// takes them away.
	if err := os.Truncate(h.Path(), 0); err != nil {
		t.Fatal(err)
	}
	toks, err := h.Tokens()
	if err == nil || !strings.Contains(err.Error(), "fault") || !strings.Contains(err.Error(), h.Key().String()) {
		t.Fatalf("Tokens over a truncated mapping: %d tokens, %v", len(toks), err)
	}
}

// A builder killed after renaming its shard into place leaves its lock; the
// next builder that meets the (present) shard breaks the lock when its holder
// is dead, and leaves a live holder's lock alone.
func TestDeadLockOfAFinishedShardIsBroken(t *testing.T) {
	parent := os.Getppid()
	pst := procStart(t, parent)
	for _, tc := range []struct {
		name    string
		content string
		age     time.Duration
		broken  bool
	}{
		{"dead local process", fmt.Sprintf("%d %s 2026-01-01T00:00:00Z 12345\n", deadPID(t), hostname()), 0, true},
		{"pid reused by another process", fmt.Sprintf("%d %s 2026-01-01T00:00:00Z %d\n", parent, hostname(), pst+1), 0, true},
		{"old lock of another host", "1 other-host 2026-01-01T00:00:00Z 5\n", time.Hour, true},
		{"live local process", fmt.Sprintf("%d %s 2026-01-01T00:00:00Z %d\n", parent, hostname(), pst), 0, false},
		{"fresh lock of another host", "1 other-host 2026-01-01T00:00:00Z 5\n", 0, false},
		{"empty lock older than the grace", "", time.Minute, true},
		{"empty lock being written", "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := quietOpts(kernels.BF16)
			o.StaleLock = 30 * time.Minute
			s, err := kvshards.OpenStore(t.TempDir(), o)
			if err != nil {
				t.Fatal(err)
			}
			c := kvtest.New(1, 1, 1, 4)
			ctx := context.Background()
			if r, err := s.Ensure(ctx, c, nil, seq(1, 4)); err != nil || !r.Built {
				t.Fatalf("build: %+v %v", r, err)
			}
			k := kvshards.KeyOf(c.Fingerprint(), nil, seq(1, 4))
			lock := strings.TrimSuffix(s.Path(k), ".kvs") + ".lock"
			os.WriteFile(lock, []byte(tc.content), 0o644)
			old := time.Now().Add(-tc.age)
			os.Chtimes(lock, old, old)
			if r, err := s.Ensure(ctx, c, nil, seq(1, 4)); err != nil || !r.Present {
				t.Fatalf("second ensure: %+v %v", r, err)
			}
			_, err = os.Stat(lock)
			if gone := errors.Is(err, os.ErrNotExist); gone != tc.broken {
				t.Fatalf("lock removed = %v, want %v", gone, tc.broken)
			}
		})
	}
}

func procStart(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	v, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

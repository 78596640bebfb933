package s3store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"cacheclip/kernels"
	"cacheclip/kvshards"
	"cacheclip/kvshards/kvtest"
	"cacheclip/kvshards/s3store"
	"cacheclip/kvshards/s3store/s3test"
)

var prefix = []int32{1, 2, 3}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func chunks(n, seed int) [][]int32 {
	out := make([][]int32, n)
	for i := range out {
		out[i] = []int32{int32(1000*seed + i), int32(i % 7), 5, int32(i)}
	}
	return out
}

func open(t testing.TB, srv *s3test.Server, endpoint, url string, tier string, mut func(*s3store.Options)) *s3store.Store {
	t.Helper()
	lo := kvshards.DefaultOptions()
	lo.DType = kernels.F32
	lo.NoSync = true
	o := s3store.Options{Config: srv.Config(endpoint), CacheDir: tier, Local: lo, Logger: quiet(), RetryBase: 5 * time.Millisecond, DownFor: 200 * time.Millisecond}
	if mut != nil {
		mut(&o)
	}
	s, err := s3store.Open(context.Background(), url, o)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// equalKV checks a handle against a fresh computation.
func equalKV(t *testing.T, h *kvshards.Shard, c kvshards.Computer, chunk []int32) {
	t.Helper()
	got, err := h.ChunkKV()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := c.ComputeChunk(context.Background(), prefix, chunk)
	for l := range want.K {
		if !slices.Equal(got.K[l], want.K[l]) || !slices.Equal(got.V[l], want.V[l]) {
			t.Fatalf("chunk %v layer %d: stored cache differs from the computation", chunk, l)
		}
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in, bucket, prefix string
		ok                 bool
	}{
		{"s3://b/p/q/", "b", "p/q", true},
		{"s3://b", "b", "", true},
		{"s3:///p", "", "", false},
		{"/local/dir", "", "", false},
		{"s3://b/p//q", "", "", false},
	} {
		l, err := s3store.ParseURL(tc.in)
		if (err == nil) != tc.ok || (tc.ok && (l.Bucket != tc.bucket || l.Prefix != tc.prefix)) {
			t.Errorf("ParseURL(%q) = %+v, %v; want bucket %q prefix %q ok=%v", tc.in, l, err, tc.bucket, tc.prefix, tc.ok)
		}
	}
}

// Four stores (four workers' tiers) build overlapping chunk sets at once:
// every shard is computed and PUT exactly once, and every worker reads the
// same bytes.
func TestWorkersShareBuilds(t *testing.T) {
	for _, conditional := range []bool{true, false} {
		t.Run(fmt.Sprintf("conditional=%v", conditional), func(t *testing.T) { testWorkersShareBuilds(t, conditional) })
	}
}

// Without conditional create (HEAD then PUT, no build lock) two workers may
// build the same chunk; every object must still be whole and right.
func testWorkersShareBuilds(t *testing.T, conditional bool) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "kvs")
	px := s3test.NewProxy(t, srv)
	px.RefuseConditional(!conditional)
	all := chunks(40, 1)
	var comps []*kvtest.Computer
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		c := kvtest.New(3, 2, 2, 8)
		c.Delay = 2 * time.Millisecond
		comps = append(comps, c)
		st := open(t, srv, px.URL, "s3://kvs/team/a", t.TempDir(), nil)
		if st.Conditional() != conditional {
			t.Fatalf("probe found conditional create %v, want %v", st.Conditional(), conditional)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each worker touches 3/4 of the chunks, in its own order.
			for i := range all {
				j := (i*7 + w*11) % len(all)
				if j%4 == w {
					continue
				}
				h, err := st.GetOrBuild(context.Background(), c, prefix, all[j])
				if err != nil {
					errs <- fmt.Errorf("worker %d chunk %d: %w", w, j, err)
					return
				}
				equalKV(t, h, c, all[j])
				h.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var calls int64
	for _, c := range comps {
		calls += c.Calls.Load() - int64(len(all)*3/4) // equalKV's own computations
	}
	puts := px.Puts(".kvs")
	if len(puts) != len(all) {
		t.Errorf("%d shard objects written, want %d", len(puts), len(all))
	}
	if rep, err := open(t, srv, srv.Endpoint, "s3://kvs/team/a", t.TempDir(), nil).Verify(context.Background(), &[32]byte{}, false, 2, nil); err == nil || len(rep.Damaged) != len(all) {
		t.Errorf("verify against another model's fingerprint: %d of %d refused, %v", len(rep.Damaged), rep.Checked, err)
	}
	if rep, err := open(t, srv, srv.Endpoint, "s3://kvs/team/a", t.TempDir(), nil).Verify(context.Background(), nil, false, 2, nil); err != nil || rep.Checked != len(all) {
		t.Errorf("verify: %+v, %v", rep, err)
	}
	if !conditional {
		t.Logf("without conditional create: %d computations for %d chunks", calls, len(all))
		return
	}
	for k, n := range puts {
		if n != 1 {
			t.Errorf("%s PUT %d times, want once", k, n)
		}
	}
	if calls != int64(len(all)) {
		t.Errorf("%d chunk computations across the workers, want %d (one per chunk)", calls, len(all))
	}
}

// A flipped bit in a remote object is caught at download: a read-only open
// fails naming the object, nothing reaches the tier, and a write-through
// open rebuilds and replaces the object.
func TestRemoteBitFlip(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "kvs")
	c := kvtest.New(5, 2, 2, 16)
	ch := chunks(1, 2)[0]
	st := open(t, srv, srv.Endpoint, "s3://kvs/p", t.TempDir(), nil)
	h, err := st.GetOrBuild(context.Background(), c, prefix, ch)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	k := kvshards.KeyOf(c.Fingerprint(), prefix, ch)
	obj := filepath.Join(srv.Root, "kvs", "p", k.String()[0:2], k.String()[2:4], k.String()+".kvs")
	b, err := os.ReadFile(obj)
	if err != nil {
		t.Fatalf("object not on the posix backend: %v", err)
	}
	b[len(b)-100] ^= 0x10
	if err := os.WriteFile(obj, b, 0o644); err != nil {
		t.Fatal(err)
	}

	tier := t.TempDir()
	st2 := open(t, srv, srv.Endpoint, "s3://kvs/p", tier, nil)
	want := kvshards.Expect{Fingerprint: c.Fingerprint(), PrefixHash: kvshards.PrefixHash(prefix)}
	_, err = st2.Open(context.Background(), k, want)
	var ce *kvshards.CorruptError
	if !errors.As(err, &ce) || ce.Path != st2.URL(k) {
		t.Fatalf("open of a flipped remote shard: %v; want a CorruptError naming %s", err, st2.URL(k))
	}
	if st2.Local().Has(k) {
		t.Fatal("the damaged download reached the local tier")
	}
	h, err = st2.GetOrBuild(context.Background(), c, prefix, ch)
	if err != nil {
		t.Fatalf("write-through open of a damaged remote shard: %v", err)
	}
	equalKV(t, h, c, ch)
	h.Close()
	// Two refused downloads: the read-only open's and the write-through one's.
	if s := st2.Stats(); s.Replaced != 1 || s.RemoteCorrupt != 2 {
		t.Fatalf("stats %+v: want two refused downloads and one replacement", s)
	}
	rep, err := st2.Verify(context.Background(), nil, false, 2, nil)
	if err != nil || rep.Checked != 1 {
		t.Fatalf("verify after replacement: %+v, %v", rep, err)
	}
}

// A worker that loses its connection keeps answering: shards it builds meanwhile
// stay in its tier, pending, and are uploaded once the server answers again.
func TestUnreachableKeepsWorking(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "kvs")
	px := s3test.NewProxy(t, srv)
	c := kvtest.New(6, 1, 1, 8)
	tier := t.TempDir()
	st := open(t, srv, px.URL, "s3://kvs/q", tier, nil)
	cs := chunks(3, 3)
	h, err := st.GetOrBuild(context.Background(), c, prefix, cs[0])
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	px.SetDown(true)
	for _, ch := range cs {
		h, err := st.GetOrBuild(context.Background(), c, prefix, ch)
		if err != nil {
			t.Fatalf("with the server unreachable: %v", err)
		}
		equalKV(t, h, c, ch)
		h.Close()
	}
	if p := st.Stats().Pending; p != 2 {
		t.Fatalf("%d shards pending upload, want 2", p)
	}
	// A new process on the same tier finds the pending list and uploads it.
	px.SetDown(false)
	if err := st.FlushPending(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(px.Puts(".kvs")); n != 3 {
		t.Fatalf("%d shard objects after the flush, want 3", n)
	}
	if p := st.Stats().Pending; p != 0 {
		t.Fatalf("%d shards still pending", p)
	}
}

func TestGCByLastUse(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "kvs")
	c := kvtest.New(7, 1, 1, 8)
	st := open(t, srv, srv.Endpoint, "s3://kvs/g", t.TempDir(), nil)
	for _, ch := range chunks(3, 4) {
		r, err := st.Ensure(context.Background(), c, prefix, ch)
		if err != nil || !r.Built {
			t.Fatalf("ensure: %+v, %v", r, err)
		}
	}
	ctx := context.Background()
	for _, tc := range []struct {
		unused, grace time.Duration
		removed, kept int
	}{
		{time.Hour, 0, 0, 3}, // used just now
		{0, time.Hour, 0, 3}, // inside the grace period
		{0, 0, 3, 0},         // unused and past grace (dry run first, below)
	} {
		rep, err := st.GC(ctx, tc.unused, tc.grace, true)
		if err != nil || rep.Removed != tc.removed || rep.Kept != tc.kept {
			t.Fatalf("gc dry run unused=%v grace=%v: %+v, %v; want %d removed, %d kept", tc.unused, tc.grace, rep, err, tc.removed, tc.kept)
		}
	}
	time.Sleep(10 * time.Millisecond)
	if rep, err := st.GC(ctx, 0, 0, false); err != nil || rep.Removed != 3 {
		t.Fatalf("gc: %+v, %v", rep, err)
	}
	if rep, err := st.Verify(ctx, nil, false, 1, nil); err != nil || rep.Checked != 0 {
		t.Fatalf("after gc: %+v, %v", rep, err)
	}
}

// The tier stays within its bound (plus the newest shard) and refills from
// the object store.
func TestTierBound(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "kvs")
	c := kvtest.New(8, 2, 2, 16)
	cs := chunks(10, 5)
	st := open(t, srv, srv.Endpoint, "s3://kvs/t", t.TempDir(), nil)
	for _, ch := range cs {
		if _, err := st.Ensure(context.Background(), c, prefix, ch); err != nil {
			t.Fatal(err)
		}
	}
	size := st.Stats().BuiltBytes / int64(len(cs))
	tier := t.TempDir()
	st2 := open(t, srv, srv.Endpoint, "s3://kvs/t", tier, func(o *s3store.Options) { o.CacheMaxBytes = 3 * size })
	for round := range 2 {
		for _, ch := range cs {
			h, err := st2.GetOrBuild(context.Background(), c, prefix, ch)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			equalKV(t, h, c, ch)
			h.Close()
			var n int64
			st2.Local().Walk(context.Background(), func(e kvshards.Entry) error {
				if e.Kind == kvshards.EntryShard {
					n += e.Info.Size()
				}
				return nil
			})
			if n > 3*size {
				t.Fatalf("tier holds %d bytes, bound %d", n, 3*size)
			}
		}
	}
	s := st2.Stats()
	if s.Built != 0 || s.Downloads != 2*int64(len(cs)) || s.Evictions == 0 {
		t.Fatalf("stats %+v: want no builds, %d downloads and evictions", s, 2*len(cs))
	}
}

// A build lock whose holder lives is kept fresh however long the build
// takes, so nobody builds the chunk twice; one left by a dead worker on
// another host is broken once it has not been refreshed for StaleLock.
func TestBuildLockStaleness(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "kvs")
	const stale = 400 * time.Millisecond
	short := func(o *s3store.Options) { o.StaleLock = stale }
	ch := chunks(2, 9)
	t.Run("slow live holder", func(t *testing.T) {
		slow, other := kvtest.New(9, 1, 1, 8), kvtest.New(9, 1, 1, 8)
		slow.Delay = 3 * stale
		a := open(t, srv, srv.Endpoint, "s3://kvs/l", t.TempDir(), short)
		b := open(t, srv, srv.Endpoint, "s3://kvs/l", t.TempDir(), short)
		errs := make(chan error, 1)
		go func() {
			h, err := a.GetOrBuild(context.Background(), slow, prefix, ch[0])
			if err == nil {
				h.Close()
			}
			errs <- err
		}()
		// Wait until a holds the lock (its object is on the backend's disk).
		k := kvshards.KeyOf(slow.Fingerprint(), prefix, ch[0]).String()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if _, err := os.Stat(filepath.Join(srv.Root, "kvs", "l", k[0:2], k[2:4], k+".lock")); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the slow worker never took the build lock")
			}
		}
		h, err := b.GetOrBuild(context.Background(), other, prefix, ch[0])
		if err != nil {
			t.Fatal(err)
		}
		equalKV(t, h, other, ch[0])
		h.Close()
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		if n := other.Calls.Load() - 1; n != 0 { // minus equalKV's own
			t.Fatalf("the waiting worker computed the chunk %d times while the holder was alive", n)
		}
	})
	t.Run("dead holder elsewhere", func(t *testing.T) {
		c := kvtest.New(9, 1, 1, 8)
		k := kvshards.KeyOf(c.Fingerprint(), prefix, ch[1]).String()
		srv.Put(t, "kvs", "l/"+k[0:2]+"/"+k[2:4]+"/"+k+".lock", []byte("4242 some-other-host 2026-01-01T00:00:00Z\n"))
		st := open(t, srv, srv.Endpoint, "s3://kvs/l", t.TempDir(), short)
		t0 := time.Now()
		h, err := st.GetOrBuild(context.Background(), c, prefix, ch[1])
		if err != nil {
			t.Fatal(err)
		}
		h.Close()
		if waited := time.Since(t0); waited < stale {
			t.Errorf("broke a fresh lock of another host after %v", waited)
		}
		if s := st.Stats(); s.Built != 1 || s.LockWaits != 1 {
			t.Fatalf("stats %+v: want one wait, then one build", s)
		}
	})
}

package s3store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cacheclip/kvshards"

	"golang.org/x/sync/singleflight"
)

// ErrUnreachable matches (errors.Is) a remote operation that failed after its
// retries because the server did not answer (or answered with server errors).
// A write-through store keeps working from its local tier meanwhile.
var ErrUnreachable = errors.New("object store unreachable")

// Options configure a Store.
type Options struct {
	Config Config
	// CacheDir is the local disk tier (a kvshards store directory).
	CacheDir string
	// CacheMaxBytes bounds the tier's shard bytes (0: unbounded); least
	// recently used shards are removed first, never one still to upload.
	CacheMaxBytes int64
	// Local configures the tier's kvshards.Store (dtype, host cache, verify).
	Local kvshards.Options
	// Attempts per remote operation (default 4), with exponential backoff
	// from RetryBase (default 100 ms).
	Attempts  int
	RetryBase time.Duration
	// StaleLock is the age after which another worker's build lock object is
	// broken (default 2 minutes): a worker killed while building. A holder
	// rewrites its lock every StaleLock/4, so a slow build is not taken for
	// a dead one.
	StaleLock time.Duration
	// DownFor is how long the remote is skipped after an operation found it
	// unreachable (default 30 s), so a job does not pay the retries per shard.
	DownFor time.Duration
	Logger  *slog.Logger
}

// Stats are a Store's counters since it was opened.
type Stats struct {
	Downloads, DownloadBytes int64 // shards fetched into the tier
	Uploads, UploadBytes     int64 // shards this store created remotely
	UploadsPresent           int64 // uploads refused because the object existed (another worker won)
	Pending                  int64 // built shards not uploaded (remote unreachable), kept in the tier
	RemoteCorrupt            int64 // remote shards refused at download (damaged or mismatched)
	Replaced                 int64 // damaged remote shards rebuilt and overwritten
	Built, BuiltBytes        int64 // shards computed by this store
	LockWaits                int64 // builds waited for another worker's lock
	Evictions, EvictedBytes  int64 // tier shards removed for space
	Local                    kvshards.Stats
}

// Store is a shard store on object storage with a local disk tier in front.
// Safe for concurrent use; many processes on many machines may share one
// location (each with its own tier directory).
type Store struct {
	b      *bucket
	local  *kvshards.Store
	opts   Options
	log    *slog.Logger
	host   string
	lru    *diskLRU
	flight singleflight.Group

	used      sync.Map // key -> struct{}: last use recorded this process
	downUntil atomic.Int64

	pendingDir string
	pendingMu  sync.Mutex
	pending    map[kvshards.Key]bool

	downloads, downloadBytes, uploads, uploadBytes, uploadsPresent, remoteCorrupt, replaced atomic.Int64
	built, builtBytes, lockWaits                                                            atomic.Int64
}

// Open connects to the object store at url (s3://bucket/prefix), checks the
// bucket, probes conditional-create support and opens the local tier.
func Open(ctx context.Context, url string, o Options) (*Store, error) {
	loc, err := ParseURL(url)
	if err != nil {
		return nil, err
	}
	if o.CacheDir == "" {
		return nil, fmt.Errorf("store %s: a local tier directory is required (--store-cache)", loc)
	}
	if o.Attempts <= 0 {
		o.Attempts = 4
	}
	if o.RetryBase <= 0 {
		o.RetryBase = 100 * time.Millisecond
	}
	if o.StaleLock <= 0 {
		o.StaleLock = 2 * time.Minute
	}
	if o.DownFor <= 0 {
		o.DownFor = 30 * time.Second
	}
	lg := o.Logger
	if lg == nil {
		lg = slog.Default()
	}
	o.Local.Logger = lg
	local, err := kvshards.OpenStore(o.CacheDir, o.Local)
	if err != nil {
		return nil, fmt.Errorf("store %s: local tier: %w", loc, err)
	}
	b, err := newBucket(ctx, loc, o.Config)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	s := &Store{b: b, local: local, opts: o, log: lg, host: host, pendingDir: filepath.Join(o.CacheDir, "pending"), pending: map[kvshards.Key]bool{}}
	if err := b.probeConditional(ctx); err != nil {
		return nil, fmt.Errorf("store %s: write probe: %w", loc, err)
	}
	if !b.conditional {
		lg.Info("object store ignores If-None-Match on PUT; creating shards with HEAD then PUT (a race writes equal bytes twice)", "store", loc.String())
	}
	if err := s.loadPending(); err != nil {
		return nil, err
	}
	if s.lru, err = newDiskLRU(ctx, local, o.CacheMaxBytes, s.isPending); err != nil {
		return nil, fmt.Errorf("store %s: local tier: %w", loc, err)
	}
	return s, nil
}

// Local is the disk tier.
func (s *Store) Local() *kvshards.Store { return s.local }

// Location is where the shards live.
func (s *Store) Location() Location { return s.b.loc }

// Conditional reports whether the server honours If-None-Match: * on PUT.
func (s *Store) Conditional() bool { return s.b.conditional }

// URL names key's shard object.
func (s *Store) URL(k kvshards.Key) string {
	return Scheme + s.b.loc.Bucket + "/" + s.b.loc.key(shardObject(k.String()))
}

// Stats returns a snapshot of the counters.
func (s *Store) Stats() Stats {
	st := Stats{Downloads: s.downloads.Load(), DownloadBytes: s.downloadBytes.Load(), Uploads: s.uploads.Load(), UploadBytes: s.uploadBytes.Load(),
		UploadsPresent: s.uploadsPresent.Load(), RemoteCorrupt: s.remoteCorrupt.Load(), Replaced: s.replaced.Load(),
		Built: s.built.Load(), BuiltBytes: s.builtBytes.Load(), LockWaits: s.lockWaits.Load(), Local: s.local.Stats()}
	st.Evictions, st.EvictedBytes = s.lru.counters()
	s.pendingMu.Lock()
	st.Pending = int64(len(s.pending))
	s.pendingMu.Unlock()
	return st
}

// Close uploads what is still pending (when the remote answers) and drops the
// host cache. Shards that still cannot be uploaded stay in the tier and are
// retried by the next Store opened on it.
func (s *Store) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := s.FlushPending(ctx)
	s.local.Close()
	return err
}

// down reports whether the remote was found unreachable recently.
func (s *Store) down() bool { return time.Now().UnixNano() < s.downUntil.Load() }

// do runs op with retries and backoff on transient failures; when they are
// exhausted the remote is marked down for DownFor and the error matches
// ErrUnreachable.
func (s *Store) do(ctx context.Context, what string, op func(context.Context) error) error {
	if s.down() {
		return fmt.Errorf("%s: %w (skipped for %v after a failure)", what, ErrUnreachable, s.opts.DownFor)
	}
	var err error
	for attempt := 1; attempt <= s.opts.Attempts; attempt++ {
		if err = op(ctx); !transient(err) || ctx.Err() != nil {
			return err
		}
		if attempt < s.opts.Attempts {
			s.log.Debug("object store operation failed; retrying", "op", what, "attempt", attempt, "err", err)
			if e := backoff(ctx, s.opts.RetryBase, attempt); e != nil {
				return e
			}
		}
	}
	s.downUntil.Store(time.Now().Add(s.opts.DownFor).UnixNano())
	s.log.Warn("object store unreachable; working from the local tier", "op", what, "attempts", s.opts.Attempts, "err", err, "retry_after", s.opts.DownFor)
	return fmt.Errorf("%s: %w: %w", what, ErrUnreachable, err)
}

// Open returns a verified handle on key's shard: from the local tier, or
// downloaded into it first. A damaged or mismatched remote object is refused
// (*kvshards.CorruptError / *kvshards.MismatchError naming the object's URL)
// and never used; a missing one is *kvshards.NotFoundError.
func (s *Store) Open(ctx context.Context, k kvshards.Key, want kvshards.Expect) (*kvshards.Shard, error) {
	h, err := s.local.Open(ctx, k, want)
	if err == nil {
		s.lru.touch(k)
		s.recordUse(ctx, k)
		return h, nil
	}
	// A damaged tier file has been quarantined by the local store: fetch again.
	if !errors.Is(err, kvshards.ErrNotFound) && !errors.Is(err, kvshards.ErrCorrupt) {
		return nil, err
	}
	if err := s.fetch(ctx, k, &want); err != nil {
		return nil, err
	}
	h, err = s.local.Open(ctx, k, want)
	if err != nil {
		return nil, err
	}
	s.lru.touch(k)
	return h, nil
}

// fetch downloads key's shard, checks it in full and writes it to the tier.
// want nil checks the bytes but not the model or prefix (inspect).
func (s *Store) fetch(ctx context.Context, k kvshards.Key, want *kvshards.Expect) error {
	_, err, _ := s.flight.Do("get:"+k.String(), func() (any, error) {
		if s.local.Has(k) {
			return nil, nil // fetched by a concurrent caller
		}
		url := s.URL(k)
		var data []byte
		err := s.do(ctx, "download "+url, func(ctx context.Context) (err error) {
			data, err = s.b.get(ctx, s.b.loc.key(shardObject(k.String())))
			return err
		})
		if isNotFound(err) {
			return nil, &kvshards.NotFoundError{Key: k, Path: url}
		}
		if err != nil {
			return nil, err
		}
		if err := s.local.Import(k, url, data, want); err != nil {
			s.remoteCorrupt.Add(1)
			return nil, err
		}
		s.downloads.Add(1)
		s.downloadBytes.Add(int64(len(data)))
		s.lru.add(k, int64(len(data)))
		s.recordUse(ctx, k)
		return nil, nil
	})
	return err
}

// recordUse writes key's last-use sidecar once per process (gc reads it).
// Best effort: a failure costs at most an early gc of a shard, which is then
// rebuilt.
func (s *Store) recordUse(ctx context.Context, k kvshards.Key) {
	if _, done := s.used.LoadOrStore(k, struct{}{}); done || s.down() {
		return
	}
	if _, err := s.b.put(ctx, s.b.loc.key(usedObject(k.String())), nil, false, nil); err != nil {
		s.log.Debug("recording shard use failed", "key", k.String(), "err", err)
	}
}

// GetOrBuild returns a handle on the shard for chunk after prefix: from the
// tier, downloaded, or computed by c and written through to the object store
// (one worker builds a shard; the others wait for its upload). A damaged
// remote shard is rebuilt and replaced; an unreachable remote leaves the built
// shard in the tier, uploaded later (Close, FlushPending).
func (s *Store) GetOrBuild(ctx context.Context, c kvshards.Computer, prefix, chunk []int32) (*kvshards.Shard, error) {
	fp, ph := c.Fingerprint(), kvshards.PrefixHash(prefix)
	k := kvshards.KeyFromPrefixHash(fp, ph, chunk)
	want := kvshards.Expect{Fingerprint: fp, PrefixHash: ph}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		h, err := s.Open(ctx, k, want)
		if err == nil {
			return h, nil
		}
		lastErr = err
		var me *kvshards.MismatchError
		replace := false
		switch {
		case errors.Is(err, kvshards.ErrNotFound), errors.Is(err, ErrUnreachable):
		case errors.Is(err, kvshards.ErrCorrupt), errors.As(err, &me) && me.Field == "format version":
			// The remote object is unusable; a rebuild overwrites it (equal
			// keys must hold equal bytes, and these bytes are not those).
			s.log.Warn("remote kv shard unusable; rebuilding and replacing it", "key", k.String(), "err", err)
			replace = true
		default:
			return nil, err
		}
		if _, err := s.build(ctx, c, k, fp, ph, prefix, chunk, replace); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("get or build shard %s: still unusable after rebuilding: %w", k, lastErr)
}

// Ensure makes sure the shard for chunk after prefix is in the object store
// (shards build): present objects are neither downloaded nor verified.
func (s *Store) Ensure(ctx context.Context, c kvshards.Computer, prefix, chunk []int32) (kvshards.EnsureResult, error) {
	fp, ph := c.Fingerprint(), kvshards.PrefixHash(prefix)
	k := kvshards.KeyFromPrefixHash(fp, ph, chunk)
	if ok, err := s.remoteHas(ctx, k); err != nil {
		return kvshards.EnsureResult{Key: k}, err
	} else if ok {
		return kvshards.EnsureResult{Key: k, Present: true}, nil
	}
	return s.build(ctx, c, k, fp, ph, prefix, chunk, false)
}

func (s *Store) remoteHas(ctx context.Context, k kvshards.Key) (bool, error) {
	err := s.do(ctx, "stat "+s.URL(k), func(ctx context.Context) error {
		_, err := s.b.stat(ctx, s.b.loc.key(shardObject(k.String())))
		return err
	})
	if isNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// build computes key's shard under the remote build lock, writes it to the
// tier and uploads it. replace overwrites a damaged remote object.
func (s *Store) build(ctx context.Context, c kvshards.Computer, k kvshards.Key, fp, ph [32]byte, prefix, chunk []int32, replace bool) (kvshards.EnsureResult, error) {
	v, err, shared := s.flight.Do("build:"+k.String(), func() (any, error) {
		r := kvshards.EnsureResult{Key: k}
		release, present, waited, err := s.lock(ctx, k, replace)
		r.Waited = waited
		if err != nil {
			return r, err
		}
		defer release()
		if present {
			r.Present = true
			return r, nil
		}
		kv, err := c.ComputeChunk(ctx, prefix, chunk)
		if err != nil {
			return r, fmt.Errorf("compute shard %s: %w", k, err)
		}
		if len(kv.Tokens) != len(chunk) || int(kv.BasePos) != len(prefix) {
			return r, fmt.Errorf("compute shard %s: engine returned %d tokens at base %d for a %d-token chunk after a %d-token prefix", k, len(kv.Tokens), kv.BasePos, len(chunk), len(prefix))
		}
		data, k2, err := kvshards.Encode(kv, fp, ph, s.local.DType())
		if err != nil {
			return r, fmt.Errorf("compute shard %s: %w", k, err)
		}
		if k2 != k {
			return r, fmt.Errorf("compute shard %s: encoded key %s differs (engine returned other tokens?)", k, k2)
		}
		// The pending mark first, cleared after the upload: a worker killed
		// anywhere from here on leaves it, and the next store opened on the
		// tier uploads the shard (Close) instead of only serving it locally.
		s.markPending(k)
		// Then the tier: the worker keeps the shard whatever the upload does.
		if err := s.local.Import(k, "built", data, nil); err != nil {
			s.clearPending(k)
			return r, err
		}
		s.built.Add(1)
		s.builtBytes.Add(int64(len(data)))
		r.Built, r.Bytes = true, int64(len(data))
		err = s.upload(ctx, k, data, replace)
		if errors.Is(err, ErrUnreachable) {
			s.log.Warn("shard kept in the local tier, upload pending", "key", k.String(), "tier", s.local.Path(k))
			err = nil
		} else {
			s.clearPending(k)
		}
		// Into the LRU after the pending mark, so eviction cannot drop it first.
		s.lru.add(k, int64(len(data)))
		return r, err
	})
	r, _ := v.(kvshards.EnsureResult)
	if shared && r.Built {
		r.Built, r.Present, r.Bytes = false, true, 0
	}
	return r, err
}

// upload creates key's object (If-None-Match: *, or HEAD then PUT where the
// server ignores it); replace overwrites unconditionally.
func (s *Store) upload(ctx context.Context, k kvshards.Key, data []byte, replace bool) error {
	key := s.b.loc.key(shardObject(k.String()))
	conditional := s.b.conditional && !replace
	if !replace && !s.b.conditional {
		if ok, err := s.remoteHas(ctx, k); err != nil {
			return err
		} else if ok {
			s.uploadsPresent.Add(1)
			return nil
		}
	}
	err := s.do(ctx, "upload "+s.URL(k), func(ctx context.Context) error {
		_, err := s.b.put(ctx, key, data, conditional, map[string]string{"cacheclip-builder": s.host})
		return err
	})
	switch {
	case isPrecondition(err):
		s.uploadsPresent.Add(1)
		return nil
	case err != nil:
		return err
	}
	s.uploads.Add(1)
	s.uploadBytes.Add(int64(len(data)))
	if replace {
		s.replaced.Add(1)
	}
	s.used.Store(k, struct{}{}) // the object's own LastModified is its last use
	return nil
}

// lock takes key's remote build lock (a lock object created with
// If-None-Match: *). While another worker holds it, lock waits for the shard
// object to appear (present) or for the lock to go or grow stale. An
// unreachable remote or a server without conditional create gives a no-op
// lock: duplicate builds are then possible and harmless.
func (s *Store) lock(ctx context.Context, k kvshards.Key, replace bool) (release func(), present, waited bool, err error) {
	noop := func() {}
	if !s.b.conditional || s.down() {
		return noop, false, false, nil
	}
	lk := s.b.loc.key(lockObject(k.String()))
	delay := 20 * time.Millisecond
	// Staleness is judged by this worker's own clock: how long the lock's
	// ETag has stayed the same (a live holder rewrites it), not by comparing
	// the server's LastModified with a clock that may be skewed.
	var tag string
	var since time.Time
	for {
		body := lockBody(s.host)
		err := s.do(ctx, "lock "+s.URL(k), func(ctx context.Context) error {
			_, err := s.b.put(ctx, lk, body, true, nil)
			return err
		})
		switch {
		case err == nil:
			stop := s.heartbeat(ctx, lk)
			release := func() {
				stop()
				if err := s.b.remove(context.WithoutCancel(ctx), lk); err != nil {
					s.log.Debug("removing shard build lock failed (it goes stale)", "key", k.String(), "err", err)
				}
			}
			if !replace { // finished by another worker between its check and our lock?
				if ok, _ := s.remoteHas(ctx, k); ok {
					return release, true, waited, nil
				}
			}
			return release, false, waited, nil
		case errors.Is(err, ErrUnreachable):
			return noop, false, waited, nil
		case !isPrecondition(err):
			return nil, false, waited, err
		}
		if !replace {
			if ok, err := s.remoteHas(ctx, k); err == nil && ok {
				return noop, true, waited, nil
			}
		}
		if info, err := s.b.stat(ctx, lk); err == nil {
			if info.ETag != tag || since.IsZero() {
				tag, since = info.ETag, time.Now()
			}
			why := ""
			if age := time.Since(since); age > s.opts.StaleLock {
				why = fmt.Sprintf("not refreshed for %v", age.Round(time.Millisecond))
			} else if dead, w := s.holderDead(ctx, lk); dead {
				why = w
			}
			if why != "" {
				s.log.Info("breaking stale shard build lock", "key", k.String(), "lock", lk, "why", why)
				_ = s.b.remove(ctx, lk)
				tag, since = "", time.Time{}
				continue
			}
		}
		if !waited {
			s.lockWaits.Add(1)
			waited = true
		}
		select {
		case <-ctx.Done():
			return nil, false, waited, fmt.Errorf("waiting for another worker's build of shard %s: %w", s.URL(k), ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second, s.opts.StaleLock/4)
	}
}

// lockBody names the holder; the time (to the nanosecond) makes every
// heartbeat's body, and so its ETag, differ.
func lockBody(host string) []byte {
	return []byte(fmt.Sprintf("%d %s %s\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339Nano)))
}

// heartbeat rewrites a held lock object every StaleLock/4 until stopped, so
// that its age says whether its holder is alive.
func (s *Store) heartbeat(ctx context.Context, lk string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(s.opts.StaleLock / 4)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if _, err := s.b.put(ctx, lk, lockBody(s.host), false, nil); err != nil {
					s.log.Debug("refreshing shard build lock failed", "lock", lk, "err", err)
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// holderDead reports whether the lock's holder ran on this host and is gone
// (a worker killed while building; a Slurm array's tasks share a node).
func (s *Store) holderDead(ctx context.Context, lk string) (bool, string) {
	body, err := s.b.get(ctx, lk)
	if err != nil {
		return false, ""
	}
	f := strings.Fields(string(body))
	if len(f) < 2 || f[1] != s.host {
		return false, ""
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return false, ""
	}
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true, fmt.Sprintf("process %d on this host is gone", pid)
	}
	return false, ""
}

// loadPending reads the tier's list of shards built but not yet uploaded.
func (s *Store) loadPending() error {
	if err := os.MkdirAll(s.pendingDir, 0o755); err != nil {
		return fmt.Errorf("local tier: %w", err)
	}
	ents, err := os.ReadDir(s.pendingDir)
	if err != nil {
		return fmt.Errorf("local tier: %w", err)
	}
	for _, e := range ents {
		k, err := kvshards.ParseKey(e.Name())
		switch {
		case err != nil:
		case s.local.Has(k):
			s.pending[k] = true
		default: // killed before the shard reached the tier: nothing to upload
			os.Remove(filepath.Join(s.pendingDir, e.Name()))
		}
	}
	return nil
}

func (s *Store) isPending(k kvshards.Key) bool {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	return s.pending[k]
}

// markPending records a shard to upload; the marker file makes the record
// survive the process.
func (s *Store) markPending(k kvshards.Key) {
	s.pendingMu.Lock()
	s.pending[k] = true
	s.pendingMu.Unlock()
	if err := os.WriteFile(filepath.Join(s.pendingDir, k.String()), nil, 0o644); err != nil {
		s.log.Warn("recording a pending upload failed", "key", k.String(), "err", err)
	}
}

func (s *Store) clearPending(k kvshards.Key) {
	s.pendingMu.Lock()
	delete(s.pending, k)
	s.pendingMu.Unlock()
	os.Remove(filepath.Join(s.pendingDir, k.String()))
}

// FlushPending uploads the shards built while the remote was unreachable.
func (s *Store) FlushPending(ctx context.Context) error {
	s.pendingMu.Lock()
	keys := make([]kvshards.Key, 0, len(s.pending))
	for k := range s.pending {
		keys = append(keys, k)
	}
	s.pendingMu.Unlock()
	if len(keys) == 0 {
		return nil
	}
	s.downUntil.Store(0) // try again now
	done := 0
	for _, k := range keys {
		data, err := os.ReadFile(s.local.Path(k))
		if err == nil {
			_, err = s.local.CheckBytes(k, s.local.Path(k), data, nil)
		}
		if err == nil {
			err = s.upload(ctx, k, data, false)
		}
		if errors.Is(err, ErrUnreachable) {
			return fmt.Errorf("%d shards still to upload from %s: %w", len(keys)-done, s.pendingDir, err)
		}
		if err != nil {
			s.log.Warn("pending shard dropped", "key", k.String(), "err", err)
		}
		s.clearPending(k)
		done++
	}
	s.log.Info("pending shards uploaded", "shards", done, "store", s.b.loc.String())
	return nil
}

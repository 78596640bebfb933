package kvshards

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cacheclip/internal/atomicfile"
	"cacheclip/internal/proc"
	"cacheclip/kernels"

	"golang.org/x/sync/singleflight"
	"golang.org/x/sys/unix"
)

var errNotExist = fs.ErrNotExist

// VerifyMode says how often a shard's block checksums are checked.
type VerifyMode int

const (
	// VerifyEveryOpen checks every block each time a shard file is mapped
	// (cache hits are not re-checked: the bytes were checked when mapped).
	VerifyEveryOpen VerifyMode = iota
	// VerifyOncePerProcess checks a shard file's blocks the first time this
	// Store maps it and trusts the same file (device, inode, size, mtime)
	// afterwards; the header is still checked on every map.
	VerifyOncePerProcess
)

// Options configure a Store.
type Options struct {
	// DType is the storage dtype of shards this store writes. The zero value
	// is F32; DefaultOptions sets BF16.
	DType kernels.DType
	// CacheBytes bounds the host-memory cache of mapped shards (0: no cache).
	CacheBytes int64
	Verify     VerifyMode
	// StaleLock is the age after which another builder's lock file is broken
	// (default 10 minutes). Locks of dead processes on this host are broken at once.
	StaleLock time.Duration
	// NoSync skips fsync; for benchmarks and tests only: a crash can then
	// leave a renamed but incomplete shard (which the checksums still catch).
	NoSync bool
	Logger *slog.Logger
}

// DefaultOptions stores bf16, caches 4 GiB and verifies every map.
func DefaultOptions() Options {
	return Options{DType: kernels.BF16, CacheBytes: 4 << 30, StaleLock: 10 * time.Minute}
}

// Expect is what the caller knows the shard must match. Zero dimension fields
// are not checked; the format version is always checked.
type Expect struct {
	Fingerprint              [32]byte
	PrefixHash               [32]byte
	Layers, KVHeads, HeadDim int
}

// ExpectFor is the expectation for shards computed by c after prefix.
func ExpectFor(c Computer, prefix []int32) Expect {
	return Expect{Fingerprint: c.Fingerprint(), PrefixHash: PrefixHash(prefix)}
}

// Stats are the store's counters since it was opened.
type Stats struct {
	CacheHits, CacheMisses  int64
	Evictions, EvictedBytes int64
	CacheBytes              int64 // bytes of shards held by the cache now
	CacheEntries            int64
	CacheCapacity           int64
	Maps, MappedBytes       int64 // shard files mapped (cache misses that found a file)
	FullVerifies            int64 // maps whose blocks were all checksummed
	Corrupt                 int64 // damaged shards found (and quarantined)
	Mismatches              int64 // shards refused for another model/prefix/version
	Built, BuiltBytes       int64 // shards computed and written by this store
	LockWaits               int64 // times a builder waited for another's lock
}

type fileID struct {
	dev, ino   uint64
	size, mtim int64
}

// Store is a directory of shards: <dir>/ab/cd/<key>.kvs, with damaged shards
// moved to <dir>/quarantine/. Safe for concurrent use, and for several
// processes sharing one directory.
type Store struct {
	dir      string
	opts     Options
	log      *slog.Logger
	cache    *lru
	host     string
	flight   singleflight.Group
	verified sync.Map // Key -> fileID, for VerifyOncePerProcess

	heldMu sync.Mutex
	held   map[Key]bool

	maps, mappedBytes, fullVerifies, corrupt, mismatches, built, builtBytes, lockWaits atomic.Int64

	// writeHook, if set, runs after half of a shard's bytes are written to the
	// temporary file; the crash test uses it to be killed mid-write.
	writeHook func(tmpPath string)
}

// OpenStore opens (creating if needed) a store directory.
func OpenStore(dir string, opts Options) (*Store, error) {
	if !littleEndian() {
		return nil, fmt.Errorf("kv shard store %s: shards are little-endian and mapped in place; this host is big-endian", dir)
	}
	if opts.DType > kernels.BF16 {
		return nil, fmt.Errorf("kv shard store %s: unknown storage dtype %v", dir, opts.DType)
	}
	if opts.StaleLock <= 0 {
		opts.StaleLock = 10 * time.Minute
	}
	if err := os.MkdirAll(filepath.Join(dir, quarantineDir), 0o755); err != nil {
		return nil, fmt.Errorf("kv shard store: %w", err)
	}
	host, _ := os.Hostname()
	lg := opts.Logger
	if lg == nil {
		lg = slog.Default()
	}
	return &Store{dir: dir, opts: opts, log: lg, cache: newLRU(opts.CacheBytes), host: host, held: map[Key]bool{}}, nil
}

const (
	// mmapMin is the file size from which shards are mmap'd rather than read.
	mmapMin = 256 << 10

	quarantineDir = "quarantine"
	shardExt      = ".kvs"
	lockExt       = ".lock"
	tmpExt        = ".tmp"
)

// Dir is the store's root directory.
func (s *Store) Dir() string { return s.dir }

// DType is the storage dtype of shards this store writes.
func (s *Store) DType() kernels.DType { return s.opts.DType }

// Path is where key's shard lives: two levels of 256-way fan-out keep every
// directory small (15 entries per leaf at a million shards).
func (s *Store) Path(k Key) string {
	h := k.String()
	return filepath.Join(s.dir, h[0:2], h[2:4], h+shardExt)
}

func (s *Store) lockPath(k Key) string { return strings.TrimSuffix(s.Path(k), shardExt) + lockExt }

// Has reports whether key's shard file exists (it is not opened or verified).
func (s *Store) Has(k Key) bool {
	_, err := os.Stat(s.Path(k))
	return err == nil
}

// Stats returns a snapshot of the counters.
func (s *Store) Stats() Stats {
	var st Stats
	s.cache.stats(&st)
	st.Maps, st.MappedBytes = s.maps.Load(), s.mappedBytes.Load()
	st.FullVerifies, st.Corrupt, st.Mismatches = s.fullVerifies.Load(), s.corrupt.Load(), s.mismatches.Load()
	st.Built, st.BuiltBytes, st.LockWaits = s.built.Load(), s.builtBytes.Load(), s.lockWaits.Load()
	return st
}

// Close drops the cache; handles already returned stay valid until closed.
func (s *Store) Close() error {
	s.cache.clear()
	return nil
}

// Open returns a verified handle on key's shard, from the cache or mapped from
// disk. A damaged file is quarantined and reported as *CorruptError; a shard
// for another model, prefix, format version or shape as *MismatchError; a
// missing one as *NotFoundError. The caller must Close the handle.
func (s *Store) Open(ctx context.Context, k Key, want Expect) (*Shard, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if h := s.cache.get(k); h != nil {
		if err := s.checkExpect(h.m, want); err != nil {
			h.Close()
			return nil, err
		}
		return h, nil
	}
	m, err := s.mapFile(k, s.Path(k), &want, true, false)
	if err != nil {
		return nil, err
	}
	h, dup := s.cache.add(m)
	if dup {
		_ = m.release()
	}
	return h, nil
}

// Load returns key's shard decoded into fresh f32 slices.
func (s *Store) Load(ctx context.Context, k Key, want Expect) (*ChunkKV, error) {
	h, err := s.Open(ctx, k, want)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return h.ChunkKV()
}

// mapFile maps path, checks the header, want and (per Verify mode) every
// block. The returned mapping has no references yet.
func (s *Store) mapFile(k Key, path string, want *Expect, quarantine, force bool) (*mapping, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &NotFoundError{Key: k, Path: path}
		}
		return nil, fmt.Errorf("shard %s: %w", k, err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("shard %s: stat %s: %w", k, path, err)
	}
	id := fileID{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtim: st.Mtim.Nano()}
	if st.Size < fixedSize {
		return nil, s.damaged(k, path, id, &formatError{msg: fmt.Sprintf("%d bytes, shorter than the %d-byte fixed header", st.Size, fixedSize), kind: errTruncated}, quarantine)
	}
	var data []byte
	unmap := unix.Munmap
	if st.Size < mmapMin {
		// Small files are read into the heap: unmapping costs a TLB shootdown
		// across the process's CPUs (~80 µs on this VM, BenchmarkOpen/small),
		// more than copying a few hundred KiB.
		data, unmap = make([]byte, st.Size), func([]byte) error { return nil }
		if _, err := f.ReadAt(data, 0); err != nil {
			return nil, fmt.Errorf("shard %s: read %s: %w", k, path, err)
		}
	} else {
		// MAP_POPULATE maps every page in one call: verification and CopyInto
		// read the whole file anyway, and a fault per 4 KiB page cost more than
		// checksumming it (BenchmarkOpen/map+verify: 5.3 ms → 2.0 ms for 6 MiB).
		data, err = unix.Mmap(int(f.Fd()), 0, int(st.Size), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return nil, fmt.Errorf("shard %s: mmap %s: %w", k, path, err)
		}
	}
	m := &mapping{key: k, path: path, data: data, unmap: unmap}
	fail := func(err error) (*mapping, error) {
		_ = unmap(data)
		return nil, err
	}
	hdr, lay, err := parseHeader(data)
	if err != nil {
		var ve *versionError
		if errors.As(err, &ve) {
			s.mismatches.Add(1)
			return fail(&MismatchError{Key: k, Path: path, Field: "format version", Got: strconv.Itoa(int(ve.got)), Want: strconv.Itoa(FormatVersion)})
		}
		return fail(s.damaged(k, path, id, err, quarantine))
	}
	m.hdr, m.lay = hdr, lay
	if hdr.Key != k {
		return fail(s.damaged(k, path, id, badHeader("key %s, but the file is stored under %s", hdr.Key, k), quarantine))
	}
	if want != nil {
		if err := s.checkExpect(m, *want); err != nil {
			return fail(err)
		}
	}
	if prev, ok := s.verified.Load(k); force || !ok || s.opts.Verify != VerifyOncePerProcess || prev.(fileID) != id {
		if err := verifyGuarded(data, hdr, lay); err != nil {
			return fail(s.damaged(k, path, id, err, quarantine))
		}
		s.fullVerifies.Add(1)
		if quarantine { // only files at their store path are remembered
			s.verified.Store(k, id)
		}
	}
	s.maps.Add(1)
	s.mappedBytes.Add(lay.fileSize)
	return m, nil
}

// verifyGuarded turns a fault reading the mapping (the file truncated in place
// by an outside process after it was mapped) into damage instead of a crash.
func verifyGuarded(data []byte, h *Header, lay layout) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &formatError{msg: fmt.Sprintf("fault reading the mapped file (truncated while mapped?): %v", r), kind: errTruncated}
		}
	}()
	return verifyBlocks(data, h, lay)
}

func (s *Store) checkExpect(m *mapping, want Expect) error {
	h := m.hdr
	mis := func(field, got, w string) error {
		s.mismatches.Add(1)
		return &MismatchError{Key: m.key, Path: m.path, Field: field, Got: got, Want: w}
	}
	switch {
	case h.Fingerprint != want.Fingerprint:
		return mis("model fingerprint", hex.EncodeToString(h.Fingerprint[:]), hex.EncodeToString(want.Fingerprint[:]))
	case h.PrefixHash != want.PrefixHash:
		return mis("prefix hash", hex.EncodeToString(h.PrefixHash[:]), hex.EncodeToString(want.PrefixHash[:]))
	case want.Layers != 0 && h.Layers != want.Layers:
		return mis("layers", strconv.Itoa(h.Layers), strconv.Itoa(want.Layers))
	case want.KVHeads != 0 && h.KVHeads != want.KVHeads:
		return mis("kv heads", strconv.Itoa(h.KVHeads), strconv.Itoa(want.KVHeads))
	case want.HeadDim != 0 && h.HeadDim != want.HeadDim:
		return mis("head dim", strconv.Itoa(h.HeadDim), strconv.Itoa(want.HeadDim))
	}
	return nil
}

// damaged logs the damage, moves the file to quarantine (if it is still the
// file that was checked) and returns the CorruptError.
func (s *Store) damaged(k Key, path string, id fileID, cause error, quarantine bool) error {
	s.corrupt.Add(1)
	ce := &CorruptError{Key: k, Path: path, Block: "header", Reason: cause.Error()}
	var fe *formatError
	if errors.As(cause, &fe) {
		ce.Reason = fe.msg
		if fe.block != "" {
			ce.Block = fe.block
		}
	}
	ce.Truncated = errors.Is(cause, errTruncated)
	if ce.Truncated {
		ce.Block = "file"
	}
	s.cache.remove(k)
	s.verified.Delete(k)
	if quarantine {
		q, err := s.quarantine(k, path, id)
		if err != nil {
			s.log.Error("kv shard damaged; quarantine failed", "key", k.String(), "path", path, "reason", ce.Reason, "err", err)
		} else {
			ce.Quarantined = q
		}
	}
	attrs := []any{"key", k.String(), "path", path, "block", ce.Block, "reason", ce.Reason}
	if quarantine {
		// Only a caller that quarantines reports where to; a check that
		// leaves the decision to its caller (VerifyFile) says nothing, rather
		// than an empty destination for a file the caller then moves.
		attrs = append(attrs, "quarantined", ce.Quarantined)
	}
	s.log.Warn("kv shard damaged", attrs...)
	return ce
}

// quarantine renames path into <dir>/quarantine unless another process has
// already replaced it (a rebuilt shard must not be quarantined for the old
// file's damage).
func (s *Store) quarantine(k Key, path string, id fileID) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", fmt.Errorf("stat before quarantine: %w", err)
	}
	if uint64(st.Dev) != id.dev || st.Ino != id.ino {
		return "", fmt.Errorf("file was replaced by another process; left in place")
	}
	q := filepath.Join(s.dir, quarantineDir, fmt.Sprintf("%s.%d%s", k, time.Now().UnixNano(), shardExt))
	if err := os.Rename(path, q); err != nil {
		return "", err
	}
	s.syncDir(filepath.Dir(path))
	s.syncDir(filepath.Dir(q))
	return q, nil
}

// VerifyFile fully checks the shard file at path (header, every block, and
// the key against the file name when the name is a key) without quarantining
// it or touching the cache. want may be nil to skip the fingerprint and prefix
// checks.
func (s *Store) VerifyFile(path string, want *Expect) (*Header, error) {
	k, err := ParseKey(strings.TrimSuffix(filepath.Base(path), shardExt))
	if err != nil {
		// Not stored under its key (a copied or quarantined file): take the
		// key from the header, which the full check then confirms.
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("shard file %s: %w", path, err)
		}
		var buf [fixedSize]byte
		n, _ := f.ReadAt(buf[:], 0)
		f.Close()
		if n == fixedSize && string(buf[:8]) == Magic {
			copy(k[:], buf[offKey:])
		}
	}
	m, err := s.mapFile(k, path, want, false, true)
	if err != nil {
		return nil, err
	}
	defer m.unmap(m.data)
	return m.hdr, nil
}

// Remove deletes key's shard (GC); a missing file is not an error.
func (s *Store) Remove(k Key) error {
	s.cache.remove(k)
	s.verified.Delete(k)
	if err := os.Remove(s.Path(k)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove shard %s: %w", k, err)
	}
	return nil
}

// Put writes kv as the shard computed by the model with fingerprint fp after
// the prefix with hash prefixHash, atomically: a temporary file in the target
// directory, fsync, rename over the final name, fsync of the directory.
// Readers see either no shard or the whole shard. It returns the key and the
// bytes written.
func (s *Store) Put(ctx context.Context, kv *ChunkKV, fp, prefixHash [32]byte) (Key, int64, error) {
	if err := ctx.Err(); err != nil {
		return Key{}, 0, err
	}
	data, k, err := Encode(kv, fp, prefixHash, s.opts.DType)
	if err != nil {
		return Key{}, 0, fmt.Errorf("put shard: %w", err)
	}
	if err := s.writeAtomic(k, data); err != nil {
		return k, 0, err
	}
	return k, int64(len(data)), nil
}

func (s *Store) writeAtomic(k Key, data []byte) error {
	path := s.Path(k)
	dir := filepath.Dir(path)
	if err := s.mkdirs(dir); err != nil {
		return fmt.Errorf("write shard %s: %w", k, err)
	}
	// The temporary name (".KEY.PID.RANDOM.tmp") is what Verify counts as a leftover.
	opts := atomicfile.Options{NoSync: s.opts.NoSync, NoDirSync: true, TempName: func(string) string {
		return filepath.Join(dir, fmt.Sprintf(".%s.%d.%s%s", k, os.Getpid(), atomicfile.RandomHex(), tmpExt))
	}}
	err := atomicfile.Write(path, opts, func(f *os.File) error {
		half := len(data) / 2
		if _, err := f.Write(data[:half]); err != nil {
			return err
		}
		if s.writeHook != nil {
			s.writeHook(f.Name())
		}
		_, err := f.Write(data[half:])
		return err
	})
	if err != nil {
		return fmt.Errorf("write shard %s: %w", k, err)
	}
	s.syncDir(dir)
	return nil
}

// mkdirs creates the fan-out directories, syncing each new one's parent so
// the directory entry survives a crash along with the shard renamed into it.
func (s *Store) mkdirs(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := s.mkdirs(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	s.syncDir(filepath.Dir(dir))
	return nil
}

func (s *Store) syncDir(dir string) {
	if s.opts.NoSync {
		return
	}
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	if err := d.Sync(); err != nil {
		s.log.Warn("fsync of shard directory failed", "dir", dir, "err", err)
	}
	d.Close()
}

// tryLock takes key's build lock with O_EXCL. held=false means another live
// builder has it. Locks of dead processes on this host, and locks older than
// StaleLock, are broken; two builders breaking the same stale lock at once can
// both build the shard, which is harmless (the second rename replaces an
// identical file).
func (s *Store) tryLock(k Key) (unlock func(), held bool, err error) {
	lp := s.lockPath(k)
	if err := s.mkdirs(filepath.Dir(lp)); err != nil {
		return nil, false, fmt.Errorf("lock shard %s: %w", k, err)
	}
	for attempt := 0; attempt < 2; attempt++ {
		err := s.createLock(k, lp)
		if err == nil {
			s.heldMu.Lock()
			s.held[k] = true
			s.heldMu.Unlock()
			return func() {
				s.heldMu.Lock()
				delete(s.held, k)
				s.heldMu.Unlock()
				os.Remove(lp)
			}, true, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, false, fmt.Errorf("lock shard %s: %w", k, err)
		}
		if stale, why := s.lockStale(k, lp); stale {
			s.log.Info("breaking stale shard lock", "key", k.String(), "lock", lp, "why", why)
			os.Remove(lp)
			continue
		}
		return nil, false, nil
	}
	return nil, false, nil
}

// createLock creates the lock file lp whole, or fails with fs.ErrExist: the
// owner line (pid, host, time and the pid's start time, so that a reused pid
// is not mistaken for this builder) goes into a temporary file that is then
// hard-linked into place. A builder killed between an O_EXCL create and its
// write would leave an empty lock that names no owner to check.
func (s *Store) createLock(k Key, lp string) error {
	f, err := os.CreateTemp(filepath.Dir(lp), fmt.Sprintf(".%s.%d.*%s", k, os.Getpid(), tmpExt))
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	me := proc.Self()
	_, err = fmt.Fprintf(f, "%d %s %s %d\n", me.PID, s.host, time.Now().UTC().Format(time.RFC3339), me.Start)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Link(tmp, lp)
}

// emptyLockGrace is how old a lock file that names no owner (written by an
// older version killed between create and write) must be to be broken.
const emptyLockGrace = 10 * time.Second

// lockStale reports whether the lock file at lp belongs to no live builder.
func (s *Store) lockStale(k Key, lp string) (bool, string) {
	st, err := os.Stat(lp)
	if err != nil {
		return false, "" // gone already: the retry will take it
	}
	if age := time.Since(st.ModTime()); age > s.opts.StaleLock {
		return true, fmt.Sprintf("older than %v (%v)", s.opts.StaleLock, age.Round(time.Second))
	}
	b, err := os.ReadFile(lp)
	if err != nil {
		return false, ""
	}
	if len(strings.Fields(string(b))) < 2 && time.Since(st.ModTime()) > emptyLockGrace {
		return true, "names no owner (its builder died while creating it)"
	}
	return s.ownerDead(b)
}

// ownerDead parses "pid host [time [start_ticks]]" and, when the owner is on
// this host, checks that its pid still runs and, if the start time is
// recorded, that the pid was not reused by another process since.
func (s *Store) ownerDead(b []byte) (bool, string) {
	f := strings.Fields(string(bytes.TrimSpace(b)))
	if len(f) < 2 || f[1] != s.host {
		return false, ""
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return false, ""
	}
	id := proc.ID{Host: proc.Self().Host, PID: pid}
	if len(f) >= 4 {
		id.Start, _ = strconv.ParseUint(f[3], 10, 64)
	}
	return id.Gone()
}

// clearDeadLock removes k's lock file when its holder is gone or it is older
// than StaleLock. A builder killed after renaming its shard into place leaves
// its lock behind; the next builder meets the shard present and would never
// look at the lock otherwise.
func (s *Store) clearDeadLock(k Key) {
	s.heldMu.Lock()
	ours := s.held[k]
	s.heldMu.Unlock()
	if ours {
		return
	}
	lp := s.lockPath(k)
	if _, err := os.Stat(lp); err != nil {
		return
	}
	if stale, why := s.lockStale(k, lp); stale {
		s.log.Info("removing the stale lock of a finished shard", "key", k.String(), "lock", lp, "why", why)
		os.Remove(lp)
	}
}

// EnsureResult says what Ensure did.
type EnsureResult struct {
	Key     Key
	Built   bool  // computed and written by this call
	Bytes   int64 // bytes written when Built
	Present bool  // already in the store (possibly written by another builder meanwhile)
	Waited  bool  // waited for another builder's lock
}

// Ensure makes sure the shard for chunk after prefix exists, computing and
// writing it if not. Present shards are not opened or verified. Concurrent
// callers in this process share one computation; other processes are kept from
// duplicating it by the per-key lock file.
func (s *Store) Ensure(ctx context.Context, c Computer, prefix, chunk []int32) (EnsureResult, error) {
	fp, ph := c.Fingerprint(), PrefixHash(prefix)
	return s.ensure(ctx, c, fp, ph, prefix, chunk)
}

func (s *Store) ensure(ctx context.Context, c Computer, fp, ph [32]byte, prefix, chunk []int32) (EnsureResult, error) {
	k := keyFromHashes(fp, ph, chunk)
	v, err, shared := s.flight.Do(k.String(), func() (any, error) {
		return s.ensureOnce(ctx, c, k, fp, ph, prefix, chunk)
	})
	r, _ := v.(EnsureResult)
	if shared && r.Built {
		r.Built, r.Present, r.Bytes = false, true, 0
	}
	return r, err
}

func (s *Store) ensureOnce(ctx context.Context, c Computer, k Key, fp, ph [32]byte, prefix, chunk []int32) (EnsureResult, error) {
	r := EnsureResult{Key: k}
	delay := 20 * time.Millisecond
	for {
		if s.Has(k) {
			s.clearDeadLock(k)
			r.Present = true
			return r, nil
		}
		unlock, held, err := s.tryLock(k)
		if err != nil {
			return r, err
		}
		if held {
			defer unlock()
			if s.Has(k) { // finished by another builder between our check and our lock
				r.Present = true
				return r, nil
			}
			kv, err := c.ComputeChunk(ctx, prefix, chunk)
			if err != nil {
				return r, fmt.Errorf("compute shard %s: %w", k, err)
			}
			if err := checkComputed(kv, prefix, chunk); err != nil {
				return r, fmt.Errorf("compute shard %s: %w", k, err)
			}
			k2, n, err := s.Put(ctx, kv, fp, ph)
			if err != nil {
				return r, err
			}
			if k2 != k {
				return r, fmt.Errorf("compute shard %s: encoded key %s differs (engine returned other tokens?)", k, k2)
			}
			s.built.Add(1)
			s.builtBytes.Add(n)
			r.Built, r.Bytes = true, n
			return r, nil
		}
		if !r.Waited {
			s.lockWaits.Add(1)
		}
		r.Waited = true
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("waiting for another builder of shard %s (%s): %w", k, s.lockPath(k), ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

func checkComputed(kv *ChunkKV, prefix, chunk []int32) error {
	if err := kv.Validate(); err != nil {
		return err
	}
	if len(kv.Tokens) != len(chunk) {
		return fmt.Errorf("engine returned %d tokens for a %d-token chunk", len(kv.Tokens), len(chunk))
	}
	for i := range chunk {
		if kv.Tokens[i] != chunk[i] {
			return fmt.Errorf("engine returned token %d = %d, chunk has %d", i, kv.Tokens[i], chunk[i])
		}
	}
	if int(kv.BasePos) != len(prefix) {
		return fmt.Errorf("engine returned base position %d after a %d-token prefix", kv.BasePos, len(prefix))
	}
	return nil
}

// GetOrBuild returns a handle on the shard for chunk after prefix, computing
// and storing it first if it is missing (write-through). A damaged shard is
// quarantined and rebuilt; one of another format version is replaced. The
// caller must Close the handle.
func (s *Store) GetOrBuild(ctx context.Context, c Computer, prefix, chunk []int32) (*Shard, error) {
	fp, ph := c.Fingerprint(), PrefixHash(prefix)
	want := Expect{Fingerprint: fp, PrefixHash: ph}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		r, err := s.ensure(ctx, c, fp, ph, prefix, chunk)
		if err != nil {
			return nil, err
		}
		h, err := s.Open(ctx, r.Key, want)
		if err == nil {
			return h, nil
		}
		lastErr = err
		var me *MismatchError
		switch {
		case errors.Is(err, ErrCorrupt), errors.Is(err, ErrNotFound):
			// quarantined (or removed by GC meanwhile): build again
		case errors.As(err, &me) && me.Field == "format version":
			s.log.Info("replacing kv shard of another format version", "key", r.Key.String(), "path", me.Path, "version", me.Got)
			if err := s.Remove(r.Key); err != nil {
				return nil, err
			}
		default:
			return nil, err
		}
	}
	return nil, fmt.Errorf("get or build shard %s: still unusable after rebuilding: %w", KeyOf(fp, prefix, chunk), lastErr)
}

// Quarantine moves key's shard file to <dir>/quarantine (after a failed
// VerifyFile, say) and returns its new path.
func (s *Store) Quarantine(k Key) (string, error) {
	path := s.Path(k)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", fmt.Errorf("quarantine shard %s: %w", k, err)
	}
	s.cache.remove(k)
	s.verified.Delete(k)
	q, err := s.quarantine(k, path, fileID{dev: uint64(st.Dev), ino: st.Ino})
	if err != nil {
		return "", fmt.Errorf("quarantine shard %s (%s): %w", k, path, err)
	}
	s.log.Warn("kv shard quarantined", "key", k.String(), "path", path, "quarantined", q)
	return q, nil
}

// EntryKind classifies a file found by Walk.
type EntryKind int

const (
	EntryShard EntryKind = iota
	EntryTemp            // a temporary file of an unfinished write
	EntryLock            // a builder's lock file
	EntryOther
)

// Entry is one file under the store's fan-out directories.
type Entry struct {
	Kind EntryKind
	Key  Key // for shards and locks; for temp files, the key being written
	Path string
	Info fs.FileInfo
}

// Walk calls fn for every file in the fan-out directories (not quarantine),
// in directory order; it streams, so a store of millions of shards is walked
// without holding their list in memory.
func (s *Store) Walk(ctx context.Context, fn func(Entry) error) error {
	isHex2 := func(n string) bool { _, err := hex.DecodeString(n); return len(n) == 2 && err == nil }
	top, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("walk store %s: %w", s.dir, err)
	}
	for _, a := range top {
		if !a.IsDir() || !isHex2(a.Name()) {
			continue
		}
		mid, err := os.ReadDir(filepath.Join(s.dir, a.Name()))
		if err != nil {
			return fmt.Errorf("walk store: %w", err)
		}
		for _, b := range mid {
			if !b.IsDir() || !isHex2(b.Name()) {
				continue
			}
			leaf := filepath.Join(s.dir, a.Name(), b.Name())
			files, err := os.ReadDir(leaf)
			if err != nil {
				return fmt.Errorf("walk store: %w", err)
			}
			for _, f := range files {
				if err := ctx.Err(); err != nil {
					return err
				}
				info, err := f.Info()
				if err != nil {
					continue // removed meanwhile
				}
				e := Entry{Kind: EntryOther, Path: filepath.Join(leaf, f.Name()), Info: info}
				name := f.Name()
				switch {
				case strings.HasSuffix(name, shardExt):
					if k, err := ParseKey(strings.TrimSuffix(name, shardExt)); err == nil {
						e.Kind, e.Key = EntryShard, k
					}
				case strings.HasSuffix(name, lockExt):
					if k, err := ParseKey(strings.TrimSuffix(name, lockExt)); err == nil {
						e.Kind, e.Key = EntryLock, k
					}
				case strings.HasPrefix(name, ".") && strings.HasSuffix(name, tmpExt) && len(name) > 65:
					if k, err := ParseKey(name[1:65]); err == nil {
						e.Kind, e.Key = EntryTemp, k
					}
				}
				if err := fn(e); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// StaleLeftover reports whether a temp or lock file found by Walk belongs to
// no live builder: its process is gone (same host) or it is older than
// StaleLock. GC removes such files.
func (s *Store) StaleLeftover(e Entry) bool {
	switch e.Kind {
	case EntryLock:
		stale, _ := s.lockStale(e.Key, e.Path)
		return stale
	case EntryTemp:
		if time.Since(e.Info.ModTime()) > s.opts.StaleLock {
			return true
		}
		// .<key>.<pid>.<random>.tmp, written by this host's processes only
		// (the store is local or the writer is on this host).
		parts := strings.Split(filepath.Base(e.Path), ".")
		if len(parts) >= 4 {
			dead, _ := s.ownerDead([]byte(parts[2] + " " + s.host))
			return dead
		}
	}
	return false
}

// CheckBytes fully checks data as key k's shard (header, key, want when not
// nil, every block's checksum) without writing it; src names where the bytes
// came from (a remote object's URL) in the returned *CorruptError or
// *MismatchError.
func (s *Store) CheckBytes(k Key, src string, data []byte, want *Expect) (*Header, error) {
	if len(data) < fixedSize {
		return nil, s.damaged(k, src, fileID{}, &formatError{msg: fmt.Sprintf("%d bytes, shorter than the %d-byte fixed header", len(data), fixedSize), kind: errTruncated}, false)
	}
	hdr, lay, err := parseHeader(data)
	if err != nil {
		var ve *versionError
		if errors.As(err, &ve) {
			s.mismatches.Add(1)
			return nil, &MismatchError{Key: k, Path: src, Field: "format version", Got: strconv.Itoa(int(ve.got)), Want: strconv.Itoa(FormatVersion)}
		}
		return nil, s.damaged(k, src, fileID{}, err, false)
	}
	if hdr.Key != k {
		return nil, s.damaged(k, src, fileID{}, badHeader("key %s, but the object is stored under %s", hdr.Key, k), false)
	}
	if want != nil {
		if err := s.checkExpect(&mapping{key: k, path: src, hdr: hdr, lay: lay}, *want); err != nil {
			return nil, err
		}
	}
	if err := verifyBlocks(data, hdr, lay); err != nil {
		return nil, s.damaged(k, src, fileID{}, err, false)
	}
	s.fullVerifies.Add(1)
	return hdr, nil
}

// Import checks data as key k's shard (CheckBytes) and writes it to the
// store atomically: a tier in front of a remote store fills itself this way,
// and damaged bytes are never written.
func (s *Store) Import(k Key, src string, data []byte, want *Expect) error {
	if _, err := s.CheckBytes(k, src, data, want); err != nil {
		return err
	}
	return s.writeAtomic(k, data)
}

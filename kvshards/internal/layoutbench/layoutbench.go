// Package layoutbench compares the store's fan-out of single files with the
// alternative it was chosen over, packed append-only files with an index, on
// build rate, random-read latency and bytes of disk per chunk beyond the K/V
// payload. Used by the kvshards benchmarks and by the shardbench command.
package layoutbench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"cacheclip/kernels"
	"cacheclip/kvshards"

	"golang.org/x/sys/unix"
)

// Config is one comparison.
type Config struct {
	Dir                           string
	N                             int // shards
	Layers, KVHeads, HeadDim, Tok int
	DType                         kernels.DType
	Reads                         int  // random reads timed
	NoSync                        bool // skip fsync (measures the layout, not the disk's flush latency)
	Cold                          bool // drop each file's page cache before a read (fan-out) / the pack's (packed)
}

// Result is one layout's figures.
type Result struct {
	Layout           string
	BuildPerSec      float64
	ReadP50, ReadP99 time.Duration
	ReadMean         time.Duration
	DiskBytes        int64   // allocated blocks of every file and directory
	PayloadPerChunk  int64   // K/V bytes of one chunk
	OverheadPerChunk float64 // (DiskBytes − N·payload) / N
	Files            int
}

func (r Result) String() string {
	return fmt.Sprintf("%-7s build %8.0f shards/s  read p50 %8v p99 %8v mean %8v  disk %s  overhead %.0f B/chunk (%.1f%% of payload)  files %d",
		r.Layout, r.BuildPerSec, r.ReadP50, r.ReadP99, r.ReadMean, human(r.DiskBytes), r.OverheadPerChunk,
		100*r.OverheadPerChunk/float64(r.PayloadPerChunk), r.Files)
}

func human(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// template holds one chunk's K/V; chunk i differs only in its tokens, which
// is enough for distinct keys, and encoding it (part of both layouts' build
// loops, as in a real build) costs the same as for any other values.
func template(c Config) *kvshards.ChunkKV {
	kv := &kvshards.ChunkKV{Tokens: make([]int32, c.Tok), Layers: c.Layers, KVHeads: c.KVHeads, HeadDim: c.HeadDim,
		K: make([][]float32, c.Layers), V: make([][]float32, c.Layers)}
	r := rand.New(rand.NewPCG(1, 1))
	n := c.Tok * c.KVHeads * c.HeadDim
	for l := range c.Layers {
		kv.K[l], kv.V[l] = make([]float32, n), make([]float32, n)
		for j := range n {
			kv.K[l][j], kv.V[l][j] = r.Float32(), r.Float32()
		}
	}
	return kv
}

func setTokens(kv *kvshards.ChunkKV, i int) {
	for t := range kv.Tokens {
		kv.Tokens[t] = int32(i*len(kv.Tokens) + t)
	}
}

// Run measures both layouts and returns fan-out, packed.
func Run(ctx context.Context, c Config) ([2]Result, error) {
	var out [2]Result
	var fp [32]byte
	ph := kvshards.PrefixHash(nil)
	want := kvshards.Expect{Fingerprint: fp, PrefixHash: ph}
	payload := 2 * int64(c.Layers) * int64(c.Tok*c.KVHeads*c.HeadDim) * int64(c.DType.Size())
	kv := template(c)
	keys := make([]kvshards.Key, c.N)

	// Fan-out: the real store, write and read paths.
	fdir := filepath.Join(c.Dir, "fanout")
	o := kvshards.Options{DType: c.DType, NoSync: c.NoSync, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	st, err := kvshards.OpenStore(fdir, o)
	if err != nil {
		return out, err
	}
	t0 := time.Now()
	for i := range keys {
		setTokens(kv, i)
		if keys[i], _, err = st.Put(ctx, kv, fp, ph); err != nil {
			return out, err
		}
	}
	out[0].BuildPerSec = float64(c.N) / time.Since(t0).Seconds()
	out[0].Layout = "fan-out"
	if c.Cold {
		unix.Sync() // fadvise cannot drop dirty pages (NoSync builds leave them dirty)
	}
	rng := rand.New(rand.NewPCG(42, 42))
	kd := make([]float32, c.Tok*c.KVHeads*c.HeadDim)
	vd := make([]float32, len(kd))
	lat := make([]time.Duration, 0, c.Reads)
	for range c.Reads {
		i := rng.IntN(c.N)
		if c.Cold {
			dropCache(st.Path(keys[i]))
		}
		t := time.Now()
		h, err := st.Open(ctx, keys[i], want)
		if err != nil {
			return out, err
		}
		for l := range c.Layers {
			if err := h.CopyInto(l, kd, vd); err != nil {
				return out, err
			}
		}
		h.Close()
		lat = append(lat, time.Since(t))
	}
	fill(&out[0], lat)
	out[0].DiskBytes, out[0].Files = du(fdir)

	// Packed: 1 GiB segments of records aligned to 64 bytes, an append-only
	// index of 64-byte entries (key, segment, offset, length) loaded into a map.
	pdir := filepath.Join(c.Dir, "packed")
	p, err := openPack(pdir, c.NoSync)
	if err != nil {
		return out, err
	}
	t0 = time.Now()
	for i := range keys {
		setTokens(kv, i)
		data, k, err := kvshards.Encode(kv, fp, ph, c.DType)
		if err != nil {
			return out, err
		}
		if err := p.put(k, data); err != nil {
			return out, err
		}
	}
	if err := p.close(); err != nil {
		return out, err
	}
	out[1].BuildPerSec = float64(c.N) / time.Since(t0).Seconds()
	out[1].Layout = "packed"
	if c.Cold {
		unix.Sync()
	}
	p, err = openPack(pdir, c.NoSync) // reopen: index read back from disk, segments mapped once
	if err != nil {
		return out, err
	}
	defer p.close()
	rng = rand.New(rand.NewPCG(42, 42))
	lat = lat[:0]
	var buf []byte
	for range c.Reads {
		i := rng.IntN(c.N)
		if c.Cold {
			p.dropCache(keys[i])
		}
		t := time.Now()
		var h *kvshards.Shard
		// Mapped pages are not dropped by fadvise, so cold reads use pread.
		h, buf, err = p.get(keys[i], c.Cold, buf)
		if err != nil {
			return out, err
		}
		for l := range c.Layers {
			if err := h.CopyInto(l, kd, vd); err != nil {
				return out, err
			}
		}
		h.Close()
		lat = append(lat, time.Since(t))
	}
	fill(&out[1], lat)
	out[1].DiskBytes, out[1].Files = du(pdir)
	for i := range out {
		out[i].PayloadPerChunk = payload
		out[i].OverheadPerChunk = float64(out[i].DiskBytes-int64(c.N)*payload) / float64(c.N)
	}
	return out, nil
}

func fill(r *Result, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	r.ReadP50, r.ReadP99, r.ReadMean = lat[len(lat)/2], lat[len(lat)*99/100], sum/time.Duration(len(lat))
}

func dropCache(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	f.Close()
}

// du sums allocated blocks (st_blocks·512) of every file and directory.
func du(dir string) (int64, int) {
	var total int64
	files := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if s, ok := info.Sys().(*syscall.Stat_t); ok {
			total += s.Blocks * 512
		}
		if !d.IsDir() {
			files++
		}
		return nil
	})
	return total, files
}

const (
	segLimit  = 1 << 30
	entrySize = 64
)

type loc struct {
	seg      int
	off, len int64
}

type pack struct {
	dir    string
	noSync bool
	index  map[kvshards.Key]loc
	segs   []*os.File
	maps   [][]byte
	idx    *os.File
	cur    int64
}

func openPack(dir string, noSync bool) (*pack, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := &pack{dir: dir, noSync: noSync, index: map[kvshards.Key]loc{}}
	var err error
	if p.idx, err = os.OpenFile(filepath.Join(dir, "index"), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(p.idx)
	if err != nil {
		return nil, err
	}
	for e := 0; e+entrySize <= len(raw); e += entrySize {
		var k kvshards.Key
		copy(k[:], raw[e:])
		p.index[k] = loc{seg: int(binary.LittleEndian.Uint32(raw[e+32:])), off: int64(binary.LittleEndian.Uint64(raw[e+36:])), len: int64(binary.LittleEndian.Uint64(raw[e+44:]))}
	}
	for s := 0; ; s++ {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("seg%05d", s)), os.O_RDWR, 0o644)
		if err != nil {
			break
		}
		p.segs = append(p.segs, f)
	}
	for _, f := range p.segs {
		fi, _ := f.Stat()
		if fi.Size() == 0 {
			p.maps = append(p.maps, nil)
			continue
		}
		m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return nil, err
		}
		p.maps = append(p.maps, m)
	}
	if n := len(p.segs); n > 0 {
		fi, _ := p.segs[n-1].Stat()
		p.cur = fi.Size()
	}
	return p, nil
}

func (p *pack) put(k kvshards.Key, data []byte) error {
	if len(p.segs) == 0 || p.cur+int64(len(data)) > segLimit {
		f, err := os.OpenFile(filepath.Join(p.dir, fmt.Sprintf("seg%05d", len(p.segs))), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		p.segs, p.cur = append(p.segs, f), 0
	}
	seg := len(p.segs) - 1
	if _, err := p.segs[seg].WriteAt(data, p.cur); err != nil {
		return err
	}
	// Durability equal to the fan-out's: record, then its index entry, each flushed.
	if !p.noSync {
		if err := unix.Fdatasync(int(p.segs[seg].Fd())); err != nil {
			return err
		}
	}
	var e [entrySize]byte
	copy(e[:], k[:])
	binary.LittleEndian.PutUint32(e[32:], uint32(seg))
	binary.LittleEndian.PutUint64(e[36:], uint64(p.cur))
	binary.LittleEndian.PutUint64(e[44:], uint64(len(data)))
	if _, err := p.idx.Write(e[:]); err != nil {
		return err
	}
	if !p.noSync {
		if err := unix.Fdatasync(int(p.idx.Fd())); err != nil {
			return err
		}
	}
	p.index[k] = loc{seg: seg, off: p.cur, len: int64(len(data))}
	p.cur += (int64(len(data)) + 63) &^ 63
	return nil
}

func (p *pack) get(k kvshards.Key, pread bool, buf []byte) (*kvshards.Shard, []byte, error) {
	l, ok := p.index[k]
	if !ok || l.seg >= len(p.maps) {
		return nil, buf, fmt.Errorf("packed: key %s not found", k)
	}
	if !pread {
		h, err := kvshards.FromBytes(p.maps[l.seg][l.off : l.off+l.len])
		return h, buf, err
	}
	buf = slices.Grow(buf[:0], int(l.len))[:l.len]
	if _, err := p.segs[l.seg].ReadAt(buf, l.off); err != nil {
		return nil, buf, err
	}
	h, err := kvshards.FromBytes(buf)
	return h, buf, err
}

func (p *pack) dropCache(k kvshards.Key) {
	l := p.index[k]
	unix.Fadvise(int(p.segs[l.seg].Fd()), l.off, l.len, unix.FADV_DONTNEED)
}

func (p *pack) close() error {
	for _, m := range p.maps {
		if m != nil {
			unix.Munmap(m)
		}
	}
	for _, f := range p.segs {
		f.Close()
	}
	return p.idx.Close()
}

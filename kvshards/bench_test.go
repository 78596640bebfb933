package kvshards_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"
	"unsafe"

	"cacheclip/kernels"
	"cacheclip/kvshards"
	"cacheclip/kvshards/internal/layoutbench"
	"cacheclip/kvshards/kvtest"

	"golang.org/x/sys/unix"
)

// Qwen2.5-0.5B's cache shape: 24 layers × 2 KV heads × 64 head dim; 512-token chunks.
const bLayers, bKVH, bHD, bTok = 24, 2, 64, 512

func benchShard(b *testing.B, dt kernels.DType, verify kvshards.VerifyMode) (*kvshards.Store, kvshards.Key, kvshards.Expect) {
	return benchShardShape(b, dt, verify, bLayers, bKVH, bHD, bTok)
}

func benchShardShape(b *testing.B, dt kernels.DType, verify kvshards.VerifyMode, layers, kvh, hd, tok int) (*kvshards.Store, kvshards.Key, kvshards.Expect) {
	b.Helper()
	o := kvshards.Options{DType: dt, Verify: verify, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s, err := kvshards.OpenStore(b.TempDir(), o)
	if err != nil {
		b.Fatal(err)
	}
	c := kvtest.New(5, layers, kvh, hd)
	chunk := make([]int32, tok)
	for i := range chunk {
		chunk[i] = int32(i)
	}
	r, err := s.Ensure(context.Background(), c, nil, chunk)
	if err != nil {
		b.Fatal(err)
	}
	return s, r.Key, kvshards.ExpectFor(c, nil)
}

func slots() (k, v [][]float32) {
	n := bTok * bKVH * bHD
	k, v = make([][]float32, bLayers), make([][]float32, bLayers)
	for l := range bLayers {
		k[l], v[l] = make([]float32, n), make([]float32, n)
	}
	return k, v
}

// BenchmarkCopyInto loads a shard's layers into engine cache slots from a
// warm page cache, and in the same run copies the same f32 bytes with copy()
// (memmove); the ratio metric is memmove time / CopyInto time (≥ 0.8 wanted).
func BenchmarkCopyInto(b *testing.B) {
	for _, dt := range []kernels.DType{kernels.F32, kernels.BF16, kernels.F16} {
		b.Run(dt.String()+"/warm", func(b *testing.B) {
			s, key, want := benchShard(b, dt, kvshards.VerifyEveryOpen)
			h, err := s.Open(context.Background(), key, want)
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			kd, vd := slots()
			ks, vs := slots() // memmove sources, as big as the f32 destination
			// Written so that they are backed by real pages: untouched fresh
			// allocations all map the kernel's zero page, which stays in L1 and
			// would make memmove look several times faster than any real copy.
			for l := range bLayers {
				for i := range ks[l] {
					ks[l][i], vs[l][i] = float32(i), float32(-i)
				}
			}
			for l := range bLayers { // and the destinations, so neither side takes first-touch faults
				clear(kd[l])
				clear(vd[l])
			}
			b.SetBytes(int64(2 * bLayers * bTok * bKVH * bHD * 4))
			var tCopy, tMove time.Duration
			for b.Loop() {
				t0 := time.Now()
				for l := range bLayers {
					if err := h.CopyInto(l, kd[l], vd[l]); err != nil {
						b.Fatal(err)
					}
				}
				t1 := time.Now()
				for l := range bLayers {
					copy(kd[l], ks[l])
					copy(vd[l], vs[l])
				}
				tCopy += t1.Sub(t0)
				tMove += time.Since(t1)
			}
			b.ReportMetric(tMove.Seconds()/tCopy.Seconds(), "memmove/copyinto")
			b.ReportMetric(float64(b.N)*float64(2*bLayers*bTok*bKVH*bHD*4)/tCopy.Seconds()/1e9, "copyinto_GB/s")
			b.ReportMetric(float64(b.N)*float64(2*bLayers*bTok*bKVH*bHD*4)/tMove.Seconds()/1e9, "memmove_GB/s")
		})
		for _, mode := range []struct {
			name string
			v    kvshards.VerifyMode
		}{{"cold-verify", kvshards.VerifyEveryOpen}, {"cold-verify-once", kvshards.VerifyOncePerProcess}} {
			b.Run(dt.String()+"/"+mode.name, func(b *testing.B) {
				s, key, want := benchShard(b, dt, mode.v)
				kd, vd := slots()
				ctx := context.Background()
				if h, err := s.Open(ctx, key, want); err == nil { // first verification, for the once mode
					h.Close()
				}
				fi, _ := os.Stat(s.Path(key))
				b.SetBytes(fi.Size())
				var resident float64
				for b.Loop() {
					b.StopTimer()
					resident += dropAndCount(b, s.Path(key))
					b.StartTimer()
					h, err := s.Open(ctx, key, want)
					if err != nil {
						b.Fatal(err)
					}
					for l := range bLayers {
						if err := h.CopyInto(l, kd[l], vd[l]); err != nil {
							b.Fatal(err)
						}
					}
					h.Close()
				}
				b.ReportMetric(resident/float64(b.N), "resident_frac_after_drop")
			})
		}
	}
}

// dropAndCount evicts path from the page cache and returns the fraction of
// its pages still resident (mincore), to show the drop worked.
func dropAndCount(b *testing.B, path string) float64 {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Fatal(err)
	}
	fi, _ := f.Stat()
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		b.Fatal(errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return float64(n) / float64(len(vec))
}

// BenchmarkOpen times a shard open: a cache hit, a map with full checksum
// verification, and a map trusting an earlier verification.
func BenchmarkOpen(b *testing.B) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		v     kvshards.VerifyMode
		cache bool
		small bool
	}{{"cache-hit", kvshards.VerifyEveryOpen, true, false}, {"map+verify", kvshards.VerifyEveryOpen, false, false},
		{"map+verify-once", kvshards.VerifyOncePerProcess, false, false}, {"small-8KiB/map+verify", kvshards.VerifyEveryOpen, false, true}} {
		b.Run(tc.name, func(b *testing.B) {
			layers, kvh, hd, tok := bLayers, bKVH, bHD, bTok
			if tc.small { // the shardbench shape
				layers, kvh, hd, tok = 2, 2, 16, 32
			}
			s, key, want := benchShardShape(b, kernels.BF16, tc.v, layers, kvh, hd, tok)
			if tc.cache {
				s.Close()
				o := kvshards.Options{DType: kernels.BF16, CacheBytes: 1 << 30, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
				var err error
				if s, err = kvshards.OpenStore(s.Dir(), o); err != nil {
					b.Fatal(err)
				}
			}
			fi, _ := os.Stat(s.Path(key))
			b.SetBytes(fi.Size())
			if h, err := s.Open(ctx, key, want); err == nil { // fill the cache; outside the timing
				h.Close()
			}
			for b.Loop() {
				h, err := s.Open(ctx, key, want)
				if err != nil {
					b.Fatal(err)
				}
				h.Close()
			}
		})
	}
}

// BenchmarkLayout compares the fan-out store with packed files and an index
// on a few thousand small shards; kvshards/shardbench runs the same at 1e5.
func BenchmarkLayout(b *testing.B) {
	for _, sync := range []bool{false, true} {
		b.Run(fmt.Sprintf("fsync=%v", sync), func(b *testing.B) {
			for b.Loop() {
				res, err := layoutbench.Run(context.Background(), layoutbench.Config{Dir: b.TempDir(), N: 2000, Layers: 2, KVHeads: 2,
					HeadDim: 16, Tok: 32, DType: kernels.BF16, Reads: 2000, NoSync: !sync})
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range res {
					b.ReportMetric(r.BuildPerSec, r.Layout+"_build/s")
					b.ReportMetric(float64(r.ReadP50.Microseconds()), r.Layout+"_read_p50_µs")
					b.ReportMetric(r.OverheadPerChunk, r.Layout+"_overhead_B/chunk")
				}
			}
		})
	}
}

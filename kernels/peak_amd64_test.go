//go:build !purego

package kernels

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/cpu"
)

// BenchmarkFMAPeak measures the f32 FMA peak of all cores (one goroutine per
// thread of the default pool) so that product figures can be stated as ratios.
func BenchmarkFMAPeak(b *testing.B) {
	if !cpu.X86.HasAVX512F {
		b.Skip("no AVX-512")
	}
	const iters = 1 << 20
	threads := NewPool(0).Threads()
	for b.Loop() {
		var wg sync.WaitGroup
		for range threads {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fmaPeakAVX512(iters)
			}()
		}
		wg.Wait()
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(float64(threads)*iters*24*32/sec/1e9, "GFLOP/s")
}

// readProbe streams buf once, split evenly over threads goroutines, with the
// AVX-512 read probe; it returns the OR of what was read so the work is used.
func readProbe(buf []byte, threads int) uint64 {
	var wg sync.WaitGroup
	res := make([]uint64, threads)
	part := len(buf) / threads &^ 255
	for t := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[t] = readBWAVX512(&buf[t*part], part)
		}()
	}
	wg.Wait()
	var or uint64
	for _, r := range res {
		or |= r
	}
	return or
}

// TestReadProbe checks what the probe reads: it ORs all 64-byte lines together
// and returns the first 8 bytes of that, so a lone set byte shows up exactly
// when its offset within its line is below 8, wherever the line is.
func TestReadProbe(t *testing.T) {
	if !cpu.X86.HasAVX512F {
		t.Skip("no AVX-512")
	}
	buf := make([]byte, 4096)
	for _, off := range []int{0, 7, 64, 1000 * 4, 4095 &^ 63} {
		clear(buf)
		buf[off] = 0x80
		want := uint64(0)
		if off%64 < 8 {
			want = 0x80 << (8 * (off % 64))
		}
		if got := readBWAVX512(&buf[0], len(buf)); got != want {
			t.Errorf("bit at byte %d: got %#x, want %#x", off, got, want)
		}
	}
}

// BenchmarkDecodeBandwidth holds the decode matrix–vector products to the
// machine's read bandwidth: each iteration streams a 1 GiB array with the
// two-thread probe (which also evicts the weights from the last-level cache)
// and then runs one product, so the two are measured alternately under the
// same load. ofProbe is the product's weight bytes/s over the probe's bytes/s,
// both from their fastest iteration.
func BenchmarkDecodeBandwidth(b *testing.B) {
	if !cpu.X86.HasAVX512F {
		b.Skip("no AVX-512")
	}
	p := NewPool(0)
	buf := make([]byte, 1<<30)
	for i := range buf {
		buf[i] = byte(i)
	}
	for _, sh := range []struct {
		d         DType
		n, k, out int
		q8        bool // Mat.Q8Act: the integer path (quant_q8.go)
	}{
		{BF16, 1, 4096, 14336, false}, {F16, 1, 4096, 14336, false},
		{BF16, 1, 896, 4864, false}, {BF16, 1, 4864, 896, false},
		{Q4_1, 1, 4096, 14336, false}, {Q8_0, 1, 4096, 14336, false}, {Q4_1, 1, 576, 1536, false}, {Q8_0, 1, 576, 49152, false},
		{Q4_1, 1, 4096, 14336, true}, {Q8_0, 1, 4096, 14336, true}, {Q4_1, 1, 576, 1536, true}, {Q4_1, 1, 1536, 576, true}, {Q8_0, 1, 576, 49152, true},
	} {
		rng := rand.New(rand.NewPCG(7, 8))
		w := anyMat(rng, sh.d, sh.out, sh.k)
		if !sh.d.Quantized() {
			w = Pack(w) // as the loaders keep f32/f16/bf16 weights
		}
		w.Q8Act = sh.q8
		x := randVec(rng, sh.n*sh.k)
		dst := make([]float32, sh.n*sh.out)
		b.Run(fmt.Sprintf("%s/%s%s/%dx%dx%d", p.Kernels().Name(), sh.d, map[bool]string{true: "-q8act"}[sh.q8], sh.n, sh.k, sh.out), func(b *testing.B) {
			// Best of the iterations for both: on the shared machine an
			// iteration that lost a core to another process says nothing
			// about either kernel, and the minimum discards it.
			probe, prod := time.Duration(1<<62), time.Duration(1<<62)
			for b.Loop() {
				t0 := time.Now()
				readProbe(buf, p.Threads())
				t1 := time.Now()
				MatMul(p, dst, x, sh.n, w)
				prod = min(prod, time.Since(t1))
				probe = min(probe, t1.Sub(t0))
			}
			probeBW := float64(len(buf)) / probe.Seconds() / 1e9
			prodBW := float64(w.Bytes()) / prod.Seconds() / 1e9
			b.ReportMetric(probeBW, "probeGB/s")
			b.ReportMetric(prodBW, "weightGB/s")
			b.ReportMetric(prodBW/probeBW, "ofProbe")
		})
	}
}

// BenchmarkMatVecL2: one thread, a 1 MiB weight matrix that stays in L2, so the
// figure is the kernel's own ceiling in weight bytes/s; where it is not well
// above half the probe's two-thread rate, the kernel and not memory bounds decode.
func BenchmarkMatVecL2(b *testing.B) {
	p, _ := NewPoolWith(PoolOptions{Threads: 1})
	for _, d := range []DType{BF16, F16, F32} {
		// 1 row (decode) and 8 (a batch of decoding sequences: the 4×4 kernels)
		for _, n := range []int{1, 8} {
			const k, out = 2048, 256
			b.Run(fmt.Sprintf("%s/%s/%dx%dx%d", p.Kernels().Name(), d, n, k, out), func(b *testing.B) { benchMatMul(b, p, d, n, k, out) })
		}
	}
}

// BenchmarkBatchedDecode: one decode step of a batch of M sequences is an
// M-row product whose weights, streamed from memory once per step, bound it
// for small M. Each iteration evicts the weights with the read probe, then
// runs MatMul on the weights in panel layout (as the loaders keep them) and,
// alternately, MatMul on the same weights row-major (rows-GFLOP/s: the
// matrix–vector path up to matVecRows rows, the packed product above), so
// the two layouts can be compared in one run. Reported: GFLOP/s, weight
// bytes/s and that over the probe's bytes/s (panels), rows-GFLOP/s and, for
// 2 or more rows, widen-GFLOP/s (the widen-then-GEMM panel path, see below).
func BenchmarkBatchedDecode(b *testing.B) {
	if !cpu.X86.HasAVX512F {
		b.Skip("no AVX-512")
	}
	p := NewPool(0)
	ks := p.Kernels()
	// widen is the set without its eight-row panel kernels: the 2–32-row
	// products widen 16-bit panels into L1 and run the GEMM micro-kernels
	// (widen-GFLOP/s), the path the eight-row kernels replaced.
	widen := *ks
	widen.gemmPanel8F32, widen.gemmPanel8BF16, widen.gemmPanel8F16 = nil, nil, nil
	buf := make([]byte, 1<<30)
	for i := range buf {
		buf[i] = byte(i)
	}
	for _, sh := range []struct {
		name   string
		d      DType
		k, out int
	}{
		{"qwen-up", BF16, 896, 4864}, {"qwen-down", BF16, 4864, 896},
		{"7b-up", BF16, 4096, 14336}, {"7b-up", F16, 4096, 14336}, {"7b-up", F32, 4096, 14336},
	} {
		rng := rand.New(rand.NewPCG(7, 8))
		w := randMat(rng, sh.d, sh.out, sh.k)
		pw := Pack(w)
		for _, m := range []int{1, 8, 16, 32} {
			x := randVec(rng, m*sh.k)
			dst := make([]float32, m*sh.out)
			fl := 2 * float64(m) * float64(sh.k) * float64(sh.out) / 1e9
			b.Run(fmt.Sprintf("%s/%s/%s/M%d", ks.Name(), sh.name, sh.d, m), func(b *testing.B) {
				other, otherName := func() { MatMul(p, dst, x, m, w) }, "rows"
				probe, prod, alt, wid := time.Duration(1<<62), time.Duration(1<<62), time.Duration(1<<62), time.Duration(1<<62)
				for b.Loop() {
					t0 := time.Now()
					readProbe(buf, p.Threads())
					t1 := time.Now()
					MatMul(p, dst, x, m, pw)
					t2 := time.Now()
					readProbe(buf, p.Threads())
					t3 := time.Now()
					other()
					alt = min(alt, time.Since(t3))
					prod = min(prod, t2.Sub(t1))
					probe = min(probe, t1.Sub(t0))
					if m > 1 {
						readProbe(buf, p.Threads())
						t4 := time.Now()
						matMulPanelsSmall(p, &widen, dst, x, m, pw)
						wid = min(wid, time.Since(t4))
					}
				}
				if m > 1 {
					b.ReportMetric(fl/wid.Seconds(), "widen-GFLOP/s")
				}
				probeBW := float64(len(buf)) / probe.Seconds() / 1e9
				b.ReportMetric(probeBW, "probeGB/s")
				b.ReportMetric(fl/prod.Seconds(), "GFLOP/s")
				b.ReportMetric(float64(w.Bytes())/prod.Seconds()/1e9/probeBW, "ofProbe")
				b.ReportMetric(float64(w.Bytes())/prod.Seconds()/1e9, "weightGB/s")
				b.ReportMetric(fl/alt.Seconds(), otherName+"-GFLOP/s")
			})
		}
	}
}

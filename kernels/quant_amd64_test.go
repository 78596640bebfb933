//go:build !purego && linux

package kernels

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/cpu"
	"golang.org/x/sys/unix"
)

// BenchmarkQuantDecodeBandwidth: one decode row over quantized weights
// against the read-bandwidth probe in the same iteration (as
// BenchmarkDecodeBandwidth does for bf16/f16), keeping the fastest iteration
// of each. weightGB/s counts the blocks' bytes; Mweights/s the weights, the
// figure to set beside an f32 or bf16 product's.
func BenchmarkQuantDecodeBandwidth(b *testing.B) {
	if !cpu.X86.HasAVX512F {
		b.Skip("no AVX-512")
	}
	p := NewPool(0)
	buf := make([]byte, 1<<30)
	for i := range buf {
		buf[i] = byte(i)
	}
	for _, sh := range []struct {
		d      DType
		k, out int
	}{
		{Q4_1, 4096, 14336}, {Q8_0, 4096, 14336}, {BF16, 4096, 14336},
		{Q4_1, 576, 1536}, {Q4_1, 1536, 576}, {Q8_0, 576, 49152},
	} {
		rng := rand.New(rand.NewPCG(7, 8))
		var w Mat
		if sh.d.Quantized() {
			w = randQuantMat(rng, sh.d, sh.out, sh.k)
		} else {
			w = randMat(rng, sh.d, sh.out, sh.k)
		}
		x := randVec(rng, sh.k)
		dst := make([]float32, sh.out)
		b.Run(fmt.Sprintf("%s/%s/1x%dx%d", p.Kernels().Name(), sh.d, sh.k, sh.out), func(b *testing.B) {
			probe, prod := time.Duration(1<<62), time.Duration(1<<62)
			for b.Loop() {
				t0 := time.Now()
				readProbe(buf, p.Threads())
				t1 := time.Now()
				MatMul(p, dst, x, 1, w)
				prod = min(prod, time.Since(t1))
				probe = min(probe, t1.Sub(t0))
			}
			probeBW := float64(len(buf)) / probe.Seconds() / 1e9
			prodBW := float64(w.Bytes()) / prod.Seconds() / 1e9
			b.ReportMetric(probeBW, "probeGB/s")
			b.ReportMetric(prodBW, "weightGB/s")
			b.ReportMetric(prodBW/probeBW, "ofProbe")
			b.ReportMetric(float64(w.Rows*w.Cols)/prod.Seconds()/1e6, "Mweights/s")
		})
	}
}

// BenchmarkQuantKernelCPU: the matrix–vector kernels' own rate, one thread
// on 16 rows of SmolLM2's 576 columns (L1-resident), timed by the thread's
// CPU clock (CLOCK_THREAD_CPUTIME_ID), fastest of 20 trials: on a machine
// shared with other jobs wall time counts the slices other processes take,
// CPU time does not. Mweights/s set beside the f32 and bf16 kernels' says
// what the in-register dequantization costs per weight.
func BenchmarkQuantKernelCPU(b *testing.B) {
	if avx512Quant == nil {
		b.Skip("no AVX-512 quantized kernels")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const rows, cols, reps = 16, 576, 2000
	rng := rand.New(rand.NewPCG(1, 2))
	x := randVec(rng, cols)
	sx := make([]float32, 32)
	blockSums(sx, x)
	out := make([]float32, 4)
	ks, _ := Select("avx512")
	cases := map[string]func(g int){}
	for _, d := range []DType{Q4_1, Q8_0} {
		w := randQuantMat(rng, d, rows, cols)
		rb, f := QuantRowBytes(d, cols), avx512Quant.gemv4[d]
		cases[d.String()] = func(g int) { f(cols/QuantBlock, &w.Q[g*4*rb], rb, &x[0], &sx[0], &out[0]) }
	}
	wf, wb := randMat(rng, F32, rows, cols), randMat(rng, BF16, rows, cols)
	cases["f32"] = func(g int) { ks.gemv4F32(cols, &wf.F32[g*4*cols], cols, &x[0], &out[0]) }
	cases["bf16"] = func(g int) { ks.gemv4BF16(cols, &wb.U16[g*4*cols], cols, &x[0], &out[0]) }
	cpuNow := func() int64 {
		var ts unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
		return ts.Nano()
	}
	for _, name := range []string{"q4_1", "q8_0", "bf16", "f32"} {
		f := cases[name]
		b.Run(name, func(b *testing.B) {
			best := int64(1 << 62)
			for b.Loop() {
				for trial := 0; trial < 20; trial++ {
					t0 := cpuNow()
					for it := 0; it < reps; it++ {
						for g := 0; g < rows/4; g++ {
							f(g)
						}
					}
					best = min(best, cpuNow()-t0)
				}
			}
			b.ReportMetric(float64(reps*rows*cols)/float64(best)*1e3, "Mweights/s")
		})
	}
}

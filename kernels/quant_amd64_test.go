//go:build !purego && linux

package kernels

import (
	"math/rand/v2"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkQuantKernelCPU: the matrix–vector kernels' own rate, one thread
// on 16 rows of SmolLM2's 576 columns (L1-resident), timed by the thread's
// CPU clock (CLOCK_THREAD_CPUTIME_ID), fastest of 20 trials: on a machine
// shared with other jobs wall time counts the slices other processes take,
// CPU time does not. Mweights/s set beside the f32 and bf16 kernels' says
// what the in-register dequantization costs per weight; the -q8act cases are
// the integer kernels against an 8-bit activation (quant_q8.go).
func BenchmarkQuantKernelCPU(b *testing.B) {
	if avx512Quant == nil {
		b.Skip("no AVX-512 quantized kernels")
	}
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
		fq, a := avx512Quant.gemv4Q8[d], carveQ8(make([]float32, q8Floats(cols/QuantBlock)), cols/QuantBlock)
		avx512Quant.quantizeQ8(a, x)
		cases[d.String()+"-q8act"] = func(g int) { fq(cols/QuantBlock, &w.Q[g*4*rb], rb, &a.qs[0], &a.d[0], &a.s[0], &out[0]) }
	}
	wf, wb := randMat(rng, F32, rows, cols), randMat(rng, BF16, rows, cols)
	cases["f32"] = func(g int) { ks.gemv4F32(cols, &wf.F32[g*4*cols], cols, &x[0], &out[0]) }
	cases["bf16"] = func(g int) { ks.gemv4BF16(cols, &wb.U16[g*4*cols], cols, &x[0], &out[0]) }
	cpuNow := func() int64 {
		var ts unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
		return ts.Nano()
	}
	for _, name := range []string{"q4_1", "q4_1-q8act", "q8_0", "q8_0-q8act", "bf16", "f32"} {
		f := cases[name]
		b.Run(name, func(b *testing.B) {
			// The thread's CPU clock: the sub-benchmark's own goroutine
			// must stay on one thread (locking the parent's did not).
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
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

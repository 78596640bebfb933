//go:build !purego

package kernels

import (
	"sync"
	"testing"

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

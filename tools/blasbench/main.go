// Command blasbench measures the reference figures the kernels are compared with:
// OpenBLAS sgemm (Debian's libopenblas) for the 2048×896 by 896×4864 product, with
// OPENBLAS_CORETYPE=SkylakeX and with OpenBLAS's own CPU detection, and the
// machine's f32 FMA peak (independent VFMADD231PS zmm chains on every thread).
//
// It is its own module so that the main module never needs cgo or OpenBLAS:
//
//	apt-get install -y libopenblas-dev
//	cd tools/blasbench && go run . -threads 2
//
// OpenBLAS reads OPENBLAS_CORETYPE when it is loaded, so each setting runs in a
// child process (this program re-executed with -child).
package main

/*
#cgo CFLAGS: -O2
#cgo LDFLAGS: -lopenblas
#include <cblas.h>
#include <immintrin.h>

extern void openblas_set_num_threads(int);
extern char *openblas_get_corename(void);

static void sgemm_xwt(int m, int n, int k, const float *x, const float *w, float *c) {
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, k, w, k, 0.0f, c, n);
}

// fma_peak runs 16 independent accumulator chains of zmm FMAs: 16·32 flops a step.
__attribute__((target("avx512f")))
static float fma_peak(long iters) {
	// Distinct starting values keep the compiler from merging identical chains.
	__m512 a0 = _mm512_set1_ps(0), a1 = _mm512_set1_ps(1), a2 = _mm512_set1_ps(2), a3 = _mm512_set1_ps(3);
	__m512 a4 = _mm512_set1_ps(4), a5 = _mm512_set1_ps(5), a6 = _mm512_set1_ps(6), a7 = _mm512_set1_ps(7);
	__m512 a8 = _mm512_set1_ps(8), a9 = _mm512_set1_ps(9), a10 = _mm512_set1_ps(10), a11 = _mm512_set1_ps(11);
	__m512 a12 = _mm512_set1_ps(12), a13 = _mm512_set1_ps(13), a14 = _mm512_set1_ps(14), a15 = _mm512_set1_ps(15);
	__m512 x = _mm512_set1_ps(1e-9f), y = _mm512_set1_ps(1e-9f);
	for (long i = 0; i < iters; i++) {
		__asm__ volatile("" : "+v"(x), "+v"(y));
		a0 = _mm512_fmadd_ps(x, y, a0); a1 = _mm512_fmadd_ps(x, y, a1);
		a2 = _mm512_fmadd_ps(x, y, a2); a3 = _mm512_fmadd_ps(x, y, a3);
		a4 = _mm512_fmadd_ps(x, y, a4); a5 = _mm512_fmadd_ps(x, y, a5);
		a6 = _mm512_fmadd_ps(x, y, a6); a7 = _mm512_fmadd_ps(x, y, a7);
		a8 = _mm512_fmadd_ps(x, y, a8); a9 = _mm512_fmadd_ps(x, y, a9);
		a10 = _mm512_fmadd_ps(x, y, a10); a11 = _mm512_fmadd_ps(x, y, a11);
		a12 = _mm512_fmadd_ps(x, y, a12); a13 = _mm512_fmadd_ps(x, y, a13);
		a14 = _mm512_fmadd_ps(x, y, a14); a15 = _mm512_fmadd_ps(x, y, a15);
	}
	__m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
		_mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
	s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)),
		_mm512_add_ps(_mm512_add_ps(a12, a13), _mm512_add_ps(a14, a15))));
	return _mm512_reduce_add_ps(s);
}
*/
import "C"

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
	"unsafe"
)

func main() {
	child := flag.Bool("child", false, "run the sgemm measurement in this process (set by the parent)")
	threads := flag.Int("threads", runtime.NumCPU(), "threads for OpenBLAS and the peak loop")
	reps := flag.Int("reps", 10, "timed repetitions (the median is reported)")
	m := flag.Int("m", 2048, "activation rows")
	k := flag.Int("k", 896, "inner dimension")
	n := flag.Int("n", 4864, "output features")
	shapes := flag.String("shapes", "", "instead of -m/-k/-n: comma-separated MxKxN products, run with OPENBLAS_CORETYPE=SkylakeX only")
	flag.Parse()
	list, err := parseShapes(*shapes)
	if err != nil {
		fmt.Fprintln(os.Stderr, "blasbench: -shapes:", err)
		os.Exit(2)
	}
	if *child {
		if list == nil {
			list = [][3]int{{*m, *k, *n}}
		}
		for _, s := range list {
			sgemm(*threads, *reps, s[0], s[1], s[2])
		}
		return
	}
	if list != nil {
		cmd := exec.Command(os.Args[0], append([]string{"-child"}, os.Args[1:]...)...)
		cmd.Env = append(os.Environ(), fmt.Sprintf("OPENBLAS_NUM_THREADS=%d", *threads), "OPENBLAS_CORETYPE=SkylakeX")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "blasbench: child: %v\n", err)
			os.Exit(1)
		}
		return
	}
	fmt.Printf("shape %dx%d · (%dx%d)ᵀ, %d threads, median of %d\n", *m, *k, *n, *k, *threads, *reps)
	fmt.Printf("fma-peak: %.1f GFLOP/s\n", peak(*threads))
	for _, core := range []string{"SkylakeX", ""} {
		cmd := exec.Command(os.Args[0], append([]string{"-child"}, os.Args[1:]...)...)
		cmd.Env = append(os.Environ(), fmt.Sprintf("OPENBLAS_NUM_THREADS=%d", *threads))
		if core != "" {
			cmd.Env = append(cmd.Env, "OPENBLAS_CORETYPE="+core)
		}
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "blasbench: child for OPENBLAS_CORETYPE=%q: %v\n", core, err)
			os.Exit(1)
		}
	}
	fmt.Printf("fma-peak: %.1f GFLOP/s (again, after)\n", peak(*threads))
}

func peak(threads int) float64 {
	const iters = 1 << 24
	best := 0.0
	for r := 0; r < 3; r++ {
		var wg sync.WaitGroup
		t0 := time.Now()
		for range threads {
			wg.Add(1)
			go func() {
				defer wg.Done()
				C.fma_peak(iters)
			}()
		}
		wg.Wait()
		best = max(best, float64(threads)*iters*16*32/time.Since(t0).Seconds()/1e9)
	}
	return best
}

func sgemm(threads, reps, m, k, n int) {
	C.openblas_set_num_threads(C.int(threads))
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, m*k)
	w := make([]float32, n*k)
	c := make([]float32, m*n)
	for i := range x {
		x[i] = rng.Float32()*2 - 1
	}
	for i := range w {
		w[i] = rng.Float32()*2 - 1
	}
	run := func() time.Duration {
		t0 := time.Now()
		C.sgemm_xwt(C.int(m), C.int(n), C.int(k), (*C.float)(unsafe.Pointer(&x[0])), (*C.float)(unsafe.Pointer(&w[0])), (*C.float)(unsafe.Pointer(&c[0])))
		return time.Since(t0)
	}
	run()
	ts := make([]float64, reps)
	for i := range ts {
		ts[i] = run().Seconds()
	}
	sort.Float64s(ts)
	flops := 2 * float64(m) * float64(k) * float64(n)
	fmt.Printf("openblas OPENBLAS_CORETYPE=%q core=%s %dx%dx%d: median %.1f GFLOP/s, best %.1f GFLOP/s\n",
		os.Getenv("OPENBLAS_CORETYPE"), C.GoString(C.openblas_get_corename()), m, k, n, flops/ts[len(ts)/2]/1e9, flops/ts[0]/1e9)
}

// parseShapes reads "2048x896x4864,2048x4864x896" (nil for "").
func parseShapes(s string) ([][3]int, error) {
	if s == "" {
		return nil, nil
	}
	var out [][3]int
	for _, f := range strings.Split(s, ",") {
		var sh [3]int
		if _, err := fmt.Sscanf(strings.TrimSpace(f), "%dx%dx%d", &sh[0], &sh[1], &sh[2]); err != nil || sh[0] < 1 || sh[1] < 1 || sh[2] < 1 {
			return nil, fmt.Errorf("%q is not MxKxN with positive sizes", f)
		}
		out = append(out, sh)
	}
	return out, nil
}

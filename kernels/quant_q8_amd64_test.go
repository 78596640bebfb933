//go:build !purego && linux

package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/unix"
)

// TestQ8ActReadsNoFurther: the integer kernels read a matrix that ends
// exactly at an inaccessible page without faulting — the masked loads of a
// last group of 1–15 blocks, and the last rows' single-row calls — and give
// the portable set's bits there.
func TestQ8ActReadsNoFurther(t *testing.T) {
	page := unix.Getpagesize()
	rng := rand.New(rand.NewPCG(5, 5))
	for _, d := range []DType{Q4_1, Q8_0} {
		for _, shape := range [][2]int{{5, 576}, {3, 32}, {7, 1056}, {1, 480}} {
			N, K := shape[0], shape[1]
			src := randQuantMat(rng, d, N, K)
			size := len(src.Q)
			pages := (size+page-1)/page + 1
			mem, err := unix.Mmap(-1, 0, pages*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
			if err != nil {
				t.Fatal(err)
			}
			guard := (pages - 1) * page
			if err := unix.Mprotect(mem[guard:], unix.PROT_NONE); err != nil {
				t.Fatal(err)
			}
			w := src
			w.Q = mem[guard-size : guard]
			copy(w.Q, src.Q)
			w.Q8Act = true
			x := randVec(rng, K)
			var first []float32
			for _, p := range testPools(t) {
				got := make([]float32, N)
				MatMul(p, got, x, 1, w)
				if first == nil {
					first = got
					continue
				}
				if fmt.Sprint(got) != fmt.Sprint(first) {
					t.Errorf("%s %s %dx%d at a guard page: %v, generic %v", p.Kernels().Name(), d, N, K, got, first)
				}
			}
			if err := unix.Munmap(mem); err != nil {
				t.Fatal(err)
			}
		}
	}
}

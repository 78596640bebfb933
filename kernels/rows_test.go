package kernels

import (
	"math/rand/v2"
	"testing"
)

func TestGatherScatterRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	p := NewPool(2)
	for _, c := range []struct{ rows, width, pick int }{{1, 1, 1}, {10, 7, 3}, {300, 33, 200}, {5, 16, 0}} {
		src := randVec(rng, c.rows*c.width)
		idx := make([]int32, 0, c.pick)
		for _, r := range rng.Perm(c.rows)[:c.pick] {
			idx = append(idx, int32(r))
		}
		g := make([]float32, c.pick*c.width)
		GatherRows(p, g, src, idx, c.width)
		for i, r := range idx {
			for j := 0; j < c.width; j++ {
				if g[i*c.width+j] != src[int(r)*c.width+j] {
					t.Fatalf("%+v: gathered row %d col %d", c, i, j)
				}
			}
		}
		dst := make([]float32, c.rows*c.width)
		for i := range dst {
			dst[i] = -1
		}
		ScatterRows(p, dst, g, idx, c.width)
		picked := map[int32]bool{}
		for _, r := range idx {
			picked[r] = true
		}
		for r := 0; r < c.rows; r++ {
			for j := 0; j < c.width; j++ {
				want := float32(-1)
				if picked[int32(r)] {
					want = src[r*c.width+j]
				}
				if dst[r*c.width+j] != want {
					t.Fatalf("%+v: scattered row %d col %d = %g want %g", c, r, j, dst[r*c.width+j], want)
				}
			}
		}
	}
}

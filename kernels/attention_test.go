package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// refAttention is the naive float64 definition: per row and head, all logits,
// per-group softmax, groups merged by exp(c_g·lse_g).
func refAttention(out, q []float32, rowPos []int32, k, v []float32, slotPos []int32, s AttnSpec) {
	H, KV, D := s.Heads, s.KVHeads, s.HeadDim
	G := H / KV
	nG := 1
	if s.SlotGroup != nil {
		nG = len(s.GroupTemp)
	}
	slots := len(slotPos)
	for r := range rowPos {
		for h := 0; h < H; h++ {
			kh := h / G
			logit := make([]float64, slots)
			vis := make([]bool, slots)
			lse := make([]float64, nG)
			for g := range lse {
				lse[g] = math.Inf(-1)
			}
			for j := 0; j < slots; j++ {
				if slotPos[j] < 0 || slotPos[j] > rowPos[r] {
					continue
				}
				vis[j] = true
				var d float64
				for i := 0; i < D; i++ {
					d += float64(q[r*H*D+h*D+i]) * float64(k[j*KV*D+kh*D+i])
				}
				d *= float64(s.Scale)
				g := 0
				if s.SlotGroup != nil {
					g = int(s.SlotGroup[j])
					d /= float64(s.GroupTemp[g])
				}
				logit[j] = d
				if math.IsInf(lse[g], -1) {
					lse[g] = d
				} else {
					hi := max(lse[g], d)
					lse[g] = hi + math.Log(math.Exp(lse[g]-hi)+math.Exp(d-hi))
				}
			}
			// Merge weights.
			wg := make([]float64, nG)
			best := math.Inf(-1)
			for g := range lse {
				if !math.IsInf(lse[g], -1) {
					c := 1.0
					if s.SlotGroup != nil {
						c = float64(s.GroupLSEScale[g])
					}
					best = max(best, c*lse[g])
				}
			}
			var z float64
			for g := range lse {
				if !math.IsInf(lse[g], -1) {
					c := 1.0
					if s.SlotGroup != nil {
						c = float64(s.GroupLSEScale[g])
					}
					wg[g] = math.Exp(c*lse[g] - best)
					z += wg[g]
				}
			}
			o := make([]float64, D)
			for j := 0; j < slots; j++ {
				p := 0.0
				if vis[j] {
					g := 0
					if s.SlotGroup != nil {
						g = int(s.SlotGroup[j])
					}
					p = math.Exp(logit[j]-lse[g]) * wg[g] / z
					for i := 0; i < D; i++ {
						o[i] += p * float64(v[j*KV*D+kh*D+i])
					}
				}
				if s.Probs != nil {
					s.Probs[(r*H+h)*slots+j] = float32(p)
				}
			}
			for i := 0; i < D; i++ {
				out[r*H*D+h*D+i] = float32(o[i])
			}
		}
	}
}

type attnCase struct {
	rows, slots, heads, kv, hd int
	groups                     int // 0: no groups
	probs                      bool
	decode                     bool // rows sit after all slots
	// causal: slots in position order, the rows the last of them (prefill
	// after a cached prefix of slots − rows), as the engine's prefill calls it.
	causal bool
}

func TestAttentionMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	cases := []attnCase{
		{1, 1, 1, 1, 1, 0, false, false, false},
		{1, 5, 2, 1, 8, 0, false, true, false},
		{3, 0, 2, 2, 4, 0, true, false, false},
		{7, 7, 4, 2, 16, 0, false, false, false},
		{13, 70, 14, 2, 64, 0, false, false, false},
		{13, 70, 14, 2, 64, 0, true, false, false},
		{20, 130, 6, 3, 33, 3, false, false, false},
		{20, 130, 6, 3, 33, 3, true, false, false},
		{2, 200, 8, 8, 8, 0, false, true, false},
		{100, 100, 2, 1, 64, 0, false, false, false},
		{5, 300, 4, 1, 12, 5, true, true, false},
		{40, 65, 3, 3, 7, 2, false, false, false},
		// Enough queries for V panels (more rows than one row block of
		// attnQueries/G = 13), few enough units for split slot ranges.
		{14, 300, 14, 2, 64, 0, false, true, false},
		{14, 300, 14, 2, 40, 0, false, true, false},
		// One row block: V read in place, with slot groups (two passes) and
		// HeadDim a multiple of nr (no padded copy), as APE's questions on
		// SmolLM2's shape run; and without groups, slots split in ranges.
		{13, 70, 14, 2, 64, 2, false, false, false},
		{8, 300, 14, 2, 64, 0, false, true, false},
	}
	// Causal prefill at GQA 1, 2, 7 and 8, lengths off the 96-slot key block
	// and the row blocks (96/G rows), with and without a cached prefix.
	for _, c := range []attnCase{
		{rows: 200, slots: 200, heads: 14, kv: 2, hd: 64},
		{rows: 97, slots: 290, heads: 8, kv: 1, hd: 64},
		{rows: 150, slots: 150, heads: 3, kv: 3, hd: 32},
		{rows: 61, slots: 61, heads: 16, kv: 2, hd: 32},
		{rows: 193, slots: 193, heads: 4, kv: 2, hd: 40},
		{rows: 130, slots: 225, heads: 14, kv: 2, hd: 64, probs: true},
		{rows: 77, slots: 100, heads: 6, kv: 3, hd: 16, groups: 2},
	} {
		c.causal = true
		cases = append(cases, c)
	}
	for i := 0; i < 6; i++ {
		kv := 1 + rng.IntN(3)
		cases = append(cases, attnCase{1 + rng.IntN(30), rng.IntN(150), kv * (1 + rng.IntN(4)), kv, 1 + rng.IntN(70), rng.IntN(4), rng.IntN(2) == 0, rng.IntN(2) == 0, false})
	}
	for _, p := range testPools(t) {
		for ci, c := range cases {
			t.Run(fmt.Sprintf("%s/%d/%+v", p.Kernels().Name(), ci, c), func(t *testing.T) {
				checkAttention(t, p, rng, c)
			})
		}
	}
}

func checkAttention(t *testing.T, p *Pool, rng *rand.Rand, c attnCase) {
	H, KV, D := c.heads, c.kv, c.hd
	q := randVec(rng, c.rows*H*D)
	k := randVec(rng, c.slots*KV*D)
	v := randVec(rng, c.slots*KV*D)
	for i := range q {
		q[i] *= 3 // sharpen the softmax so that masking errors show
	}
	// Slots in shuffled position order, some empty (-1); rows at mixed positions.
	slotPos := make([]int32, c.slots)
	for j, pi := range rng.Perm(c.slots) {
		slotPos[j] = int32(pi)
		if rng.IntN(10) == 0 {
			slotPos[j] = -1
		}
	}
	rowPos := make([]int32, c.rows)
	if c.causal {
		for j := range slotPos {
			slotPos[j] = int32(j)
		}
	}
	for i := range rowPos {
		if c.causal {
			rowPos[i] = int32(c.slots - c.rows + i)
			continue
		}
		if c.decode {
			rowPos[i] = int32(c.slots + i)
		} else {
			rowPos[i] = int32(rng.IntN(c.slots+2)) - 1 // -1: sees nothing
		}
	}
	spec := AttnSpec{Heads: H, KVHeads: KV, HeadDim: D, Scale: float32(1 / math.Sqrt(float64(D)))}
	if c.groups > 0 {
		spec.SlotGroup = make([]uint8, c.slots)
		for j := range spec.SlotGroup {
			spec.SlotGroup[j] = uint8(j * c.groups / max(1, c.slots)) // contiguous chunks
			if rng.IntN(8) == 0 {
				spec.SlotGroup[j] = uint8(rng.IntN(c.groups))
			}
		}
		for g := 0; g < c.groups; g++ {
			spec.GroupTemp = append(spec.GroupTemp, 0.5+rng.Float32())
			spec.GroupLSEScale = append(spec.GroupLSEScale, 0.5+rng.Float32())
		}
	}
	var wantProbs []float32
	if c.probs {
		spec.Probs = randVec(rng, c.rows*H*c.slots)
		wantProbs = make([]float32, len(spec.Probs))
	}
	got := randVec(rng, c.rows*H*D)
	Attention(p, got, q, rowPos, k, v, slotPos, spec)
	want := make([]float32, len(got))
	rs := spec
	rs.Probs = wantProbs
	refAttention(want, q, rowPos, k, v, slotPos, rs)
	for i := range want {
		if d := math.Abs(float64(got[i] - want[i])); d > 2e-5*(1+math.Abs(float64(want[i]))) {
			t.Fatalf("out[%d] (row %d): got %g want %g", i, i/(H*D), got[i], want[i])
		}
	}
	for i := range wantProbs {
		if wantProbs[i] == 0 && spec.Probs[i] != 0 {
			t.Fatalf("probs[%d]: invisible slot got %g", i, spec.Probs[i])
		}
		if d := math.Abs(float64(spec.Probs[i] - wantProbs[i])); d > 2e-5*(1e-3+float64(wantProbs[i])) && d > 1e-7 {
			t.Fatalf("probs[%d]: got %g want %g", i, spec.Probs[i], wantProbs[i])
		}
	}
}

// Plain softmax is the special case of groups with all temperatures and LSE
// scales 1: both routes must agree.
func TestAttentionGroupsOfOneAreSoftmax(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	p := NewPool(2)
	const rows, slots, H, KV, D = 9, 90, 4, 2, 16
	q, k, v := randVec(rng, rows*H*D), randVec(rng, slots*KV*D), randVec(rng, slots*KV*D)
	rowPos, slotPos := make([]int32, rows), make([]int32, slots)
	for i := range rowPos {
		rowPos[i] = int32(80 + i)
	}
	for j := range slotPos {
		slotPos[j] = int32(j)
	}
	plain := AttnSpec{Heads: H, KVHeads: KV, HeadDim: D, Scale: 0.25}
	grouped := plain
	grouped.SlotGroup = make([]uint8, slots)
	for j := range grouped.SlotGroup {
		grouped.SlotGroup[j] = uint8(j / 30)
	}
	grouped.GroupTemp = []float32{1, 1, 1}
	grouped.GroupLSEScale = []float32{1, 1, 1}
	a, b := make([]float32, rows*H*D), make([]float32, rows*H*D)
	Attention(p, a, q, rowPos, k, v, slotPos, plain)
	Attention(p, b, q, rowPos, k, v, slotPos, grouped)
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-5 {
			t.Fatalf("out[%d]: plain %g grouped %g", i, a[i], b[i])
		}
	}
}

func TestAttnSpecValidate(t *testing.T) {
	ok := AttnSpec{Heads: 4, KVHeads: 2, HeadDim: 8}
	buf := make([]float32, 1000)
	for _, c := range []struct {
		name string
		spec AttnSpec
		bad  bool
	}{
		{"ok", ok, false},
		{"heads not multiple", AttnSpec{Heads: 3, KVHeads: 2, HeadDim: 8}, true},
		{"group out of range", AttnSpec{Heads: 4, KVHeads: 2, HeadDim: 8, SlotGroup: []uint8{0, 2}, GroupTemp: []float32{1, 1}, GroupLSEScale: []float32{1, 1}}, true},
		{"scale count", AttnSpec{Heads: 4, KVHeads: 2, HeadDim: 8, SlotGroup: []uint8{0, 0}, GroupTemp: []float32{1}, GroupLSEScale: nil}, true},
		{"probs short", AttnSpec{Heads: 4, KVHeads: 2, HeadDim: 8, Probs: make([]float32, 3)}, true},
	} {
		err := c.spec.Validate(buf, buf, 2, buf, buf, 2)
		if (err != nil) != c.bad {
			t.Errorf("%s: err = %v", c.name, err)
		}
	}
}

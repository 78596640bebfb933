package model

import (
	"math"

	"cacheclip/kernels"
)

// attnSpec mirrors kernels.AttnSpec until the fused kernel lands.
type attnSpec struct {
	Heads, KVHeads, HeadDim int
	Scale                   float32
	SlotGroup               []uint8
	GroupTemp               []float32
	GroupLSEScale           []float32
	Probs                   []float32
}

// attention is the reference: per row and head, per-group softmax merged by LSE.
func attention(pool *kernels.Pool, out, q []float32, rowPos []int32, k, v []float32, slotPos []int32, spec attnSpec) {
	rows := len(rowPos)
	H, KV, D := spec.Heads, spec.KVHeads, spec.HeadDim
	QD, KD := H*D, KV*D
	nSlots := len(slotPos)
	nG := 1
	if spec.SlotGroup != nil {
		nG = len(spec.GroupTemp)
	}
	pool.Run(rows*H, 1, func(lo, hi int) {
		scores := make([]float32, nSlots)
		acc := make([]float64, nG*D)
		lse := make([]float64, nG)
		mx := make([]float64, nG)
		sum := make([]float64, nG)
		for idx := lo; idx < hi; idx++ {
			r, h := idx/H, idx%H
			kh := h / (H / KV)
			qv := q[r*QD+h*D : r*QD+(h+1)*D]
			for g := range mx {
				mx[g] = math.Inf(-1)
				sum[g] = 0
			}
			for j := 0; j < nSlots; j++ {
				if slotPos[j] < 0 || slotPos[j] > rowPos[r] {
					continue
				}
				s := float64(kernels.Dot(qv, k[j*KD+kh*D:j*KD+(kh+1)*D]) * spec.Scale)
				g := 0
				if spec.SlotGroup != nil {
					g = int(spec.SlotGroup[j])
					s /= float64(spec.GroupTemp[g])
				}
				scores[j] = float32(s)
				if s > mx[g] {
					mx[g] = s
				}
			}
			for i := range acc {
				acc[i] = 0
			}
			for j := 0; j < nSlots; j++ {
				if slotPos[j] < 0 || slotPos[j] > rowPos[r] {
					continue
				}
				g := 0
				if spec.SlotGroup != nil {
					g = int(spec.SlotGroup[j])
				}
				e := math.Exp(float64(scores[j]) - mx[g])
				sum[g] += e
				vv := v[j*KD+kh*D : j*KD+(kh+1)*D]
				a := acc[g*D : (g+1)*D]
				for d := range a {
					a[d] += e * float64(vv[d])
				}
			}
			// Merge groups: weight_g = exp(s_g·lse_g) normalised.
			best := math.Inf(-1)
			for g := range lse {
				if sum[g] == 0 {
					lse[g] = math.Inf(-1)
					continue
				}
				scale := 1.0
				if spec.SlotGroup != nil {
					scale = float64(spec.GroupLSEScale[g])
				}
				lse[g] = scale * (mx[g] + math.Log(sum[g]))
				if lse[g] > best {
					best = lse[g]
				}
			}
			o := out[r*QD+h*D : r*QD+(h+1)*D]
			for d := range o {
				o[d] = 0
			}
			if math.IsInf(best, -1) {
				if spec.Probs != nil {
					p := spec.Probs[idx*nSlots : (idx+1)*nSlots]
					for j := range p {
						p[j] = 0
					}
				}
				continue
			}
			var z float64
			wg := make([]float64, nG)
			for g := range lse {
				if math.IsInf(lse[g], -1) {
					continue
				}
				wg[g] = math.Exp(lse[g] - best)
				z += wg[g]
			}
			for g := range wg {
				if wg[g] == 0 {
					continue
				}
				f := wg[g] / z / sum[g]
				a := acc[g*D : (g+1)*D]
				for d := range o {
					o[d] += float32(a[d] * f)
				}
			}
			if spec.Probs != nil {
				p := spec.Probs[idx*nSlots : (idx+1)*nSlots]
				for j := 0; j < nSlots; j++ {
					if slotPos[j] < 0 || slotPos[j] > rowPos[r] {
						p[j] = 0
						continue
					}
					g := 0
					if spec.SlotGroup != nil {
						g = int(spec.SlotGroup[j])
					}
					p[j] = float32(math.Exp(float64(scores[j])-mx[g]) * wg[g] / z / sum[g])
				}
			}
		}
	})
}

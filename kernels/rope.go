package kernels

import "math"

// RoPE rotates heads vectors of headDim floats in x (laid out [heads][headDim]) to
// position pos.
//
// Table format: cos and sin are [positions][headDim/2] row-major; row p holds
// cos(p·θ_i) and sin(p·θ_i) for frequency i < headDim/2 (θ_i = base^(−2i/headDim)
// or the rope-scaled frequencies; see RoPETable). A caller that builds one row per
// activation row passes that row and pos 0.
//
// interleaved=false is the Hugging Face rotate-half layout: pairs (i, i+headDim/2)
// rotate by θ_i. interleaved=true is llama2.c / Meta's layout: pairs (2i, 2i+1).
func RoPE(x []float32, pos int32, heads, headDim int, cos, sin []float32, interleaved bool) {
	defaultKernels.RoPE(x, pos, heads, headDim, cos, sin, interleaved)
}

// RoPE is the package-level RoPE on this kernel set.
func (k *Kernels) RoPE(x []float32, pos int32, heads, headDim int, cos, sin []float32, interleaved bool) {
	half := headDim / 2
	if heads <= 0 || half == 0 {
		return
	}
	c := cos[int(pos)*half : int(pos)*half+half]
	s := sin[int(pos)*half : int(pos)*half+half]
	x = x[:heads*headDim]
	switch {
	case !interleaved && k.ropeHalf != nil && headDim%2 == 0:
		k.ropeHalf(&x[0], heads, headDim, &c[0], &s[0])
		return
	case interleaved && k.ropeInter != nil && half%8 == 0:
		k.ropeInter(&x[0], heads, headDim, &c[0], &s[0])
		return
	}
	for h := 0; h < heads; h++ {
		v := x[h*headDim : (h+1)*headDim]
		if interleaved {
			for i := 0; i < half; i++ {
				a, b := v[2*i], v[2*i+1]
				v[2*i] = a*c[i] - b*s[i]
				v[2*i+1] = a*s[i] + b*c[i]
			}
			continue
		}
		lo, hi := v[:half], v[half:2*half]
		for i := range lo {
			a, b := lo[i], hi[i]
			lo[i] = a*c[i] - b*s[i]
			hi[i] = b*c[i] + a*s[i]
		}
	}
}

// RoPETable fills cos and sin ([positions][len(invFreq)], the RoPE table format)
// for positions p0, p0+1, …: entry (p, i) is the rotation by (p0+p)·invFreq[i],
// computed in float64.
func RoPETable(cos, sin []float32, p0 int32, positions int, invFreq []float64) {
	half := len(invFreq)
	for p := 0; p < positions; p++ {
		for i, f := range invFreq {
			sn, cs := math.Sincos(float64(p0+int32(p)) * f)
			cos[p*half+i] = float32(cs)
			sin[p*half+i] = float32(sn)
		}
	}
}

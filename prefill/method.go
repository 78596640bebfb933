package prefill

import (
	"fmt"
	"math"
)

// Method names.
const (
	Full       = "full"
	Reuse      = "reuse"
	APE        = "ape"
	CacheBlend = "cacheblend"
	CacheClip  = "cacheclip"
)

// Methods lists the method names in the order reports show them.
var Methods = []string{Full, Reuse, APE, CacheBlend, CacheClip}

// Method selects what a prefill recomputes. Build it with NewMethod, which sets
// the defaults, then change fields.
type Method struct {
	Name string
	// Ratio is r, the share of context tokens recomputed (cacheblend, cacheclip).
	Ratio float64
	// CheckLayer is where CacheBlend ranks tokens (default 1): every context row
	// runs through the layers before it.
	CheckLayer int
	// RankBy is "v" (default, CacheBlend's paper) or "k" (LMCache's code).
	RankBy string
	// Temp and Scale are APE's attention temperature T and scaling factor S
	// (defaults 0.9 and 0.9). APE's code also gives every chunk the same positions
	// right after P; here chunks keep their sequential offsets (the shards are the
	// same for every method), so ape differs from reuse only by T and S.
	Temp, Scale float64
	// Selector is CacheClip's auxiliary scorer (auxscore.Scorer); it may be nil
	// when every Query carries its Selection.
	Selector Selector
}

// NewMethod returns the named method with its defaults (ratio 0.2).
func NewMethod(name string) (Method, error) {
	m := Method{Name: name, Ratio: 0.2, CheckLayer: 1, RankBy: "v", Temp: 0.9, Scale: 0.9}
	for _, n := range Methods {
		if n == name {
			return m, nil
		}
	}
	return m, fmt.Errorf("method %q: unknown (want one of %v)", name, Methods)
}

// Validate checks the parameters against a model of the given depth.
func (m *Method) Validate(layers int) error {
	if _, err := NewMethod(m.Name); err != nil {
		return err
	}
	if math.IsNaN(m.Ratio) || m.Ratio < 0 || m.Ratio > 1 {
		return fmt.Errorf("method %s: ratio %v outside [0, 1]", m.Name, m.Ratio)
	}
	switch m.Name {
	case CacheBlend:
		if m.CheckLayer < 0 || m.CheckLayer >= layers {
			return fmt.Errorf("method cacheblend: check layer %d outside the model's %d layers", m.CheckLayer, layers)
		}
		if m.RankBy != "v" && m.RankBy != "k" {
			return fmt.Errorf("method cacheblend: rank by %q, want v or k", m.RankBy)
		}
	case APE:
		if !(m.Temp > 0) || !(m.Scale > 0) || math.IsInf(m.Temp, 0) || math.IsInf(m.Scale, 0) {
			return fmt.Errorf("method ape: temperature %v and scale %v must be positive and finite", m.Temp, m.Scale)
		}
	}
	return nil
}

// Budget is ⌈r·N⌉, the number of context tokens every selective method
// recomputes at ratio r, so methods compare at equal budgets. A small epsilon
// keeps r·N that is an integer in exact arithmetic (0.2·5) from rounding up.
func Budget(ratio float64, n int) int {
	b := int(math.Ceil(ratio*float64(n) - 1e-9))
	return min(max(b, 0), n)
}

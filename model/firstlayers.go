package model

import "fmt"

// FirstLayers is m cut after its first k layers, sharing m's weights and pool
// (the final norm and head stay): a CacheClip auxiliary that reads layer
// k-1's attention at k/Layers of the cost. Its fingerprint differs from m's,
// so caches of the two never mix. m must stay open while the cut model is used.
func FirstLayers(m *Model, k int) (*Model, error) {
	if k < 1 || k > m.Config.Layers {
		return nil, fmt.Errorf("first %d layers of a model of %d", k, m.Config.Layers)
	}
	cfg := m.Config
	cfg.Layers = k
	w := m.W
	w.Layers = w.Layers[:k]
	cut, err := FromWeights(&cfg, w)
	if err != nil {
		return nil, err
	}
	cut.Pool = m.Pool
	return cut, nil
}

package model_test

import (
	"math/rand/v2"
	"testing"

	"cacheclip/model"
	"cacheclip/model/backendtest"
)

// TestBackendConformance runs the backend conformance suite on the CPU: the
// model itself is the backend.
func TestBackendConformance(t *testing.T) {
	backendtest.Run(t, func(_ testing.TB, cpu *model.Model) model.Backend { return cpu }, backendtest.Options{})
}

func randTokens(seed uint64, n, vocab int) []int32 {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(r.IntN(vocab))
	}
	return out
}

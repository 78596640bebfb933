//go:build cuda

package gpu

import (
	"context"
	"testing"

	"cacheclip/model"
	"cacheclip/model/backendtest"
)

// TestBackendConformance runs the backend conformance suite, unchanged, on the
// device: every CPU model the suite builds is uploaded. Matrices are bf16 on
// the device, so the tolerances are those of bf16 products (about 2⁻⁸
// relative per product) rather than the CPU's f32.
func TestBackendConformance(t *testing.T) {
	d := openDevice(t)
	backendtest.Run(t, func(t testing.TB, cpu *model.Model) model.Backend {
		gm, err := Upload(context.Background(), d, cpu)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { gm.Close() })
		return gm
	}, backendtest.Options{Tol: 2e-2, GoldenTol: 5e-2})
}

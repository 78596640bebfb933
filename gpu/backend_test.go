package gpu

import (
	"context"
	"os"
	"testing"

	"cacheclip/model"
	"cacheclip/model/backendtest"
)

// TestBackendConformance runs the backend conformance suite, unchanged, on
// CUDA device 0: every CPU model the suite builds is uploaded. Matrices are
// bf16 on the device, so the tolerances are those of bf16 products (about 2⁻⁸
// relative per product) rather than the CPU's f32. Without a device it skips
// with the reason, except under CACHECLIP_REQUIRE_GPU=1 (scripts/gpu-check.sh),
// where a missing device is a failure. It needs no build tag, so make test
// runs it wherever a GPU is present.
func TestBackendConformance(t *testing.T) {
	d, err := Open(context.Background(), 0)
	if err != nil {
		if os.Getenv("CACHECLIP_REQUIRE_GPU") == "1" {
			t.Fatalf("CACHECLIP_REQUIRE_GPU=1 but no usable GPU: %v", err)
		}
		t.Skipf("no usable GPU (%v); CACHECLIP_REQUIRE_GPU=1 makes this a failure", err)
	}
	t.Cleanup(func() { d.Close() })
	backendtest.Run(t, func(t testing.TB, cpu *model.Model) model.Backend {
		gm, err := Upload(context.Background(), d, cpu)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { gm.Close() })
		return gm
	}, backendtest.Options{Tol: 2e-2, GoldenTol: 5e-2})
}

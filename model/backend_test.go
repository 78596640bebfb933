package model_test

import (
	"testing"

	"cacheclip/model"
	"cacheclip/model/backendtest"
)

// TestBackendConformance runs the backend conformance suite on the CPU: the
// model itself is the backend.
func TestBackendConformance(t *testing.T) {
	backendtest.Run(t, func(_ testing.TB, cpu *model.Model) model.Backend { return cpu }, backendtest.Options{})
}

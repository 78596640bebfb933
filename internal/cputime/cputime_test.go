//go:build unix

package cputime

import "testing"

// TestProcessGrowsWithWork: burning CPU moves the reading forward.
func TestProcessGrowsWithWork(t *testing.T) {
	before := Process()
	x := 0.0
	for i := 0; i < 50_000_000; i++ {
		x += float64(i) * 1e-9
	}
	after := Process()
	if after <= before {
		t.Fatalf("CPU time did not grow: %v then %v (x=%v)", before, after, x)
	}
}

package suite

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEvalConfigOverride checks that the YAML file sets the plan and that a
// flag given on the command line wins over it.
func TestEvalConfigOverride(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(p, []byte("tasks: [vt]\nmethods: [full, cacheblend]\nratios: [0.3]\nn: 5\nseed: 9\nchain_length: 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Default()
	if err := Load(p, &cfg); err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Tasks, ",") != "vt" || cfg.N != 5 || cfg.Seed != 9 || cfg.ChainLength != 5 || cfg.Model != "testdata/testbed/primary" {
		t.Errorf("config not applied over defaults: %+v", cfg)
	}
	var got []string
	for _, r := range cfg.Plan() {
		got = append(got, r.Name())
	}
	if strings.Join(got, ",") != "full,cacheblend-0.3" {
		t.Errorf("plan %v, want full,cacheblend-0.3", got)
	}
	// Full runs first whatever the order given, since fidelity needs its answers.
	cfg.Methods = []string{"cacheclip", "ape", "full"}
	cfg.Ratios = []float64{0.1, 0.4}
	got = nil
	for _, r := range cfg.Plan() {
		got = append(got, r.Name())
	}
	if strings.Join(got, ",") != "full,cacheclip-0.1,cacheclip-0.4,ape" {
		t.Errorf("plan %v, want full,cacheclip-0.1,cacheclip-0.4,ape", got)
	}
	if err := (&Config{Tasks: []string{"vt"}, Methods: []string{"cacheclip"}, Ratios: []float64{0.2}, Model: "m", Out: "o", N: 1,
		ContextTokens: 10, ChunkTokens: 5}).Validate(); err == nil || !strings.Contains(err.Error(), "aux") {
		t.Errorf("cacheclip without aux: err %v, want an aux error", err)
	}
}

func TestTokenAgreement(t *testing.T) {
	for _, tc := range []struct {
		a, ref []int32
		want   float64
	}{
		{nil, nil, 1},
		{[]int32{1, 2, 3}, []int32{1, 2, 3}, 1},
		{[]int32{1, 2}, []int32{1, 2, 3, 4}, 0.5},
		{[]int32{1, 9, 3}, []int32{1, 2, 3}, 2.0 / 3},
		{[]int32{5}, nil, 0},
	} {
		if got := tokenAgreement(tc.a, tc.ref); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("tokenAgreement(%v, %v) = %v, want %v", tc.a, tc.ref, got, tc.want)
		}
	}
}

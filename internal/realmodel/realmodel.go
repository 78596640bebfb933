// Package realmodel finds the real model the tests and the demo run on:
// SmolLM2-135M-Instruct as a Q4_1 GGUF, fetched by scripts/fetch-smollm2.sh
// into a cache outside the repository.
package realmodel

import (
	"os"
	"path/filepath"
	"testing"
)

// EnvPath names the GGUF file; EnvRequire=1 (set by .ci/run) turns a missing
// file from a skip into a failure.
const (
	EnvPath    = "CACHECLIP_SMOLLM2_GGUF"
	EnvRequire = "CACHECLIP_REQUIRE_REAL_MODEL"
	FileName   = "SmolLM2-135M-Instruct.Q4_1.gguf"
)

// Find returns the GGUF's path: $CACHECLIP_SMOLLM2_GGUF, else the fetch
// script's default cache location; ok is false when no file is there.
func Find() (string, bool) {
	p := os.Getenv(EnvPath)
	if p == "" {
		base := os.Getenv("CACHECLIP_CACHE")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", false
			}
			base = filepath.Join(home, ".cache", "cacheclip")
		}
		p = filepath.Join(base, "smollm2", FileName)
	}
	st, err := os.Stat(p)
	return p, err == nil && st.Mode().IsRegular()
}

// Path returns the GGUF's path for a test, skipping the test when the file is
// absent, or failing it when $CACHECLIP_REQUIRE_REAL_MODEL is 1.
func Path(tb testing.TB) string {
	tb.Helper()
	p, ok := Find()
	if !ok {
		if os.Getenv(EnvRequire) == "1" {
			tb.Fatalf("SmolLM2 GGUF missing at %q and %s=1: run scripts/fetch-smollm2.sh", p, EnvRequire)
		}
		tb.Skipf("SmolLM2 GGUF not found at %q: run scripts/fetch-smollm2.sh (or set %s)", p, EnvPath)
	}
	return p
}

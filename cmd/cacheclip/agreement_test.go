package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// agreementCSV runs the command (args), which must succeed, and returns the
// lines of the CSV it wrote to out, and the file.
func agreementCSV(t *testing.T, out string, args ...string) ([]string, []byte) {
	t.Helper()
	if code, log := run(t, args...); code != 0 {
		t.Fatalf("exit %d\n%s", code, log)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n"), b
}

func TestAgreementCommand(t *testing.T) {
	f := newJobFixture(t, 1)
	out := filepath.Join(f.dir, "agree.csv")
	// The primary compared with itself: perfect agreement at its last layer.
	lines, b := agreementCSV(t, out, "agreement", "--model", f.primary, "--aux", f.primary, "--n", "3", "--context-tokens", "200", "--chunk-tokens", "50", "--out", out)
	if len(lines) != 1+3 { // header + the qwen2 test model's 3 layers
		t.Fatalf("csv:\n%s", b)
	}
	if !strings.HasPrefix(lines[3], "2,1.000000,1.000000") {
		t.Errorf("last layer of a model against itself: %q, want Jaccard 1 and Spearman 1", lines[3])
	}
}

// --aux-mode cached reads the auxiliary's attention over its own per-chunk
// caches; with one chunk per question that is the fresh prefill, so a model
// against itself still agrees perfectly at its last layer. An unknown mode
// is a bad setting.
func TestAgreementCachedAuxMode(t *testing.T) {
	f := newJobFixture(t, 1)
	out := filepath.Join(f.dir, "agree-cached.csv")
	lines, b := agreementCSV(t, out, "agreement", "--model", f.primary, "--aux", f.primary, "--aux-mode", "cached", "--n", "2", "--context-tokens", "80", "--chunk-tokens", "80", "--out", out)
	if len(lines) != 1+3 || !strings.HasPrefix(lines[3], "2,1.000000,1.000000") {
		t.Errorf("one chunk, cached: last layer %q, want Jaccard 1 and Spearman 1\n%s", lines[len(lines)-1], b)
	}
	if code, log := run(t, "agreement", "--model", f.primary, "--aux", f.primary, "--aux-mode", "stale"); code != 2 || !strings.Contains(log, "--aux-mode") {
		t.Errorf("--aux-mode stale: exit %d, want 2 naming the flag\n%s", code, log)
	}
}

package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cacheclip/gpu"
)

// On a machine without a usable GPU (this one, CI), --device cuda stops run,
// answer and demo at once with the device layer's reason, before any row is
// written; run and answer exit 2 (a bad setting). Where a GPU opens, the same
// commands must get past the device instead.
func TestDeviceCUDAWithoutGPU(t *testing.T) {
	_, openErr := gpu.Open(context.Background(), 0)
	f := newJobFixture(t, 3)
	out := filepath.Join(f.dir, "out-cuda")
	chunk := filepath.Join(f.dir, "chunk.txt")
	if err := os.WriteFile(chunk, []byte("The sky is blue."), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		exit int
	}{
		{"run", f.runArgs("reuse", out, "--device", "cuda"), 2},
		{"answer", []string{"answer", "--model", f.primary, "--method", "full", "--device", "cuda:0", "--question", "What colour is the sky?", "--chunks", chunk}, 2},
		{"demo", []string{"demo", "--workdir", filepath.Join(f.dir, "demo"), "--model", f.primary, "--aux", f.aux, "--questions", "2", "--device", "cuda"}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, log := run(t, c.args...)
			if openErr == nil {
				if strings.Contains(log, "device cuda") && strings.Contains(log, "requested") {
					t.Fatalf("a GPU opens here, yet %s refused it: %s", c.name, log)
				}
				return
			}
			if code != c.exit {
				t.Fatalf("exit %d, want %d\n%s", code, c.exit, log)
			}
			for _, want := range []string{"requested", "libcuda"} {
				if !strings.Contains(log, want) {
					t.Errorf("output lacks %q:\n%s", want, log)
				}
			}
		})
	}
	if openErr != nil {
		if parts, _ := filepath.Glob(filepath.Join(out, "part-*")); len(parts) != 0 {
			t.Fatalf("rows written by a job refused at start: %v", parts)
		}
	}
}

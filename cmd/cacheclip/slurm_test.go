package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"cacheclip/jobs"
)

// slurmUp skips (or, with CACHECLIP_REQUIRE_SLURM set, fails) without a
// running Slurm cluster (scripts/slurm-localhost.sh starts one).
func slurmUp(t *testing.T) {
	t.Helper()
	out, err := exec.Command("sinfo", "-h", "-o", "%T").Output()
	if err == nil && strings.TrimSpace(string(out)) != "" && !strings.Contains(string(out), "down") {
		return
	}
	msg := fmt.Sprintf("no Slurm cluster answering sinfo (%v %q); start one with scripts/slurm-localhost.sh", err, out)
	if os.Getenv("CACHECLIP_REQUIRE_SLURM") != "" {
		t.Fatal(msg + "; CACHECLIP_REQUIRE_SLURM is set")
	}
	t.Skip(msg)
}

// The Slurm example script, run as a real 4-task job array (SLURM_ARRAY_TASK_ID
// mapped to --shard i/4) against one shared S3 store: the merged dataset
// equals a single-process run, each shard object is uploaded once.
func TestSlurmArrayFanOut(t *testing.T) {
	slurmUp(t)
	const nq, nc = 600, 400
	e := newFanOutEnv(t, nq, nc)
	px, f, ref := e.px, e.f, e.ref
	script, env := scriptEnv(t, "slurm/cacheclip-array.sbatch")
	out := filepath.Join(f.dir, "out")
	env = append(append(env, e.srv.Env(px.URL)...),
		"QUESTIONS="+f.questions, "CORPUS="+f.corpus, "STORE=s3://shards/slurm", "STORE_CACHE="+filepath.Join(f.dir, "tier"),
		"MODEL="+f.primary, "AUX="+f.aux, "METHOD=reuse", "MAX_NEW_TOKENS=2", "OUT="+out)
	cmd := exec.Command("sbatch", "--wait", "--array=0-3", "--export=ALL", "--chdir="+f.dir,
		"--output="+filepath.Join(f.dir, "slurm-%A_%a.log"), script)
	cmd.Env = append(os.Environ(), env...)
	b, err := cmd.CombinedOutput()
	logs, _ := filepath.Glob(filepath.Join(f.dir, "slurm-*.log"))
	if err != nil {
		var all strings.Builder
		for _, l := range logs {
			lb, _ := os.ReadFile(l)
			fmt.Fprintf(&all, "== %s\n%s\n", l, lb)
		}
		t.Fatalf("sbatch --wait: %v\n%s\n%s", err, b, all.String())
	}
	if len(logs) != 4 {
		t.Errorf("%d array task logs, want 4", len(logs))
	}
	if _, err := os.Stat(filepath.Join(out, jobs.SuccessFile)); err != nil {
		t.Fatalf("no _SUCCESS after the array: %v", err)
	}
	sameAnswers(t, readOut(t, out), readOut(t, ref))
	e.uploadedOnce(t, nc)
	if code, log := run(t, "stats", out); code != 0 || !strings.Contains(log, fmt.Sprint(nq)) {
		t.Fatalf("cacheclip stats: exit %d\n%s", code, log)
	}
}

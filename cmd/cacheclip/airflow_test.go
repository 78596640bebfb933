package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"cacheclip/jobs"
)

// airflowBinary finds the airflow CLI: $CACHECLIP_AIRFLOW, PATH, or the
// virtual environment .ci/run installs into ~/.cache/cacheclip.
func airflowBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CACHECLIP_AIRFLOW"); p != "" {
		return p
	}
	if p, err := exec.LookPath("airflow"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "cacheclip", "airflow-venv", "bin", "airflow")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := "no airflow CLI (pip install apache-airflow into ~/.cache/cacheclip/airflow-venv, or set CACHECLIP_AIRFLOW)"
	if os.Getenv("CACHECLIP_REQUIRE_AIRFLOW") != "" {
		t.Fatal(msg + "; CACHECLIP_REQUIRE_AIRFLOW is set")
	}
	t.Skip(msg)
	return ""
}

// The Airflow DAG of examples/, run by a real Airflow (`airflow dags test`)
// with its mapped tasks over 4 shards and a shared S3 store: the merged
// dataset equals a single-process run and the final stats task writes
// _SUCCESS.
func TestAirflowDAGFanOut(t *testing.T) {
	af := airflowBinary(t)
	e := newFanOutEnv(t, 120, 60)
	f := e.f
	dags, env := scriptEnv(t, "airflow")
	out := filepath.Join(f.dir, "out")
	env = append(append(append(os.Environ(), env...), e.srv.Env(e.px.URL)...),
		"AIRFLOW_HOME="+filepath.Join(f.dir, "airflow"), "AIRFLOW__CORE__DAGS_FOLDER="+dags, "AIRFLOW__CORE__LOAD_EXAMPLES=False", "CACHECLIP_SHARDS=4",
		"CACHECLIP_QUESTIONS="+f.questions, "CACHECLIP_CORPUS="+f.corpus, "CACHECLIP_STORE=s3://shards/airflow",
		"CACHECLIP_STORE_CACHE="+filepath.Join(f.dir, "tier"), "CACHECLIP_MODEL="+f.primary, "CACHECLIP_AUX="+f.aux,
		"CACHECLIP_METHOD=reuse", "CACHECLIP_MAX_NEW_TOKENS=2", "CACHECLIP_OUT="+out)
	for _, args := range [][]string{{"db", "migrate"}, {"dags", "test", "cacheclip_nightly", "2026-01-01"}} {
		cmd := exec.Command(af, args...)
		cmd.Env, cmd.Dir = env, f.dir
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("airflow %v: %v\n%s", args, err, b)
		}
	}
	if _, err := os.Stat(filepath.Join(out, jobs.SuccessFile)); err != nil {
		t.Fatalf("no _SUCCESS after the DAG run: %v", err)
	}
	sameAnswers(t, readOut(t, out), readOut(t, e.ref))
	e.uploadedOnce(t, 60)
}

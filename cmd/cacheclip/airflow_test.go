package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"cacheclip/jobs"
	"cacheclip/kvshards/s3store/s3test"
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
	srv := s3test.Start(t)
	srv.MakeBucket(t, "shards")
	const nq, nc = 120, 60
	f := newFanOutFixture(t, nq, nc)
	ref := filepath.Join(f.dir, "ref")
	if code, log := run(t, f.fanOutArgs(f.store, ref)...); code != 0 {
		t.Fatalf("single-process run: exit %d\n%s", code, log)
	}
	dags, err := filepath.Abs("../../examples/airflow")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(f.dir, "out")
	home := filepath.Join(f.dir, "airflow")
	env := append(os.Environ(), srv.Env(srv.Endpoint)...)
	env = append(env, "AIRFLOW_HOME="+home, "AIRFLOW__CORE__DAGS_FOLDER="+dags, "AIRFLOW__CORE__LOAD_EXAMPLES=False",
		"CACHECLIP="+self, "CACHECLIP_TEST_ARGV=1", "CACHECLIP_SHARDS=4",
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
	sameAnswers(t, readOut(t, out), readOut(t, ref))
}

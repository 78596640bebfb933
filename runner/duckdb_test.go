//go:build duckdb

package runner

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLabelJobDuckDB runs a 1,000-row label job on the test bed and reads its
// output with DuckDB (tools/parquetcheck, an independent Parquet reader): the
// label columns have their list and scalar types, every labelled row's
// probabilities sum to 1 and its label is its answer. Built with -tags duckdb
// (CI); a missing node or package is then a failure, not a skip.
func TestLabelJobDuckDB(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("-tags duckdb but node is not on PATH: %v", err)
	}
	tool, _ := filepath.Abs("../tools/parquetcheck")
	if _, err := os.Stat(filepath.Join(tool, "node_modules", "@duckdb", "node-api", "package.json")); err != nil {
		t.Fatalf("-tags duckdb but @duckdb/node-api is not installed: run npm ci --prefix tools/parquetcheck (%v)", err)
	}
	spec, _, _ := labelJob(t, 1000, "reuse")
	runLabelJob(t, spec)
	cmd := exec.Command(node, filepath.Join(tool, "parquetcheck.mjs"), spec.Out)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("parquetcheck: %v\n%s", err, stderr.String())
	}
	var got struct {
		Rows      int64   `json:"rows"`
		Distinct  int64   `json:"distinct_query_ids"`
		LabelRows int64   `json:"label_rows"`
		MaxDev    float64 `json:"label_probs_max_dev"`
		Same      int64   `json:"label_is_answer"`
		Columns   []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"columns"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("parquetcheck output %q: %v", b, err)
	}
	if got.Rows != 1000 || got.Distinct != 1000 || got.LabelRows != 998 || got.Same != 998 {
		t.Errorf("DuckDB sees %d rows (%d distinct), %d labelled, %d with label = answer; want 1000, 998 (two error rows)", got.Rows, got.Distinct, got.LabelRows, got.Same)
	}
	if got.MaxDev > 1e-9 {
		t.Errorf("label_probs sum off 1 by up to %g", got.MaxDev)
	}
	var cols []string
	for _, c := range got.Columns {
		cols = append(cols, c.Name+" "+c.Type)
	}
	want := "label VARCHAR, label_logprobs DOUBLE[], label_probs DOUBLE[], label_margin DOUBLE"
	if s := strings.Join(cols, ", "); !strings.HasSuffix(s, want) || !strings.Contains(s, "choices VARCHAR[]") {
		t.Errorf("DuckDB schema %s; want the passthrough choices and, last, %s", s, want)
	}
}

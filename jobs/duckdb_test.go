//go:build duckdb

package jobs

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDuckDBReadsOutput reads a dataset this package wrote with DuckDB (an
// independent Parquet reader) through tools/parquetcheck. It needs Node.js and
// `npm ci --prefix tools/parquetcheck`, so it is built only with -tags duckdb
// (CI runs it); once built, a missing node or package is a failure, not a skip.
func TestDuckDBReadsOutput(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("-tags duckdb but node is not on PATH: %v", err)
	}
	tool, _ := filepath.Abs("../tools/parquetcheck")
	if _, err := os.Stat(filepath.Join(tool, "node_modules", "@duckdb", "node-api", "package.json")); err != nil {
		t.Fatalf("-tags duckdb but @duckdb/node-api is not installed: run npm ci --prefix tools/parquetcheck (%v)", err)
	}
	for _, c := range []struct {
		name string
		diag bool
		more []string // columns after the passthrough ones
	}{
		{"plain", false, nil},
		{"diagnostics", true, []string{"answer_token_ids INTEGER[]", "first_token_logprobs FLOAT[]"}},
	} {
		t.Run(c.name, func(t *testing.T) { checkDuckDB(t, node, tool, c.diag, c.more) })
	}
}

func checkDuckDB(t *testing.T, node, tool string, diag bool, more []string) {
	dir := t.TempDir()
	qp := makeQuestions(t, dir, 250)
	out := filepath.Join(dir, "out")
	for i := 0; i < 2; i++ {
		runJobDiag(t, qp, out, Partition{i, 2}, 40, -1, diag)
	}
	// An uncommitted stray must not be read: the tool reads the manifests.
	os.WriteFile(filepath.Join(out, tmpPrefix+"s0000of0002-x-part.parquet"), []byte("junk"), 0o644)

	cmd := exec.Command(node, filepath.Join(tool, "parquetcheck.mjs"), out)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("parquetcheck: %v\n%s", err, stderr.String())
	}
	var got struct {
		Files    int   `json:"files"`
		Rows     int64 `json:"rows"`
		Distinct int64 `json:"distinct_query_ids"`
		Columns  []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"columns"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("parquetcheck output %q: %v", b, err)
	}
	if got.Rows != 250 || got.Distinct != 250 {
		t.Errorf("DuckDB sees %d rows, %d distinct query_ids; want 250", got.Rows, got.Distinct)
	}
	want := []string{"query_id VARCHAR", "answer VARCHAR", "status VARCHAR", "error VARCHAR", "method VARCHAR",
		"recompute_ratio DOUBLE", "n_context_tokens INTEGER", "n_recomputed INTEGER", "n_generated INTEGER",
		"load_ms DOUBLE", "aux_ms DOUBLE", "prefill_ms DOUBLE", "ttft_ms DOUBLE", "decode_ms DOUBLE", "total_ms DOUBLE",
		"answers VARCHAR[]", "lang VARCHAR", "score DOUBLE", "tags VARCHAR[]", "weight BIGINT"}
	want = append(want, more...)
	var cols []string
	for _, c := range got.Columns {
		cols = append(cols, c.Name+" "+c.Type)
	}
	if strings.Join(cols, ", ") != strings.Join(want, ", ") {
		t.Errorf("DuckDB schema\n got %s\nwant %s", strings.Join(cols, ", "), strings.Join(want, ", "))
	}
}

package eval

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// TestReadPartsGlobCharacters: a run directory named after a method variant
// ("cacheclip[window=1]") holds glob characters; its part files are still
// read, in part order, and other files are left out.
func TestReadPartsGlobCharacters(t *testing.T) {
	type row struct {
		QueryID string `parquet:"query_id"`
	}
	dir := filepath.Join(t.TempDir(), "cacheclip[window=1]-0.2")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, rows := range map[string][]row{
		"part-00001.parquet": {{"c"}},
		"part-00000.parquet": {{"a"}, {"b"}},
		"stats.parquet":      {{"x"}},
	} {
		if err := parquet.WriteFile(filepath.Join(dir, name), rows); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadParts[row](dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].QueryID != "a" || got[1].QueryID != "b" || got[2].QueryID != "c" {
		t.Fatalf("ReadParts = %v, want a, b, c", got)
	}
	if _, err := ReadParts[row](filepath.Join(dir, "missing")); err == nil {
		t.Fatal("ReadParts of a missing directory: no error")
	}
}

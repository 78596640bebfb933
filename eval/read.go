package eval

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// ReadParts reads the rows of every part file of a job's output directory
// into T (its parquet tags name the columns it needs).
func ReadParts[T any](dir string) ([]T, error) {
	// Listed, not globbed: a directory name holding glob characters ("[")
	// would otherwise match nothing and read as a job without answers.
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range ents {
		if n := e.Name(); !e.IsDir() && strings.HasPrefix(n, "part-") && strings.HasSuffix(n, ".parquet") {
			files = append(files, filepath.Join(dir, n))
		}
	}
	sort.Strings(files)
	var out []T
	for _, f := range files {
		rows, err := parquet.ReadFile[T](f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, rows...)
	}
	return out, nil
}

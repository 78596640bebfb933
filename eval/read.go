package eval

import (
	"fmt"
	"path/filepath"

	"github.com/parquet-go/parquet-go"
)

// ReadParts reads the rows of every part file of a job's output directory
// into T (its parquet tags name the columns it needs).
func ReadParts[T any](dir string) ([]T, error) {
	files, err := filepath.Glob(filepath.Join(dir, "part-*.parquet"))
	if err != nil {
		return nil, err
	}
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

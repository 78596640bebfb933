package jobs

import (
	"io"
	"os"
	"path/filepath"

	"cacheclip/internal/atomicfile"
)

var errEOF = io.EOF

// tmpPrefix starts every temporary file this package writes. Names starting
// with '.' are ignored by Spark/Hive-style dataset readers and by globs such
// as *.parquet, so a crash never exposes half a file.
const tmpPrefix = ".tmp-"

// tmpName returns a temporary name in dir for the final name base. The owner
// tag lets a shard remove only its own strays.
func tmpName(dir, owner, base string) string {
	return filepath.Join(dir, tmpPrefix+owner+"-"+atomicfile.RandomHex()+"-"+base)
}

// writeFileAtomic writes data to path via temp file, fsync, rename, fsync dir.
func writeFileAtomic(path string, data []byte) error {
	return writeAtomic(path, "any", func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// writeAtomic creates path from fill (package atomicfile) with a temporary
// name carrying the owner's tag.
func writeAtomic(path, owner string, fill func(w io.Writer) error) error {
	o := atomicfile.Options{TempName: func(p string) string {
		dir, base := filepath.Split(p)
		return tmpName(dir, owner, base)
	}}
	return atomicfile.Write(path, o, func(f *os.File) error { return fill(f) })
}

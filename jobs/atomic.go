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

// randHex is 12 random hex digits (temporary names, lease tokens).
func randHex() string { return atomicfile.RandomHex() }

// tmpName returns a temporary name in dir for the final name base. The owner
// tag lets a shard remove only its own strays.
func tmpName(dir, owner, base string) string {
	return filepath.Join(dir, tmpPrefix+owner+"-"+randHex()+"-"+base)
}

// writeFileAtomic writes data to path via temp file, fsync, rename, fsync dir.
func writeFileAtomic(path string, data []byte) error {
	return writeAtomic(path, "any", func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// writeAtomic creates path from fill so that readers see either the old file
// or the complete new one, also across a power loss (package atomicfile),
// with a temporary name carrying the owner's tag.
func writeAtomic(path, owner string, fill func(w io.Writer) error) error {
	return atomicfile.Write(path, atomicOptions(owner, false), func(f *os.File) error { return fill(f) })
}

// writeAtomicNew is writeAtomic for a file that must not exist yet: the final
// step is a hard link, which fails with os.ErrExist instead of replacing.
func writeAtomicNew(path, owner string, fill func(w io.Writer) error) error {
	return atomicfile.Write(path, atomicOptions(owner, true), func(f *os.File) error { return fill(f) })
}

func atomicOptions(owner string, noReplace bool) atomicfile.Options {
	return atomicfile.Options{NoReplace: noReplace, TempName: func(p string) string {
		dir, base := filepath.Split(p)
		return tmpName(dir, owner, base)
	}}
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error { return atomicfile.SyncDir(dir) }

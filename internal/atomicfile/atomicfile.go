// Package atomicfile writes a file so that readers see either the old file or
// the complete new one, also across a crash or power loss: the bytes go to a
// temporary file in the same directory, which is fsynced, renamed over the
// final name, and the directory fsynced so the rename itself is durable.
//
// It is the one implementation of that sequence in the repository (job
// outputs, the effective job file, eval datasets and reports, KV shards).
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// Options adjust a write; the zero value is right for most files.
type Options struct {
	// TempName returns the temporary file's path for the final path; nil:
	// DefaultTempName. It must be in the final path's directory (a rename
	// across file systems is not atomic) and the name must not exist.
	TempName func(path string) string
	// NoSync skips both fsyncs: atomic against a crash of the process, not of
	// the machine (throwaway stores and tests).
	NoSync bool
	// NoDirSync leaves the directory's fsync to the caller (a store that
	// syncs its directories by its own policy).
	NoDirSync bool
	// Perm is the file's mode; 0 means 0o644.
	Perm os.FileMode
	// NoReplace publishes with a hard link instead of a rename, so the write
	// fails (errors.Is(err, fs.ErrExist)) when path already exists instead of
	// replacing it: for files that are written once.
	NoReplace bool
}

// DefaultTempName is ".BASE.tmp-RANDOM" beside path: the leading '.' keeps
// Spark/Hive-style dataset readers and globs such as *.parquet from reading a
// half-written file.
func DefaultTempName(path string) string {
	dir, base := filepath.Split(path)
	return filepath.Join(dir, "."+base+".tmp-"+RandomHex())
}

// RandomHex is 12 random hex digits for unique temporary names.
func RandomHex() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// WriteFile writes data to path atomically with default options.
func WriteFile(path string, data []byte) error {
	return Write(path, Options{}, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// Write creates path from fill atomically. fill writes the content to the
// temporary file (it gets the *os.File so it may report its name); on any
// error the temporary file is removed and path is left as it was. Errors
// name the file and the step that failed.
func Write(path string, o Options, fill func(f *os.File) error) (err error) {
	dir := filepath.Dir(path)
	tmp := DefaultTempName(path)
	if o.TempName != nil {
		tmp = o.TempName(path)
	}
	perm := o.Perm
	if perm == 0 {
		perm = 0o644
	}
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = fill(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if !o.NoSync {
		if err = f.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", tmp, err)
		}
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if o.NoReplace {
		if err = os.Link(tmp, path); err != nil {
			return fmt.Errorf("link %s to %s: %w", tmp, path, err)
		}
		os.Remove(tmp)
	} else if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	if o.NoSync || o.NoDirSync {
		return nil
	}
	return SyncDir(dir)
}

// SyncDir makes the creations, renames and removals in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}

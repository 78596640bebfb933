package jobs

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

var errEOF = io.EOF

// tmpPrefix starts every temporary file this package writes. Names starting
// with '.' are ignored by Spark/Hive-style dataset readers and by globs such
// as *.parquet, so a crash never exposes half a file.
const tmpPrefix = ".tmp-"

func randHex() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

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
// or the complete new one, also across a power loss.
func writeAtomic(path, owner string, fill func(w io.Writer) error) error {
	return writeTemp(path, owner, fill, os.Rename)
}

// writeAtomicNew is writeAtomic for a file that must not exist yet: the final
// step is a hard link, which fails with os.ErrExist instead of replacing.
func writeAtomicNew(path, owner string, fill func(w io.Writer) error) error {
	return writeTemp(path, owner, fill, func(tmp, path string) error {
		if err := os.Link(tmp, path); err != nil {
			os.Remove(tmp)
			return err
		}
		return os.Remove(tmp)
	})
}

func writeTemp(path, owner string, fill func(w io.Writer) error, publish func(tmp, path string) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp := tmpName(dir, owner, base)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
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
	if err = f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err = publish(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
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

package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	for _, o := range []Options{{}, {NoSync: true}, {NoDirSync: true, Perm: 0o600}} {
		dir := t.TempDir()
		p := filepath.Join(dir, "f.txt")
		if err := Write(p, o, func(f *os.File) error { _, err := f.WriteString("one"); return err }); err != nil {
			t.Fatal(err)
		}
		// A failing fill leaves the old content and no temporary file.
		var tmp string
		err := Write(p, o, func(f *os.File) error {
			tmp = f.Name()
			f.WriteString("half")
			return errors.New("disk on fire")
		})
		if err == nil || !strings.Contains(err.Error(), "disk on fire") || !strings.Contains(err.Error(), p) {
			t.Errorf("error %v, want the fill's error naming %s", err, p)
		}
		if filepath.Dir(tmp) != dir || !strings.HasPrefix(filepath.Base(tmp), ".f.txt.tmp-") {
			t.Errorf("temporary file %s: want a hidden name beside %s", tmp, p)
		}
		if b, _ := os.ReadFile(p); string(b) != "one" {
			t.Errorf("after a failed write the file holds %q, want the old %q", b, "one")
		}
		if err := WriteFile(p, []byte("two")); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(p); string(b) != "two" {
			t.Errorf("file holds %q, want %q", b, "two")
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != 1 {
			t.Errorf("directory holds %d entries, want only the file (no strays)", len(ents))
		}
	}
}

func TestWriteCustomTempName(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x")
	var seen string
	o := Options{TempName: func(path string) string { return filepath.Join(filepath.Dir(path), ".mine-"+filepath.Base(path)) }}
	if err := Write(p, o, func(f *os.File) error { seen = f.Name(); return nil }); err != nil {
		t.Fatal(err)
	}
	if seen != filepath.Join(dir, ".mine-x") {
		t.Errorf("temporary name %s", seen)
	}
	// An existing temporary name is never overwritten (O_EXCL).
	os.WriteFile(seen, []byte("other writer"), 0o644)
	if err := Write(p, o, func(f *os.File) error { return nil }); err == nil {
		t.Error("a write reused a temporary name that exists")
	}
	if b, _ := os.ReadFile(seen); string(b) != "other writer" {
		t.Errorf("another writer's temporary file was changed: %q", b)
	}
}

func TestSyncDirMissing(t *testing.T) {
	if err := SyncDir(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Error("SyncDir of a missing directory succeeded")
	}
}

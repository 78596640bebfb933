package jobs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/zeebo/xxh3"
	"golang.org/x/sys/unix"
)

// A corpus index is a corpus Parquet file converted once into two files that
// are memory-mapped, so lookups cost no heap and the kernel's page cache keeps
// the hot chunks:
//
//	corpus-<key>.blob  id bytes then text bytes, record after record
//	corpus-<key>.idx   64-byte header, then one 40-byte entry per distinct
//	                   chunk_id sorted by xxh3-128 of the id:
//	                   hash hi, hash lo, blob offset, source row (u64),
//	                   id length, text length (u32), little endian.
//
// <key> hashes the source's absolute path, size and modification time, so a
// changed corpus gets a new index. The .idx file is renamed into place last:
// its presence means both files are complete.
const (
	idxMagic     = "CCCIDX01"
	idxHeaderLen = 64
	idxEntryLen  = 40
)

// CorpusIndex is a memory-mapped corpus; see OpenCorpusIndex.
type CorpusIndex struct {
	path      string // source Parquet file
	idx, blob []byte // mapped files
	n         int
	// Built reports whether OpenCorpusIndex had to build the index (false:
	// it reused one made earlier).
	Built bool
}

type idxEntry struct {
	hi, lo, off, row uint64
	idLen, textLen   uint32
}

// OpenCorpusIndex opens the index of the corpus file at path kept in dir,
// building it first if it is missing or stale. Building reads the corpus once
// (one row group at a time) and holds 40 bytes per chunk while it sorts; the
// errors are those of LoadCorpus. Several processes may build the same index
// at once: each writes its own temporary files and the renames are atomic.
func OpenCorpusIndex(ctx context.Context, path, dir string) (*CorpusIndex, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, configErr(fmt.Errorf("corpus file: %w", err))
	}
	abs, _ := filepath.Abs(path)
	key := xxh3.HashString(fmt.Sprintf("%s\x00%d\x00%d", abs, st.Size(), st.ModTime().UnixNano()))
	base := filepath.Join(dir, fmt.Sprintf("corpus-%016x", key))
	if ci, err := mapIndex(path, base); err == nil {
		return ci, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("corpus index dir %s: %w", dir, err)
	}
	if err := buildIndex(ctx, path, base); err != nil {
		return nil, err
	}
	ci, err := mapIndex(path, base)
	if err != nil {
		return nil, fmt.Errorf("corpus index %s.idx: just built but unreadable: %w", base, err)
	}
	ci.Built = true
	return ci, nil
}

func buildIndex(ctx context.Context, path, base string) error {
	dir := filepath.Dir(base)
	blobTmp := tmpName(dir, "any", filepath.Base(base)+".blob")
	bf, err := os.OpenFile(blobTmp, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("corpus index: %w", err)
	}
	defer func() {
		bf.Close()
		os.Remove(blobTmp)
	}()
	w := bufio.NewWriterSize(bf, 1<<20)
	var entries []idxEntry
	var off uint64
	err = scanCorpus(ctx, path, func(row int64, id, text []byte) error {
		if len(id) > 1<<31 || len(text) > 1<<31 {
			return configErr(fmt.Errorf("corpus file %s row %d: chunk too large", path, row))
		}
		h := xxh3.Hash128(id)
		entries = append(entries, idxEntry{hi: h.Hi, lo: h.Lo, off: off, row: uint64(row), idLen: uint32(len(id)), textLen: uint32(len(text))})
		w.Write(id)
		w.Write(text)
		off += uint64(len(id) + len(text))
		return nil
	})
	if err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("corpus index blob: %w", err)
	}
	// Sort by hash, then by row so that the first occurrence of an id wins.
	slices.SortFunc(entries, func(a, b idxEntry) int {
		if a.hi != b.hi {
			return cmpU64(a.hi, b.hi)
		}
		if a.lo != b.lo {
			return cmpU64(a.lo, b.lo)
		}
		return cmpU64(a.row, b.row)
	})
	read := func(e idxEntry, n uint32, skip uint32) ([]byte, error) {
		b := make([]byte, n)
		_, err := bf.ReadAt(b, int64(e.off)+int64(skip))
		return b, err
	}
	kept := entries[:0]
	for i, e := range entries {
		if i > 0 && e.hi == entries[i-1].hi && e.lo == entries[i-1].lo {
			first := kept[len(kept)-1]
			id1, err1 := read(first, first.idLen, 0)
			id2, err2 := read(e, e.idLen, 0)
			t1, err3 := read(first, first.textLen, first.idLen)
			t2, err4 := read(e, e.textLen, e.idLen)
			if err := errors.Join(err1, err2, err3, err4); err != nil {
				return fmt.Errorf("corpus index blob: %w", err)
			}
			if !bytes.Equal(id1, id2) {
				return fmt.Errorf("corpus file %s: chunk_ids %q (row %d) and %q (row %d) share a 128-bit hash", path, id1, first.row, id2, e.row)
			}
			if !bytes.Equal(t1, t2) {
				return configErr(fmt.Errorf("corpus file %s: chunk_id %q at rows %d and %d with different text", path, id1, first.row, e.row))
			}
			continue // same id, same text: keep the first
		}
		kept = append(kept, e)
	}
	if err := bf.Sync(); err != nil {
		return fmt.Errorf("corpus index blob: %w", err)
	}
	if err := bf.Close(); err != nil {
		return fmt.Errorf("corpus index blob: %w", err)
	}
	if err := os.Rename(blobTmp, base+".blob"); err != nil {
		return fmt.Errorf("corpus index blob: %w", err)
	}
	st, _ := os.Stat(path)
	return writeAtomic(base+".idx", "any", func(iw io.Writer) error {
		bw := bufio.NewWriterSize(iw, 1<<20)
		hdr := make([]byte, idxHeaderLen)
		copy(hdr, idxMagic)
		binary.LittleEndian.PutUint64(hdr[8:], uint64(len(kept)))
		binary.LittleEndian.PutUint64(hdr[16:], off)
		binary.LittleEndian.PutUint64(hdr[24:], uint64(st.Size()))
		bw.Write(hdr)
		var rec [idxEntryLen]byte
		for _, e := range kept {
			binary.LittleEndian.PutUint64(rec[0:], e.hi)
			binary.LittleEndian.PutUint64(rec[8:], e.lo)
			binary.LittleEndian.PutUint64(rec[16:], e.off)
			binary.LittleEndian.PutUint64(rec[24:], e.row)
			binary.LittleEndian.PutUint32(rec[32:], e.idLen)
			binary.LittleEndian.PutUint32(rec[36:], e.textLen)
			bw.Write(rec[:])
		}
		return bw.Flush()
	})
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// mapIndex maps base.idx and base.blob and checks that they fit together.
func mapIndex(src, base string) (*CorpusIndex, error) {
	idx, err := mmapFile(base + ".idx")
	if err != nil {
		return nil, err
	}
	fail := func(format string, args ...any) (*CorpusIndex, error) {
		unix.Munmap(idx)
		return nil, fmt.Errorf("corpus index %s.idx: %s", base, fmt.Sprintf(format, args...))
	}
	if len(idx) < idxHeaderLen || string(idx[:8]) != idxMagic {
		return fail("bad header")
	}
	n := binary.LittleEndian.Uint64(idx[8:])
	blobSize := binary.LittleEndian.Uint64(idx[16:])
	if uint64(len(idx)) != idxHeaderLen+n*idxEntryLen {
		return fail("size %d does not fit %d entries", len(idx), n)
	}
	var blob []byte
	if blobSize > 0 {
		if blob, err = mmapFile(base + ".blob"); err != nil {
			return fail("%v", err)
		}
	}
	if uint64(len(blob)) != blobSize {
		if blob != nil {
			unix.Munmap(blob)
		}
		return fail("blob has %d bytes, want %d", len(blob), blobSize)
	}
	return &CorpusIndex{path: src, idx: idx, blob: blob, n: int(n)}, nil
}

func mmapFile(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() == 0 {
		return []byte{}, nil
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", p, err)
	}
	return b, nil
}

func (c *CorpusIndex) entry(i int) []byte {
	o := idxHeaderLen + i*idxEntryLen
	return c.idx[o : o+idxEntryLen]
}

// Text returns a chunk's text (a copy, valid after Close).
func (c *CorpusIndex) Text(chunkID string) (string, bool) {
	h := xxh3.HashString128(chunkID)
	lo, hi := 0, c.n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		e := c.entry(m)
		ehi, elo := binary.LittleEndian.Uint64(e[0:]), binary.LittleEndian.Uint64(e[8:])
		if ehi < h.Hi || (ehi == h.Hi && elo < h.Lo) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo >= c.n {
		return "", false
	}
	e := c.entry(lo)
	if binary.LittleEndian.Uint64(e[0:]) != h.Hi || binary.LittleEndian.Uint64(e[8:]) != h.Lo {
		return "", false
	}
	off := binary.LittleEndian.Uint64(e[16:])
	idLen := uint64(binary.LittleEndian.Uint32(e[32:]))
	textLen := uint64(binary.LittleEndian.Uint32(e[36:]))
	if off+idLen+textLen > uint64(len(c.blob)) || string(c.blob[off:off+idLen]) != chunkID {
		return "", false
	}
	return string(c.blob[off+idLen : off+idLen+textLen]), true
}

// Len is the number of distinct chunks.
func (c *CorpusIndex) Len() int { return c.n }

// Close unmaps the files.
func (c *CorpusIndex) Close() error {
	var errs []error
	if len(c.idx) > 0 {
		errs = append(errs, unix.Munmap(c.idx))
	}
	if len(c.blob) > 0 {
		errs = append(errs, unix.Munmap(c.blob))
	}
	c.idx, c.blob, c.n = nil, nil, 0
	return errors.Join(errs...)
}

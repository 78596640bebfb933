package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// Corpus column names.
const (
	ColChunkID = "chunk_id"
	ColText    = "text"
)

// CorpusOptions configure LoadCorpus.
type CorpusOptions struct {
	// MaxBytes bounds the memory the corpus may take (texts + ids + index,
	// estimated as len(id)+len(text)+CorpusEntryOverhead per chunk). 0 means
	// DefaultCorpusMaxBytes. Larger corpora belong in a prebuilt shard store.
	MaxBytes int64
}

// DefaultCorpusMaxBytes is the default memory bound of an in-memory corpus.
const DefaultCorpusMaxBytes = 8 << 30

// corpusScanFactor bounds the bytes LoadCorpus reads, repeated chunks
// included, as a multiple of its memory bound.
const corpusScanFactor = 4

// CorpusEntryOverhead is the estimated per-chunk index cost in bytes beyond
// the id and text bytes (map slot with string header and offsets).
const CorpusEntryOverhead = 64

// ChunkTexts looks chunk texts up by chunk_id; Corpus (in memory) and
// CorpusIndex (on disk, memory-mapped) implement it.
type ChunkTexts interface {
	Text(chunkID string) (string, bool)
	Len() int
}

// Corpus maps chunk_id to text. All texts live in one string (no per-chunk
// allocation, no GC pointer per text), indexed by a map from id to offsets.
type Corpus struct {
	path  string
	text  string
	index map[string]corpusEntry
	bytes int64
}

type corpusEntry struct {
	off, n int
	row    int64
}

// LoadCorpus reads a corpus file (chunk_id string, text string; other columns
// are not read) one row group at a time into memory. A null chunk_id or text,
// or a chunk_id repeated with a different text, is an error naming the file,
// rows and column; a chunk_id repeated with the same text is accepted once.
// For corpora too large for memory, use OpenCorpusIndex.
func LoadCorpus(ctx context.Context, path string, opts CorpusOptions) (*Corpus, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultCorpusMaxBytes
	}
	var sb strings.Builder
	c := &Corpus{path: path, index: map[string]corpusEntry{}}
	// Repeated chunks take no memory but are compared in full: bound the
	// bytes read too, or a few bytes of dictionary indexes repeating one
	// long text could keep the load busy for hours.
	var scanned int64
	err := scanCorpus(ctx, path, func(row int64, id, text []byte) error {
		if scanned += int64(len(id) + len(text)); scanned > corpusScanFactor*opts.MaxBytes {
			return configErr(fmt.Errorf("corpus file %s: more than %d bytes of chunk ids and texts by row %d, repeated chunks included (%d times the memory bound); raise the bound or use OpenCorpusIndex", path, corpusScanFactor*opts.MaxBytes, row, corpusScanFactor))
		}
		if prev, dup := c.index[string(id)]; dup {
			if sb.String()[prev.off:prev.off+prev.n] != string(text) {
				return configErr(fmt.Errorf("corpus file %s: chunk_id %q at rows %d and %d with different text", path, id, prev.row, row))
			}
			return nil
		}
		c.bytes += int64(len(id)+len(text)) + CorpusEntryOverhead
		if c.bytes > opts.MaxBytes {
			return configErr(fmt.Errorf("corpus file %s: more than %d bytes in memory by row %d; raise the bound or use OpenCorpusIndex", path, opts.MaxBytes, row))
		}
		c.index[string(id)] = corpusEntry{off: sb.Len(), n: len(text), row: row}
		sb.Write(text)
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.text = sb.String()
	return c, nil
}

// scanCorpus checks a corpus file's schema and calls fn for every row with
// its chunk_id and text (valid only during the call), one row group at a time.
func scanCorpus(ctx context.Context, path string, fn func(row int64, id, text []byte) error) (err error) {
	f, pf, guard, err := openParquet(path, "corpus")
	if err != nil {
		return err
	}
	defer f.Close()
	defer guard.Close()
	defer func() {
		if p := recover(); p != nil {
			err = configErr(fmt.Errorf("corpus file %s: unreadable schema or data: %v", path, p))
		}
	}()
	idCol, textCol := -1, -1
	var idMaxDef, textMaxDef int
	for _, col := range pf.Root().Columns() {
		switch col.Name() {
		case ColChunkID, ColText:
			if !isStringLeaf(col) || col.Repeated() {
				return configErr(fmt.Errorf("corpus file %s, column %s: want string, found %s", path, col.Name(), typeName(col)))
			}
			if col.Name() == ColChunkID {
				idCol, idMaxDef = col.Index(), col.MaxDefinitionLevel()
			} else {
				textCol, textMaxDef = col.Index(), col.MaxDefinitionLevel()
			}
		}
	}
	var missing []error
	if idCol < 0 {
		missing = append(missing, fmt.Errorf("corpus file %s, column %s: required column is missing", path, ColChunkID))
	}
	if textCol < 0 {
		missing = append(missing, fmt.Errorf("corpus file %s, column %s: required column is missing", path, ColText))
	}
	if len(missing) > 0 {
		return configErr(errors.Join(missing...))
	}
	var base int64
	for g, rg := range pf.RowGroups() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := guard.RowGroup(g); err != nil {
			return configErr(err)
		}
		if err := scanRowGroup(path, g, base, rg, idCol, textCol, idMaxDef, textMaxDef, fn); err != nil {
			return err
		}
		base += rg.NumRows()
	}
	return nil
}

// scanRowGroup pairs a row group's chunk_id and text values page by page:
// it holds one page of each column, never the whole column chunk (a page of
// dictionary indexes can repeat one long text millions of times).
func scanRowGroup(path string, g int, base int64, rg parquet.RowGroup, idCol, textCol, idMaxDef, textMaxDef int,
	fn func(row int64, id, text []byte) error) error {
	ids := newValueStream(rg.ColumnChunks()[idCol])
	defer ids.close()
	texts := newValueStream(rg.ColumnChunks()[textCol])
	defer texts.close()
	n := rg.NumRows()
	for i := int64(0); i < n; i++ {
		id, err := ids.next()
		if err != nil {
			return configErr(fmt.Errorf("corpus file %s, row group %d, column %s (row %d of %d): %w", path, g, ColChunkID, i, n, err))
		}
		text, err := texts.next()
		if err != nil {
			return configErr(fmt.Errorf("corpus file %s, row group %d, column %s (row %d of %d): %w", path, g, ColText, i, n, err))
		}
		row := base + i
		if id.DefinitionLevel() < idMaxDef || len(id.ByteArray()) == 0 {
			return configErr(fmt.Errorf("corpus file %s row %d, column %s: null or empty chunk_id", path, row, ColChunkID))
		}
		if text.DefinitionLevel() < textMaxDef {
			return configErr(fmt.Errorf("corpus file %s row %d, column %s: text is null", path, row, ColText))
		}
		if err := fn(row, id.ByteArray(), text.ByteArray()); err != nil {
			return err
		}
	}
	return nil
}

// valueStream hands out a flat column chunk's values one at a time. A value
// stays valid until the stream moves to the next page, so a caller uses each
// value before asking for the next one of the same stream.
type valueStream struct {
	pages parquet.Pages
	page  parquet.Page
	vr    parquet.ValueReader
	buf   []parquet.Value
	i, n  int
}

func newValueStream(cc parquet.ColumnChunk) *valueStream {
	return &valueStream{pages: cc.Pages(), buf: make([]parquet.Value, 256)}
}

func (s *valueStream) next() (parquet.Value, error) {
	for s.i >= s.n {
		if s.vr == nil {
			s.release()
			p, err := s.pages.ReadPage()
			if errors.Is(err, io.EOF) {
				return parquet.Value{}, io.ErrUnexpectedEOF // fewer values than rows
			}
			if err != nil {
				return parquet.Value{}, err
			}
			s.page, s.vr = p, p.Values()
		}
		n, err := s.vr.ReadValues(s.buf)
		s.i, s.n = 0, n
		if errors.Is(err, io.EOF) || (err == nil && n == 0) {
			s.vr = nil // the page is done; its values stay valid until the next
		} else if err != nil {
			return parquet.Value{}, err
		}
	}
	s.i++
	return s.buf[s.i-1], nil
}

func (s *valueStream) release() {
	if s.page != nil {
		parquet.Release(s.page)
		s.page = nil
	}
}

func (s *valueStream) close() {
	s.release()
	s.pages.Close()
}

// Text returns a chunk's text.
func (c *Corpus) Text(chunkID string) (string, bool) {
	e, ok := c.index[chunkID]
	if !ok {
		return "", false
	}
	return c.text[e.off : e.off+e.n], true
}

// Len is the number of distinct chunks.
func (c *Corpus) Len() int { return len(c.index) }

// Bytes is the estimated memory the corpus holds.
func (c *Corpus) Bytes() int64 { return c.bytes }

// IDs calls fn for every chunk id (in no particular order) until fn returns false.
func (c *Corpus) IDs(fn func(id string) bool) {
	for id := range c.index {
		if !fn(id) {
			return
		}
	}
}

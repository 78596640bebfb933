package jobs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/delta"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
	"github.com/pierrec/lz4/v4"
)

// What one Parquet file may make a reader hold. parquet-go allocates what a
// file claims before it reads the bytes behind the claim (the footer length,
// a page's sizes and value count, a dictionary's size) and its level,
// dictionary-index and delta decoders expand a few bytes into as many values
// as a run header says, so a file of a few kilobytes could ask for 2^32 bytes
// at once, and a fuzz worker doing that a few times in a row stalled for
// seconds zeroing memory (docs/RELIABILITY.md, "Fuzzing"). parquetGuard checks
// every such claim against the file and these bounds before parquet-go sees
// it. The bounds are far above what Parquet writers produce (pages of about
// 1 MiB and 20,000 rows).
const (
	// MaxParquetFooterBytes bounds a file's footer (its metadata).
	MaxParquetFooterBytes = 64 << 20
	// MaxParquetPageBytes bounds one page, compressed or uncompressed, and
	// the values one page decodes to.
	MaxParquetPageBytes = 256 << 20
	// MaxParquetPageValues bounds the values (nulls included) of one page.
	MaxParquetPageValues = 1 << 24
	// MaxParquetRowGroupBytes bounds what reading a row group holds at once:
	// the largest page of every column, decompressed and decoded, and every
	// column's dictionary.
	MaxParquetRowGroupBytes = 1 << 30
)

// maxPageHeaderBytes bounds one page header (its statistics included).
const maxPageHeaderBytes = 16 << 20

// checkFooter checks the footer length and the footer's encoding before
// parquet-go reads it: the length must fit in the file, and no list, map or
// byte string of the footer may claim more elements or bytes than the footer
// holds (parquet-go allocates those before decoding them). It returns where
// the footer starts: the end of the pages.
func checkFooter(r io.ReaderAt, size int64) (dataEnd int64, err error) {
	if size < 12 {
		return 0, fmt.Errorf("%d bytes is too short for a Parquet file (at least 12)", size)
	}
	var tail [8]byte
	if _, err := r.ReadAt(tail[:], size-8); err != nil {
		return 0, err
	}
	if string(tail[4:]) != "PAR1" {
		if string(tail[4:]) == "PARE" {
			return 0, errors.New("encrypted Parquet footers are not supported")
		}
		return 0, fmt.Errorf("no Parquet magic at the end of the file (found %q)", tail[4:])
	}
	n := int64(binary.LittleEndian.Uint32(tail[:4]))
	if n > size-12 {
		return 0, fmt.Errorf("footer length claims %d bytes, the file is %d bytes", n, size)
	}
	if n > MaxParquetFooterBytes {
		return 0, fmt.Errorf("footer length claims %d bytes, over the limit of %d", n, MaxParquetFooterBytes)
	}
	footer := make([]byte, n)
	if _, err := r.ReadAt(footer, size-8-n); err != nil {
		return 0, err
	}
	if _, err := skimThrift(footer); err != nil {
		return 0, fmt.Errorf("footer: %w", err)
	}
	return size - 8 - n, nil
}

// skimThrift walks one thrift compact-protocol struct at the start of b
// without building it and returns its length. It fails where a list, set,
// map or byte string claims more than the bytes left (every element takes at
// least one byte) or structs nest deeper than parquet-go's metadata does.
func skimThrift(b []byte) (int, error) {
	var proto thrift.CompactProtocol
	r := proto.NewReaderFromBytes(b)
	k := &skimmer{r: r, size: len(b)}
	err := k.value(thrift.STRUCT, 0)
	return r.BytesRead(), err
}

// maxThriftElements bounds the list, set and map elements of one footer or
// page header. Every element the skim counts is really there (it walked it),
// but parquet-go allocates each list whole in Go structs of up to a few
// hundred bytes, so a footer of empty structs could still ask for gigabytes.
// Real footers hold a few elements per column chunk.
const maxThriftElements = 1 << 21

type skimmer struct {
	r     thrift.Reader
	size  int
	elems int
}

const maxThriftDepth = 32

func (k *skimmer) value(t thrift.Type, depth int) error {
	r, size := k.r, k.size
	if depth > maxThriftDepth {
		return fmt.Errorf("thrift structures nested over %d deep", maxThriftDepth)
	}
	left := func(what string, n int) error {
		if n < 0 || n > size-r.BytesRead() {
			return fmt.Errorf("a thrift %s claims %d, only %d bytes are left: %w", what, n, size-r.BytesRead(), io.ErrUnexpectedEOF)
		}
		return nil
	}
	var err error
	switch t {
	case thrift.TRUE, thrift.FALSE:
		// A bool field carries its value in its type; an element of a list
		// takes one byte (items reads it).
	case thrift.I8:
		_, err = r.ReadInt8()
	case thrift.I16:
		_, err = r.ReadInt16()
	case thrift.I32:
		_, err = r.ReadInt32()
	case thrift.I64:
		_, err = r.ReadInt64()
	case thrift.DOUBLE:
		_, err = r.ReadFloat64()
	case thrift.UUID:
		if err = left("uuid", 16); err == nil {
			_, err = r.ReadFloat64()
			if err == nil {
				_, err = r.ReadFloat64()
			}
		}
	case thrift.BINARY:
		_, err = r.ReadBytes() // a bytes reader checks the length against what is left
	case thrift.LIST, thrift.SET:
		var l thrift.List
		if l, err = r.ReadList(); err == nil {
			if err = left("list", int(l.Size)); err == nil {
				err = k.items(l.Type, int(l.Size), depth)
			}
		}
	case thrift.MAP:
		var m thrift.Map
		if m, err = r.ReadMap(); err == nil {
			if err = left("map", 2*int(m.Size)); err == nil {
				for i := 0; i < int(m.Size) && err == nil; i++ {
					if err = k.items(m.Key, 1, depth); err == nil {
						err = k.items(m.Value, 1, depth)
					}
				}
			}
		}
	case thrift.STRUCT:
		for {
			var f thrift.Field
			if f, err = r.ReadField(); err != nil || f.Type == thrift.STOP {
				break
			}
			if err = k.value(f.Type, depth+1); err != nil {
				break
			}
		}
	default:
		err = fmt.Errorf("unknown thrift type %d", t)
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (k *skimmer) items(t thrift.Type, n, depth int) error {
	if k.elems += n; k.elems > maxThriftElements {
		return fmt.Errorf("thrift lists hold over %d elements", maxThriftElements)
	}
	for i := 0; i < n; i++ {
		if t == thrift.TRUE || t == thrift.FALSE {
			if _, err := k.r.ReadBool(); err != nil {
				return err
			}
			continue
		}
		if err := k.value(t, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// parquetGuard checks a file's metadata once and each row group's pages
// before a reader reads them.
type parquetGuard struct {
	path, what string
	r          io.ReaderAt
	size       int64 // the file's
	dataEnd    int64 // where the footer starts
	pf         *parquet.File
	leaves     []*parquet.Column // by column index
	checked    []bool            // row groups whose pages passed

	hdr, body []byte // reused page buffers
	zr        *zstd.Decoder
}

func newParquetGuard(path, what string, r io.ReaderAt, size, dataEnd int64, pf *parquet.File) (*parquetGuard, error) {
	g := &parquetGuard{path: path, what: what, r: r, size: size, dataEnd: dataEnd, pf: pf}
	var walk func(c *parquet.Column)
	walk = func(c *parquet.Column) {
		if c.Leaf() {
			for len(g.leaves) <= c.Index() {
				g.leaves = append(g.leaves, nil)
			}
			g.leaves[c.Index()] = c
			return
		}
		for _, k := range c.Columns() {
			walk(k)
		}
	}
	walk(pf.Root())
	md := pf.Metadata()
	g.checked = make([]bool, len(md.RowGroups))
	if md.NumRows < 0 {
		return nil, g.errf("num_rows is %d", md.NumRows)
	}
	var rows int64
	for i := range md.RowGroups {
		rg := &md.RowGroups[i]
		if rg.NumRows < 0 || rg.NumRows > math.MaxInt64-rows {
			return nil, g.errf("row group %d: num_rows is %d", i, rg.NumRows)
		}
		rows += rg.NumRows
		if len(rg.Columns) != len(g.leaves) {
			return nil, g.errf("row group %d has %d column chunks, the schema has %d columns", i, len(rg.Columns), len(g.leaves))
		}
		for c := range rg.Columns {
			if err := g.checkChunkMeta(i, c, &rg.Columns[c]); err != nil {
				return nil, err
			}
		}
	}
	if rows != md.NumRows {
		return nil, g.errf("num_rows is %d, its row groups hold %d", md.NumRows, rows)
	}
	return g, nil
}

func (g *parquetGuard) errf(format string, args ...any) error {
	return fmt.Errorf("%s file %s: %s", g.what, g.path, fmt.Sprintf(format, args...))
}

func (g *parquetGuard) colName(c int) string {
	if c < len(g.leaves) && g.leaves[c] != nil {
		return strings.Join(g.leaves[c].Path(), ".")
	}
	return fmt.Sprint(c)
}

// chunkRange is the byte range parquet-go reads for a column chunk: from the
// dictionary page when there is one, else the first data page.
func chunkRange(md *format.ColumnMetaData) (start, end int64) {
	start = md.DataPageOffset
	if md.DictionaryPageOffset != 0 {
		start = md.DictionaryPageOffset
	}
	return start, start + md.TotalCompressedSize
}

func (g *parquetGuard) checkChunkMeta(rg, c int, cc *format.ColumnChunk) error {
	md := &cc.MetaData
	at := func(format string, args ...any) error {
		return g.errf("row group %d, column %s: %s", rg, g.colName(c), fmt.Sprintf(format, args...))
	}
	if cc.FilePath != "" {
		return at("data in another file (%q) is not supported", cc.FilePath)
	}
	if md.NumValues < 0 {
		return at("num_values is %d", md.NumValues)
	}
	inData := func(field string, off int64) error {
		if off < 4 || off >= g.dataEnd {
			return at("%s %d is outside the file's pages (bytes 4 to %d)", field, off, g.dataEnd)
		}
		return nil
	}
	if err := inData("data_page_offset", md.DataPageOffset); err != nil {
		return err
	}
	if md.DictionaryPageOffset != 0 {
		if err := inData("dictionary_page_offset", md.DictionaryPageOffset); err != nil {
			return err
		}
	}
	start, _ := chunkRange(md)
	if md.TotalCompressedSize <= 0 || md.TotalCompressedSize > g.dataEnd-start {
		return at("total_compressed_size %d does not fit between byte %d and the footer at %d", md.TotalCompressedSize, start, g.dataEnd)
	}
	switch md.Codec {
	case format.Uncompressed, format.Snappy, format.Gzip, format.Brotli, format.Zstd, format.Lz4Raw:
	default:
		return at("compression codec %v is not supported", md.Codec)
	}
	return nil
}

// RowGroup checks every page of row group i (once): each size and count
// claim against the column chunk and the bounds above, each compressed page
// by decompressing it with a limit, and each run-length encoded stream of
// levels, dictionary indexes and delta values against the page's value
// count. It must pass before parquet-go reads the row group.
func (g *parquetGuard) RowGroup(i int) error {
	if i < 0 || i >= len(g.checked) || g.checked[i] {
		return nil
	}
	rg := &g.pf.Metadata().RowGroups[i]
	var need int64
	for c := range rg.Columns {
		n, err := g.checkChunk(i, c, rg)
		if err != nil {
			return err
		}
		need += n
	}
	if need > MaxParquetRowGroupBytes {
		return g.errf("row group %d: reading it needs about %d MiB at once (a page of every column and their dictionaries), over the limit of %d MiB",
			i, need>>20, MaxParquetRowGroupBytes>>20)
	}
	g.checked[i] = true
	return nil
}

// checkChunk walks one column chunk's pages and returns the memory reading
// it holds at once: its dictionary and its largest page.
func (g *parquetGuard) checkChunk(rgi, c int, rg *format.RowGroup) (need int64, err error) {
	md := &rg.Columns[c].MetaData
	col := g.leaves[c]
	maxRep, maxDef := col.MaxRepetitionLevel(), col.MaxDefinitionLevel()
	pos, end := chunkRange(md)
	var values, largest int64
	for page := 0; pos < end; page++ {
		at := func(format string, args ...any) error {
			return g.errf("row group %d, column %s, page %d (byte %d): %s", rgi, g.colName(c), page, pos, fmt.Sprintf(format, args...))
		}
		h, hlen, err := g.readHeader(pos, end)
		if err != nil {
			return 0, at("page header: %v", err)
		}
		left := end - pos - int64(hlen)
		switch {
		case h.CompressedPageSize < 0 || int64(h.CompressedPageSize) > left:
			return 0, at("compressed_page_size claims %d bytes, %d are left in the column chunk (the file is %d bytes)", h.CompressedPageSize, left, g.size)
		case h.CompressedPageSize > MaxParquetPageBytes:
			return 0, at("compressed_page_size %d is over the limit of %d", h.CompressedPageSize, MaxParquetPageBytes)
		case h.UncompressedPageSize < 0 || h.UncompressedPageSize > MaxParquetPageBytes:
			return 0, at("uncompressed_page_size claims %d bytes, the limit is %d (the file is %d bytes)", h.UncompressedPageSize, MaxParquetPageBytes, g.size)
		}
		body, err := g.readBody(pos+int64(hlen), int(h.CompressedPageSize))
		if err != nil {
			return 0, at("%v", err)
		}
		var nv int64
		switch h.Type {
		case format.DictionaryPage:
			if !h.DictionaryPageHeader.Valid {
				break
			}
			nv = int64(h.DictionaryPageHeader.V.NumValues)
			if err := checkCount("dictionary page num_values", nv); err != nil {
				return 0, at("%v", err)
			}
			if _, err := g.decompress(md.Codec, body, int(h.UncompressedPageSize)); err != nil {
				return 0, at("%v", err)
			}
			// The dictionary stays in memory for the whole column chunk.
			need += int64(h.UncompressedPageSize) + 8*nv
			pos += int64(hlen) + int64(h.CompressedPageSize)
			continue
		case format.DataPage:
			if !h.DataPageHeader.Valid {
				break
			}
			v := &h.DataPageHeader.V
			nv = int64(v.NumValues)
			if err := checkCount("data page num_values", nv); err != nil {
				return 0, at("%v", err)
			}
			data, err := g.decompress(md.Codec, body, int(h.UncompressedPageSize))
			if err != nil {
				return 0, at("%v", err)
			}
			if maxRep > 0 {
				if data, err = levelsV1("repetition levels", v.RepetitionLevelEncoding, data, maxRep, nv); err != nil {
					return 0, at("%v", err)
				}
			}
			if maxDef > 0 {
				if data, err = levelsV1("definition levels", v.DefinitionLevelEncoding, data, maxDef, nv); err != nil {
					return 0, at("%v", err)
				}
			}
			if err := checkValues(v.Encoding, data, nv); err != nil {
				return 0, at("%v", err)
			}
		case format.DataPageV2:
			if !h.DataPageHeaderV2.Valid {
				break
			}
			v := &h.DataPageHeaderV2.V
			nv = int64(v.NumValues)
			if err := checkCount("data page num_values", nv); err != nil {
				return 0, at("%v", err)
			}
			rl, dl := int64(v.RepetitionLevelsByteLength), int64(v.DefinitionLevelsByteLength)
			if rl < 0 || dl < 0 || rl+dl > int64(len(body)) || rl+dl > int64(h.UncompressedPageSize) {
				return 0, at("repetition and definition levels claim %d and %d bytes, the page has %d", rl, dl, len(body))
			}
			if v.NumNulls < 0 || int64(v.NumNulls) > nv || v.NumRows < 0 || int64(v.NumRows) > nv {
				return 0, at("num_nulls %d or num_rows %d is not in 0..num_values (%d)", v.NumNulls, v.NumRows, nv)
			}
			if maxRep > 0 {
				if err := checkRuns("repetition levels", body[:rl], bits.Len(uint(maxRep)), nv); err != nil {
					return 0, at("%v", err)
				}
			}
			if maxDef > 0 {
				if err := checkRuns("definition levels", body[rl:rl+dl], bits.Len(uint(maxDef)), nv); err != nil {
					return 0, at("%v", err)
				}
			}
			data := body[rl+dl:]
			if !v.IsCompressed.Valid || v.IsCompressed.V {
				if data, err = g.decompress(md.Codec, data, int(int64(h.UncompressedPageSize)-rl-dl)); err != nil {
					return 0, at("%v", err)
				}
			}
			if err := checkValues(v.Encoding, data, nv-int64(v.NumNulls)); err != nil {
				return 0, at("%v", err)
			}
		}
		if h.Type != format.DictionaryPage {
			values += nv
		}
		// Compressed and decompressed bytes, levels (1 byte each), offsets
		// (4 bytes each) and one decoded value (24 bytes) per value.
		if cost := int64(h.CompressedPageSize) + int64(h.UncompressedPageSize) + 30*nv; cost > largest {
			largest = cost
		}
		pos += int64(hlen) + int64(h.CompressedPageSize)
	}
	// A column without repetition has one value (null or not) per row.
	if maxRep == 0 && values != rg.NumRows {
		return 0, g.errf("row group %d, column %s: its pages hold %d values, the row group claims num_rows %d", rgi, g.colName(c), values, rg.NumRows)
	}
	if values != md.NumValues {
		return 0, g.errf("row group %d, column %s: its pages hold %d values, the column chunk claims num_values %d", rgi, g.colName(c), values, md.NumValues)
	}
	return need + largest, nil
}

func checkCount(field string, n int64) error {
	if n < 0 || n > MaxParquetPageValues {
		return fmt.Errorf("%s claims %d values, the limit is %d", field, n, MaxParquetPageValues)
	}
	return nil
}

// readHeader decodes the page header at pos, reading a growing window so that
// a header claiming a large statistics value cannot allocate more than the
// bytes present.
func (g *parquetGuard) readHeader(pos, end int64) (h format.PageHeader, n int, err error) {
	for size := int64(4 << 10); ; size *= 8 {
		size = min(size, end-pos, maxPageHeaderBytes)
		if int64(cap(g.hdr)) < size {
			g.hdr = make([]byte, size)
		}
		win := g.hdr[:size]
		if _, err = g.r.ReadAt(win, pos); err != nil {
			return h, 0, err
		}
		n, err = skimThrift(win)
		if err == nil {
			var proto thrift.CompactProtocol
			err = thrift.NewDecoder(proto.NewReaderFromBytes(win[:n])).Decode(&h)
			return h, n, err
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) || size == min(end-pos, maxPageHeaderBytes) {
			return h, 0, err
		}
	}
}

func (g *parquetGuard) readBody(pos int64, n int) ([]byte, error) {
	if cap(g.body) < n {
		g.body = make([]byte, n)
	}
	b := g.body[:n]
	if _, err := g.r.ReadAt(b, pos); err != nil {
		return nil, err
	}
	return b, nil
}

// decompress decodes a page body with its codec, failing as soon as it would
// produce more than limit bytes (the page's uncompressed_page_size): some of
// parquet-go's decoders grow their output without bound (zstd, gzip, brotli)
// or double it for ever on corrupt input (LZ4).
func (g *parquetGuard) decompress(codec format.CompressionCodec, src []byte, limit int) ([]byte, error) {
	if limit < 0 {
		return nil, fmt.Errorf("uncompressed_page_size is smaller than the page's levels")
	}
	over := func(n int) error {
		return fmt.Errorf("%v data decompresses to %d bytes or more, uncompressed_page_size claims %d", codec, n, limit)
	}
	var rd io.Reader
	switch codec {
	case format.Uncompressed:
		return src, nil
	case format.Snappy:
		n, err := snappy.DecodedLen(src)
		if err != nil {
			return nil, fmt.Errorf("snappy: %w", err)
		}
		if n > limit {
			return nil, over(n)
		}
		out, err := snappy.Decode(make([]byte, n), src)
		if err != nil {
			return nil, fmt.Errorf("snappy: %w", err)
		}
		return out, nil
	case format.Lz4Raw:
		out := make([]byte, limit)
		n, err := lz4.UncompressBlock(src, out)
		if err != nil {
			return nil, fmt.Errorf("lz4 data does not decompress into uncompressed_page_size (%d bytes): %w", limit, err)
		}
		return out[:n], nil
	case format.Gzip:
		zr, err := gzip.NewReader(bytes.NewReader(src))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		rd = zr
	case format.Brotli:
		rd = brotli.NewReader(bytes.NewReader(src))
	case format.Zstd:
		if g.zr == nil {
			zr, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxMemory(MaxParquetPageBytes))
			if err != nil {
				return nil, err
			}
			g.zr = zr
		}
		if err := g.zr.Reset(bytes.NewReader(src)); err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		rd = g.zr
	default:
		return nil, fmt.Errorf("compression codec %v is not supported", codec)
	}
	out, err := io.ReadAll(io.LimitReader(rd, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("%v: %w", codec, err)
	}
	if len(out) > limit {
		return nil, over(len(out))
	}
	return out, nil
}

// Close releases the guard's decoder.
func (g *parquetGuard) Close() {
	if g.zr != nil {
		g.zr.Close()
		g.zr = nil
	}
}

// levelsV1 checks the levels at the start of a v1 data page and returns the
// rest of the page.
func levelsV1(what string, enc format.Encoding, data []byte, maxLevel int, nv int64) ([]byte, error) {
	bw := bits.Len(uint(maxLevel))
	if enc == format.BitPacked { // deprecated: exactly nv levels, no length prefix
		n := (nv*int64(bw) + 7) / 8
		if n > int64(len(data)) {
			return nil, fmt.Errorf("%s: %d bytes needed, %d in the page", what, n, len(data))
		}
		return data[n:], nil
	}
	if len(data) < 4 {
		return nil, fmt.Errorf("%s: no length", what)
	}
	n := int64(binary.LittleEndian.Uint32(data))
	if n > int64(len(data)-4) {
		return nil, fmt.Errorf("%s claim %d bytes, %d are left in the page", what, n, len(data)-4)
	}
	if err := checkRuns(what, data[4:4+n], bw, nv); err != nil {
		return nil, err
	}
	return data[4+n:], nil
}

// checkRuns adds up the values of an RLE/bit-packed hybrid stream: they may
// not exceed the page's nv values (plus the padding of the last group of 8).
// parquet-go's decoders expand every run a header claims (up to 2^31 values
// from 5 bytes) before comparing with the page.
func checkRuns(what string, src []byte, bitWidth int, nv int64) error {
	limit := uint64(nv) + 7
	var total uint64
	for i := 0; i < len(src); {
		u, n := binary.Uvarint(src[i:])
		if n <= 0 {
			return nil // parquet-go reports the broken header
		}
		i += n
		if u&1 == 1 { // bit-packed: u>>1 groups of 8 values
			groups := u >> 1
			if groups > limit {
				return fmt.Errorf("%s decode to %d values or more, the page claims %d", what, groups*8, nv)
			}
			total += groups * 8
			skip := groups * uint64(bitWidth)
			if skip > uint64(len(src)-i) {
				return nil
			}
			i += int(skip)
		} else {
			total += u >> 1
			i += (bitWidth + 7) / 8
		}
		if total > limit {
			return fmt.Errorf("%s decode to %d values or more, the page claims %d", what, total, nv)
		}
	}
	return nil
}

// checkValues checks the encoded values of a data page that can expand past
// the page: dictionary indexes, RLE booleans and delta encodings. nv bounds
// the non-null values.
func checkValues(enc format.Encoding, data []byte, nv int64) error {
	switch enc {
	//lint:ignore SA1019 older writers still mark dictionary indexes PLAIN_DICTIONARY
	case format.RLEDictionary, format.PlainDictionary:
		if len(data) == 0 {
			return nil
		}
		if data[0] > 32 {
			return fmt.Errorf("dictionary indexes: bit width %d", data[0])
		}
		return checkRuns("dictionary indexes", data[1:], int(data[0]), nv)
	case format.RLE: // booleans, after a 4-byte length
		if len(data) < 4 {
			return nil
		}
		n := int(min(binary.LittleEndian.Uint32(data), uint32(len(data)-4)))
		return checkRuns("RLE booleans", data[4:4+n], 1, nv)
	case format.DeltaBinaryPacked, format.DeltaLengthByteArray:
		_, err := deltaStream(data, nv)
		return err
	case format.DeltaByteArray:
		return checkDeltaByteArray(data, nv)
	}
	return nil
}

// deltaStream checks a DELTA_BINARY_PACKED stream's header (its value count
// may not exceed the page's: parquet-go allocates 4 or 8 bytes per claimed
// value) and returns the stream's length in bytes (the next stream of a
// DELTA_BYTE_ARRAY page starts there).
func deltaStream(src []byte, nv int64) (int, error) {
	i := 0
	next := func() (uint64, bool) {
		u, n := binary.Uvarint(src[i:])
		if n <= 0 {
			return 0, false
		}
		i += n
		return u, true
	}
	blockSize, ok1 := next()
	miniBlocks, ok2 := next()
	total, ok3 := next()
	_, n := binary.Varint(src[min(i, len(src)):])
	if !ok1 || !ok2 || !ok3 || n <= 0 {
		return len(src), nil // parquet-go reports the broken header
	}
	i += n
	if total > uint64(nv) {
		return 0, fmt.Errorf("delta encoding header claims %d values, the page claims %d", total, nv)
	}
	if miniBlocks == 0 || blockSize == 0 || blockSize%128 != 0 || blockSize > 1<<20 || (blockSize/miniBlocks)%32 != 0 {
		return len(src), nil // parquet-go rejects the header
	}
	perMini := blockSize / miniBlocks
	for left := int64(total) - 1; left > 0; {
		if _, ok := next(); !ok { // min delta
			return len(src), nil
		}
		if uint64(len(src)-i) < miniBlocks {
			return len(src), nil
		}
		widths := src[i : i+int(miniBlocks)]
		i += int(miniBlocks)
		for m := 0; m < len(widths) && left > 0; m++ {
			i += int(perMini * uint64(widths[m]) / 8)
			left -= int64(perMini)
		}
		if i > len(src) {
			return len(src), nil
		}
	}
	return i, nil
}

// checkDeltaByteArray bounds what a DELTA_BYTE_ARRAY page decodes to: each
// value repeats a prefix of the one before, so a few bytes of lengths can
// claim a quadratic number of bytes.
func checkDeltaByteArray(data []byte, nv int64) error {
	n, err := deltaStream(data, nv)
	if err != nil {
		return err
	}
	if _, err := deltaStream(data[n:], nv); err != nil {
		return err
	}
	var enc delta.BinaryPackedEncoding
	prefix, err := enc.DecodeInt32(nil, data[:n])
	if err != nil {
		return nil // parquet-go reports it
	}
	suffix, err := enc.DecodeInt32(nil, data[n:])
	if err != nil || len(suffix) != len(prefix) {
		return nil
	}
	var last, total int64
	for i := range prefix {
		if prefix[i] < 0 || int64(prefix[i]) > last || suffix[i] < 0 {
			return nil // parquet-go rejects it
		}
		last = int64(prefix[i]) + int64(suffix[i])
		if total += last; total > MaxParquetPageBytes {
			return fmt.Errorf("DELTA_BYTE_ARRAY values decode to over %d bytes", MaxParquetPageBytes)
		}
	}
	return nil
}

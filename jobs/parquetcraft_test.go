package jobs

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
)

// craftFile is a valid Parquet file taken apart into its footer and pages so
// that a test can lie in any size or count field (a page header, a column
// chunk's metadata, a row group, the footer length) and lay it out again:
// the hostile files of TestParquetClaimsAreBounded.
type craftFile struct {
	meta   format.FileMetaData
	chunks [][][]craftPage // [row group][column][page]
	// footerLen, when set, replaces the footer length written before the
	// closing magic.
	footerLen uint32
}

type craftPage struct {
	hdr  format.PageHeader
	body []byte
}

// parseCraft takes a Parquet file written by parquet-go apart.
func parseCraft(tb testing.TB, data []byte) *craftFile {
	tb.Helper()
	var proto thrift.CompactProtocol
	n := len(data)
	flen := int(binary.LittleEndian.Uint32(data[n-8:]))
	c := &craftFile{}
	if err := thrift.Unmarshal(&proto, data[n-8-flen:n-8], &c.meta); err != nil {
		tb.Fatal(err)
	}
	for _, rg := range c.meta.RowGroups {
		var cols [][]craftPage
		for _, cc := range rg.Columns {
			md := cc.MetaData
			pos := md.DataPageOffset
			if md.DictionaryPageOffset > 0 && md.DictionaryPageOffset < pos {
				pos = md.DictionaryPageOffset
			}
			end := pos + md.TotalCompressedSize
			var pages []craftPage
			for pos < end {
				r := proto.NewReaderFromBytes(data[pos:end])
				var h format.PageHeader
				if err := thrift.NewDecoder(r).Decode(&h); err != nil {
					tb.Fatal(err)
				}
				start := pos + int64(r.BytesRead())
				stop := start + int64(h.CompressedPageSize)
				pages = append(pages, craftPage{hdr: h, body: bytes.Clone(data[start:stop])})
				pos = stop
			}
			cols = append(cols, pages)
		}
		c.chunks = append(c.chunks, cols)
	}
	return c
}

// bytes lays the file out again: pages in order, every offset and total of
// the footer recomputed from them, then fix (if not nil) edits the footer
// just before it is written, so that a claim there can be made false.
func (c *craftFile) bytes(tb testing.TB, fix func(*format.FileMetaData)) []byte {
	tb.Helper()
	var proto thrift.CompactProtocol
	out := []byte("PAR1")
	for g, cols := range c.chunks {
		rg := &c.meta.RowGroups[g]
		rgStart := int64(len(out))
		for ci, pages := range cols {
			md := &rg.Columns[ci].MetaData
			start := int64(len(out))
			md.DictionaryPageOffset = 0
			md.DataPageOffset = 0
			var uncompressed int64
			for _, p := range pages {
				off := int64(len(out))
				h, err := thrift.Marshal(&proto, &p.hdr)
				if err != nil {
					tb.Fatal(err)
				}
				if p.hdr.Type == format.DictionaryPage {
					md.DictionaryPageOffset = off
				} else if md.DataPageOffset == 0 {
					md.DataPageOffset = off
				}
				out = append(out, h...)
				out = append(out, p.body...)
				uncompressed += int64(len(h)) + int64(p.hdr.UncompressedPageSize)
			}
			md.TotalCompressedSize = int64(len(out)) - start
			md.TotalUncompressedSize = uncompressed
			rg.Columns[ci].FileOffset = start
		}
		rg.FileOffset = rgStart
		rg.TotalCompressedSize = int64(len(out)) - rgStart
	}
	meta := c.meta
	if fix != nil {
		fix(&meta)
	}
	footer, err := thrift.Marshal(&proto, &meta)
	if err != nil {
		tb.Fatal(err)
	}
	out = append(out, footer...)
	flen := uint32(len(footer))
	if c.footerLen != 0 {
		flen = c.footerLen
	}
	out = binary.LittleEndian.AppendUint32(out, flen)
	return append(out, "PAR1"...)
}

// page returns the first page of row group g, column col whose type is t.
func (c *craftFile) page(tb testing.TB, g, col int, t format.PageType) *craftPage {
	tb.Helper()
	for i := range c.chunks[g][col] {
		if c.chunks[g][col][i].hdr.Type == t {
			return &c.chunks[g][col][i]
		}
	}
	tb.Fatalf("row group %d column %d has no %v page", g, col, t)
	return nil
}

// column returns the index of the leaf column whose path starts with name.
func (c *craftFile) column(tb testing.TB, name string) int {
	tb.Helper()
	for i, cc := range c.meta.RowGroups[0].Columns {
		if len(cc.MetaData.PathInSchema) > 0 && cc.MetaData.PathInSchema[0] == name {
			return i
		}
	}
	tb.Fatalf("no column %s", name)
	return -1
}

// rleRun is one RLE run of count copies of v (bit width ≤ 8): the hybrid
// encoding's varint header count<<1 followed by the value's byte.
func rleRun(count uint64, v byte) []byte {
	return append(binary.AppendUvarint(nil, count<<1), v)
}

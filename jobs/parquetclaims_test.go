package jobs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// craftQ is the questions file the hostile files start from: every kind of
// page the readers meet (optional and required strings, a list, a
// dictionary-encoded column, a delta-encoded int, a compressed column).
type craftQ struct {
	QueryID      *string  `parquet:"query_id,optional,snappy"`
	Question     string   `parquet:"question,dict"`
	ChunkIDs     []string `parquet:"chunk_ids,list"`
	MaxNewTokens int32    `parquet:"max_new_tokens,delta"`
	Lang         *string  `parquet:"lang,optional"` // passed through
}

type craftC struct {
	ChunkID string  `parquet:"chunk_id,dict"`
	Text    *string `parquet:"text,optional,snappy"`
}

func craftBase(tb testing.TB, version int) (q, c *craftFile) {
	tb.Helper()
	var qs []craftQ
	var cs []craftC
	for i := 0; i < 40; i++ {
		id := string(rune('a'+i%26)) + string(rune('a'+i/26))
		n := int32(i + 1)
		qs = append(qs, craftQ{QueryID: &id, Question: "what is " + id[:1] + "?", ChunkIDs: []string{"c" + id, "d" + id}, MaxNewTokens: n, Lang: &id})
		text := "text of " + id
		cs = append(cs, craftC{ChunkID: "c" + id, Text: &text})
	}
	return parseCraft(tb, writeCraft(tb, qs, version)), parseCraft(tb, writeCraft(tb, cs, version))
}

func writeCraft[T any](tb testing.TB, rows []T, version int, opts ...parquet.WriterOption) []byte {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "base.parquet")
	f, err := os.Create(p)
	if err != nil {
		tb.Fatal(err)
	}
	w := parquet.NewGenericWriter[T](f, append([]parquet.WriterOption{parquet.MaxRowsPerRowGroup(20), parquet.DataPageVersion(version)}, opts...)...)
	if _, err := w.Write(rows); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	f.Close()
	b, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// levelsV2 replaces a v2 data page's repetition or definition levels.
func (p *craftPage) levelsV2(tb testing.TB, rep bool, levels []byte) {
	tb.Helper()
	h := &p.hdr.DataPageHeaderV2.V
	rl, dl := int(h.RepetitionLevelsByteLength), int(h.DefinitionLevelsByteLength)
	var body []byte
	if rep {
		body = append(append(body, levels...), p.body[rl:]...)
		h.RepetitionLevelsByteLength = int32(len(levels))
	} else {
		body = append(append(append(body, p.body[:rl]...), levels...), p.body[rl+dl:]...)
		h.DefinitionLevelsByteLength = int32(len(levels))
	}
	p.setBody(body)
}

// valuesV2 replaces the encoded values of an uncompressed v2 data page.
func (p *craftPage) valuesV2(values []byte) {
	h := &p.hdr.DataPageHeaderV2.V
	n := int(h.RepetitionLevelsByteLength + h.DefinitionLevelsByteLength)
	p.setBody(append(p.body[:n:n], values...))
}

// levelsV1 replaces the first level block (repetition levels of a repeated
// column, else definition levels) of an uncompressed v1 data page.
func (p *craftPage) levelsV1(levels []byte) {
	n := binary.LittleEndian.Uint32(p.body)
	body := binary.LittleEndian.AppendUint32(nil, uint32(len(levels)))
	body = append(append(body, levels...), p.body[4+n:]...)
	p.setBody(body)
}

func (p *craftPage) setBody(b []byte) {
	p.hdr.UncompressedPageSize += int32(len(b) - len(p.body))
	p.hdr.CompressedPageSize = int32(len(b))
	p.body = b
	if p.hdr.CRC != 0 { // keep the checksum right: the lie is in the sizes
		p.hdr.CRC = int32(crc32.ChecksumIEEE(b))
	}
}

// craftDict is a corpus whose columns are both dictionary-encoded.
type craftDict struct {
	ChunkID string `parquet:"chunk_id,dict"`
	Text    string `parquet:"text,dict"`
}

// repeatedText makes every page of a dictionary-encoded corpus repeat its
// one entry 2^16 times, with every count in the file agreeing: a valid file
// whose few bytes stand for 256 MiB of text.
func repeatedText(t *testing.T, f *craftFile) []byte {
	const n = 1 << 16
	for c := range f.chunks[0] {
		p := f.page(t, 0, c, format.DataPageV2)
		p.valuesV2(append([]byte{1}, rleRun(n, 0)...))
		p.hdr.DataPageHeaderV2.V.NumValues = n
		p.hdr.DataPageHeaderV2.V.NumRows = n
	}
	return f.bytes(t, func(m *format.FileMetaData) {
		m.RowGroups[0].NumRows = n
		for c := range m.RowGroups[0].Columns {
			m.RowGroups[0].Columns[c].MetaData.NumValues = n
		}
		m.NumRows = n
	})
}

// claimBound is the most a reader may allocate, in all, on one hostile file
// of a few kilobytes: the claims below ask for 256 MiB to 16 GiB.
const claimBound = 64 << 20

// TestParquetClaimsAreBounded hands both Parquet readers files whose size and
// count fields claim far more than the file holds, or whose encoded levels
// and values expand far beyond what their page claims, and checks that each
// gives an error naming the file and the field without allocating more than
// claimBound bytes (runtime.MemStats.TotalAlloc over the read).
func TestParquetClaimsAreBounded(t *testing.T) {
	type edit func(t *testing.T, f *craftFile) []byte
	page := func(col string, typ format.PageType, fn func(t *testing.T, p *craftPage)) edit {
		return func(t *testing.T, f *craftFile) []byte {
			fn(t, f.page(t, 0, f.column(t, col), typ))
			return f.bytes(t, nil)
		}
	}
	meta := func(fn func(m *format.FileMetaData)) edit {
		return func(t *testing.T, f *craftFile) []byte { return f.bytes(t, fn) }
	}
	bomb := rleRun(1<<28, 1) // 2^28 levels from 5 bytes
	cases := []struct {
		name    string
		corpus  bool // the corpus reader, else the questions reader
		version int  // data page version of the base file
		edit    edit
		want    string // in the error, besides the file name
	}{
		{"footer length 2^32-1", false, 2, func(t *testing.T, f *craftFile) []byte {
			f.footerLen = math.MaxUint32
			return f.bytes(t, nil)
		}, "footer"},
		{"footer length 2^32-1", true, 2, func(t *testing.T, f *craftFile) []byte {
			f.footerLen = math.MaxUint32
			return f.bytes(t, nil)
		}, "footer"},
		{"compressed_page_size 2^31-1", false, 2, page(ColQueryID, format.DataPageV2, func(t *testing.T, p *craftPage) {
			p.hdr.CompressedPageSize = math.MaxInt32
		}), "compressed_page_size"},
		{"compressed_page_size 2^31-1", true, 2, page(ColText, format.DataPageV2, func(t *testing.T, p *craftPage) {
			p.hdr.CompressedPageSize = math.MaxInt32
		}), "compressed_page_size"},
		{"uncompressed_page_size 2^31-1 (snappy)", false, 2, page(ColQueryID, format.DataPageV2, func(t *testing.T, p *craftPage) {
			p.hdr.UncompressedPageSize = math.MaxInt32
		}), "uncompressed_page_size"},
		{"uncompressed_page_size 2^31-1 (snappy)", true, 1, page(ColText, format.DataPage, func(t *testing.T, p *craftPage) {
			p.hdr.UncompressedPageSize = math.MaxInt32
		}), "uncompressed_page_size"},
		{"num_values 2^31-1", false, 2, page(ColChunkIDs, format.DataPageV2, func(t *testing.T, p *craftPage) {
			p.hdr.DataPageHeaderV2.V.NumValues = math.MaxInt32
		}), "num_values"},
		{"num_values 2^31-1 (v1)", true, 1, page(ColText, format.DataPage, func(t *testing.T, p *craftPage) {
			p.hdr.DataPageHeader.V.NumValues = math.MaxInt32
		}), "num_values"},
		{"dictionary num_values 2^31-1", false, 2, page(ColQuestion, format.DictionaryPage, func(t *testing.T, p *craftPage) {
			p.hdr.DictionaryPageHeader.V.NumValues = math.MaxInt32
		}), "num_values"},
		{"dictionary num_values 2^31-1", true, 2, page(ColChunkID, format.DictionaryPage, func(t *testing.T, p *craftPage) {
			p.hdr.DictionaryPageHeader.V.NumValues = math.MaxInt32
		}), "num_values"},
		{"definition levels expand to 2^28", false, 2, page(ColQueryID, format.DataPageV2, func(t *testing.T, p *craftPage) {
			p.levelsV2(t, false, bomb)
		}), "definition levels"},
		{"definition levels expand to 2^28 (v1)", false, 1, page("lang", format.DataPage, func(t *testing.T, p *craftPage) {
			p.levelsV1(bomb)
		}), "definition levels"},
		{"repetition levels expand to 2^28", false, 2, page(ColChunkIDs, format.DataPageV2, func(t *testing.T, p *craftPage) {
			p.levelsV2(t, true, rleRun(1<<28, 0))
		}), "repetition levels"},
		{"repetition levels expand to 2^28 (v1)", false, 1, page(ColChunkIDs, format.DataPage, func(t *testing.T, p *craftPage) {
			p.levelsV1(rleRun(1<<28, 0))
		}), "repetition levels"},
		{"definition levels expand to 2^28", true, 2, page(ColText, format.DataPageV2, func(t *testing.T, p *craftPage) {
			p.levelsV2(t, false, bomb)
		}), "definition levels"},
		{"dictionary indexes expand to 2^28", false, 2, page(ColQuestion, format.DataPageV2, func(t *testing.T, p *craftPage) {
			p.valuesV2(append([]byte{1}, rleRun(1<<28, 0)...))
		}), "dictionary indexes"},
		{"dictionary indexes expand to 2^28", true, 2, page(ColChunkID, format.DataPageV2, func(t *testing.T, p *craftPage) {
			p.valuesV2(append([]byte{1}, rleRun(1<<28, 0)...))
		}), "dictionary indexes"},
		{"delta header claims 2^30 values", false, 2, page(ColMaxNewTokens, format.DataPageV2, func(t *testing.T, p *craftPage) {
			h := binary.AppendUvarint(nil, 128)
			h = binary.AppendUvarint(h, 4)
			h = binary.AppendUvarint(h, 1<<30)
			p.valuesV2(binary.AppendVarint(h, 1))
		}), "delta"},
		{"row group num_rows 2^40", false, 2, meta(func(m *format.FileMetaData) {
			m.RowGroups[0].NumRows = 1 << 40
			m.NumRows = m.RowGroups[0].NumRows + m.RowGroups[1].NumRows
		}), "num_rows"},
		{"row group num_rows 2^40", true, 2, meta(func(m *format.FileMetaData) {
			m.RowGroups[0].NumRows = 1 << 40
			m.NumRows = m.RowGroups[0].NumRows + m.RowGroups[1].NumRows
		}), "num_rows"},
		{"column chunk num_values 2^40", true, 2, meta(func(m *format.FileMetaData) {
			m.RowGroups[0].Columns[1].MetaData.NumValues = 1 << 40
		}), "num_values"},
		{"column chunk past the end of the file", false, 2, meta(func(m *format.FileMetaData) {
			m.RowGroups[1].Columns[0].MetaData.TotalCompressedSize = 1 << 40
		}), "total_compressed_size"},
		{"column chunk past the end of the file", true, 2, meta(func(m *format.FileMetaData) {
			m.RowGroups[1].Columns[1].MetaData.DataPageOffset = 1 << 40
		}), "data_page_offset"},
	}
	cases = append(cases, struct {
		name    string
		corpus  bool
		version int
		edit    edit
		want    string
	}{"one 4 KiB text repeated by 2^16 dictionary indexes", true, 2, repeatedText, "repeated chunks included"})
	for _, tc := range cases {
		reader := "questions"
		if tc.corpus {
			reader = "corpus"
		}
		t.Run(reader+"/"+tc.name, func(t *testing.T) {
			q, c := craftBase(t, tc.version)
			if tc.name == "one 4 KiB text repeated by 2^16 dictionary indexes" {
				c = parseCraft(t, writeCraft(t, []craftDict{{"c1", strings.Repeat("x", 4<<10)}, {"c1", strings.Repeat("x", 4<<10)}}, 2))
			}
			f, name := q, "q.parquet"
			if tc.corpus {
				f, name = c, "corpus.parquet"
			}
			path := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(path, tc.edit(t, f), 0o644); err != nil {
				t.Fatal(err)
			}
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := readHostile(path, tc.corpus)
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d bytes, allocated %d KiB: %v", len(tc.edit(t, f)), alloc>>10, err)
			if err == nil {
				t.Errorf("no error")
			} else if msg := err.Error(); !strings.Contains(msg, name) || !strings.Contains(msg, tc.want) {
				t.Errorf("error does not name the file and %q: %v", tc.want, err)
			}
			if alloc > claimBound {
				t.Errorf("allocated %d MiB reading a %d-byte file (bound %d MiB)", alloc>>20, fileSize(t, path), claimBound>>20)
			}
		})
	}
}

// readHostile reads a whole file with the questions or the corpus reader and
// returns the first error.
func readHostile(path string, corpus bool) error {
	if corpus {
		_, err := LoadCorpus(context.Background(), path, CorpusOptions{MaxBytes: 1 << 20})
		return err
	}
	r, err := OpenQuestions(path, QuestionsOptions{BatchSize: 16})
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		if _, err := r.Next(context.Background()); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func fileSize(t *testing.T, path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// TestRepeatedLongQuestionIsARowError: a 2 MiB question shared by 300 rows
// through the dictionary is 2 MiB in the file but 600 MiB if every row copied
// it; each row is an error row naming the column, and the read stays within
// claimBound.
func TestRepeatedLongQuestionIsARowError(t *testing.T) {
	long := strings.Repeat("why? ", 2<<20/5)
	var rows []craftQ
	for i := 0; i < 300; i++ {
		id := fmt.Sprintf("q%d", i)
		rows = append(rows, craftQ{QueryID: &id, Question: long, ChunkIDs: []string{"c1"}})
	}
	path := filepath.Join(t.TempDir(), "q.parquet")
	if err := os.WriteFile(path, writeCraft(t, rows, 2, parquet.MaxRowsPerRowGroup(1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r, err := OpenQuestions(path, QuestionsOptions{BatchSize: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := readAll(t, r)
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > claimBound {
		t.Errorf("allocated %d MiB reading %d rows of one 2 MiB question (bound %d MiB)", alloc>>20, len(got), claimBound>>20)
	}
	if len(got) != 300 {
		t.Fatalf("%d rows, want 300", len(got))
	}
	for _, q := range got {
		if q.Err == nil || q.Err.Column != ColQuestion || !strings.Contains(q.Err.Msg, "over the limit") || q.Question != "" {
			t.Fatalf("row %d: err %v, question of %d bytes", q.Row, q.Err, len(q.Question))
		}
	}
}

// TestSkimThriftBoundsLists: a thrift list may claim neither more elements
// than there are bytes left nor, in all, more than maxThriftElements (parquet-go
// allocates each list whole before decoding it).
func TestSkimThriftBoundsLists(t *testing.T) {
	list := func(n, present int) []byte {
		b := []byte{0x19, 0xFC} // field 1: a list of structs, size in a varint
		b = binary.AppendUvarint(b, uint64(n))
		b = append(b, make([]byte, present)...) // empty structs: one STOP byte each
		return append(b, 0)                     // the outer STOP
	}
	cases := []struct {
		name string
		b    []byte
		want string // "" = valid
	}{
		{"10 empty structs", list(10, 10), ""},
		{"2^31-1 claimed, 10 present", list(math.MaxInt32, 10), "claims 2147483647"},
		{"over the element bound, all present", list(maxThriftElements+1, maxThriftElements+1), "elements"},
	}
	for _, tc := range cases {
		n, err := skimThrift(tc.b)
		switch {
		case tc.want == "" && (err != nil || n != len(tc.b)):
			t.Errorf("%s: %d of %d bytes, %v", tc.name, n, len(tc.b), err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

// TestDecompressIsBounded: a page that decompresses to more than its
// uncompressed_page_size is refused after at most that many bytes, whatever
// the codec (zstd, gzip and brotli streams can expand a thousandfold or more;
// parquet-go's own decoders have no output limit, and its LZ4 decoder doubles
// its buffer for ever on corrupt input).
func TestDecompressIsBounded(t *testing.T) {
	const claimed = 1 << 20
	zeros := make([]byte, 64<<20)
	var zbuf, gbuf, bbuf bytes.Buffer
	zw, _ := zstd.NewWriter(&zbuf)
	gw := gzip.NewWriter(&gbuf)
	bw := brotli.NewWriter(&bbuf)
	for _, w := range []io.WriteCloser{zw, gw, bw} {
		if _, err := w.Write(zeros); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	g := &parquetGuard{}
	defer g.Close()
	for _, tc := range []struct {
		codec format.CompressionCodec
		src   []byte
	}{
		{format.Zstd, zbuf.Bytes()},
		{format.Gzip, gbuf.Bytes()},
		{format.Brotli, bbuf.Bytes()},
		{format.Snappy, snappy.Encode(nil, zeros)},
		{format.Lz4Raw, []byte{0xff, 0xff, 0xff, 0xff, 0x00, 0x01}}, // corrupt
	} {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := g.decompress(tc.codec, tc.src, claimed)
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("%v: %d compressed bytes, allocated %d KiB: %v", tc.codec, len(tc.src), alloc>>10, err)
		if err == nil {
			t.Errorf("%v: 64 MiB accepted against a claim of 1 MiB", tc.codec)
		}
		if alloc > 16*claimed {
			t.Errorf("%v: allocated %d MiB refusing it", tc.codec, alloc>>20)
		}
	}
}

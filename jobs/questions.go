package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/parquet-go/parquet-go"
	"github.com/zeebo/xxh3"
)

// Input column names (docs/JOBS.md, Input).
const (
	ColQueryID      = "query_id"
	ColQuestion     = "question"
	ColChunkIDs     = "chunk_ids"
	ColAnswers      = "answers"
	ColMaxNewTokens = "max_new_tokens"
	ColChoices      = "choices" // label jobs: the row's own labels
)

// NullQueryIDPrefix starts the key given to a row whose query_id is null or
// empty: "#null-query_id@row" + the row number. The row cannot be keyed by the
// user's id, yet it must appear in the output (as status=error) exactly once
// and be skipped on resume, so it is keyed by its position in the file, which
// is stable across reruns.
const NullQueryIDPrefix = "#null-query_id@row"

// Question is one row of the questions file.
type Question struct {
	Row          int64    // 0-based row number in the file
	QueryID      string   // the row's key (NullQueryIDPrefix+row when null/empty)
	Question     string   // question text
	ChunkIDs     []string // retrieved chunks, in prompt order
	Answers      []string // reference answers (nil when absent)
	MaxNewTokens int      // 0 when the row has none: use the job default
	// Choices are the row's labels (QuestionsOptions.Choices); nil when the
	// column is absent or the row's value is null or empty.
	Choices []string
	// Passthrough holds the row's values for the passthrough columns, already
	// placed at their output column indexes; OutputRow carries it to the writer.
	Passthrough parquet.Row
	// Err is set when the row is bad. The runner writes a status=error row with
	// Err.Error() as message (ErrorResult), except when Err.Duplicate: then no
	// row is written (the first occurrence owns the query_id); the reader
	// counts it (ReaderStats.Duplicates) for Output.SetDuplicates.
	Err *RowError
}

// RowError is a problem with one input row; the job goes on.
type RowError struct {
	File      string
	Row       int64
	Column    string
	Msg       string
	Duplicate bool // a later occurrence of a query_id already seen in the file
}

func (e *RowError) Error() string {
	return fmt.Sprintf("%s row %d, column %s: %s", filepath.Base(e.File), e.Row, e.Column, e.Msg)
}

// MaxQuestionRowBytes bounds the text of one questions row (question, ids,
// answers, choices and passthrough values together); a longer row is an error
// row. With BatchSize rows per batch it bounds a batch's memory.
const MaxQuestionRowBytes = 1 << 20

// QuestionsOptions configure OpenQuestions.
type QuestionsOptions struct {
	// BatchSize bounds the rows decoded per read and per Next (default 256).
	BatchSize int
	// Partition keeps only the rows whose query_id the shard owns.
	Partition Partition
	// Choices reads and checks the choices column (label jobs); it is passed
	// through to the output either way.
	Choices bool
}

// ReaderStats show how the reader streamed (tests check memory stays bounded).
type ReaderStats struct {
	RowGroups     int   // row groups opened so far
	RowsRead      int64 // raw rows decoded (all shards)
	MaxBufferRows int   // most raw rows ever held at once
	Duplicates    int64 // later occurrences of a query_id (within this shard)
}

// QuestionsReader streams a questions file one batch at a time: it holds at
// most BatchSize decoded rows and one open row group. Memory that grows with
// the file: one 24-byte entry per query_id of the shard, for duplicate checks.
type QuestionsReader struct {
	path  string
	f     *os.File
	pf    *parquet.File
	guard *parquetGuard
	opts  QuestionsOptions

	qid, question, chunks, answers, mnt  int // leaf column indexes; -1 = absent
	choices                              int
	chunkDef, answerDef, choiceDef       int // def level at which a list element exists
	chunkMaxDef, answerMaxDef, choiceMax int
	qidMaxDef, questionMaxDef, mntMaxDef int
	outCol                               []int // input leaf -> output column, -1 = not passed through
	passFields                           []parquet.Field

	rg     int // next row group
	rows   parquet.Rows
	buf    []parquet.Row
	row    int64
	seen   map[xxh3.Uint128]int64
	stats  ReaderStats
	closed bool
}

// OpenQuestions opens a questions file and checks its schema. Schema errors
// (missing or mistyped columns, a passthrough column named like an output
// column) and unreadable files are ConfigErrors naming the file and column.
func OpenQuestions(path string, opts QuestionsOptions) (*QuestionsReader, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 256
	}
	opts.Partition = opts.Partition.norm()
	f, pf, guard, err := openParquet(path, "questions")
	if err != nil {
		return nil, err
	}
	r := &QuestionsReader{path: path, f: f, pf: pf, guard: guard, opts: opts,
		qid: -1, question: -1, chunks: -1, answers: -1, mnt: -1, choices: -1,
		seen: map[xxh3.Uint128]int64{}}
	if err := r.checkSchema(); err != nil {
		guard.Close()
		f.Close()
		return nil, configErr(err)
	}
	r.buf = make([]parquet.Row, opts.BatchSize)
	return r, nil
}

func (r *QuestionsReader) schemaErr(col, format string, args ...any) error {
	return fmt.Errorf("questions file %s, column %s: %s", r.path, col, fmt.Sprintf(format, args...))
}

func (r *QuestionsReader) checkSchema() (err error) {
	defer func() { // parquet-go panics on some schemas (a leaf annotated LIST)
		if p := recover(); p != nil {
			err = fmt.Errorf("questions file %s: unreadable schema: %v", r.path, p)
		}
	}()
	root := r.pf.Root()
	nLeaves := len(r.pf.Schema().Columns())
	r.outCol = make([]int, nLeaves)
	for i := range r.outCol {
		r.outCol[i] = -1
	}
	reserved := map[string]bool{}
	for _, n := range outputColumns {
		reserved[n] = true
	}
	next := len(outputColumns)
	var errs []error
	for _, c := range root.Columns() {
		name := c.Name()
		switch name {
		case ColQueryID, ColQuestion:
			if !isStringLeaf(c) || c.Repeated() {
				errs = append(errs, r.schemaErr(name, "want string, found %s", typeName(c)))
				continue
			}
			if name == ColQueryID {
				r.qid, r.qidMaxDef = c.Index(), c.MaxDefinitionLevel()
			} else {
				r.question, r.questionMaxDef = c.Index(), c.MaxDefinitionLevel()
			}
		case ColChunkIDs:
			leaf, def, ok := listLeaf(c)
			if !ok {
				errs = append(errs, r.schemaErr(name, "want list<string>, found %s", typeName(c)))
				continue
			}
			r.chunks, r.chunkDef, r.chunkMaxDef = leaf.Index(), def, leaf.MaxDefinitionLevel()
		case ColMaxNewTokens:
			if !isIntLeaf(c) || c.Repeated() {
				errs = append(errs, r.schemaErr(name, "want int32 or int64, found %s", typeName(c)))
				continue
			}
			r.mnt, r.mntMaxDef = c.Index(), c.MaxDefinitionLevel()
		default:
			if reserved[name] {
				errs = append(errs, r.schemaErr(name, "is also an output column; rename it in the input"))
				continue
			}
			if name == ColAnswers {
				leaf, def, ok := listLeaf(c)
				if !ok {
					errs = append(errs, r.schemaErr(name, "want list<string>, found %s", typeName(c)))
					continue
				}
				r.answers, r.answerDef, r.answerMaxDef = leaf.Index(), def, leaf.MaxDefinitionLevel()
			}
			if name == ColChoices && r.opts.Choices {
				leaf, def, ok := listLeaf(c)
				if !ok {
					errs = append(errs, r.schemaErr(name, "want list<string>, found %s", typeName(c)))
					continue
				}
				r.choices, r.choiceDef, r.choiceMax = leaf.Index(), def, leaf.MaxDefinitionLevel()
			}
			// Every other top-level column (answers included, so a scorer needs
			// only the output) goes to the output with its type unchanged.
			r.passFields = append(r.passFields, field(name, cloneNode(c)))
			var mark func(c *parquet.Column)
			mark = func(c *parquet.Column) {
				if c.Leaf() {
					r.outCol[c.Index()] = next
					next++
					return
				}
				for _, k := range c.Columns() {
					mark(k)
				}
			}
			mark(c)
		}
	}
	for _, req := range []struct {
		name string
		idx  int
	}{{ColQueryID, r.qid}, {ColQuestion, r.question}, {ColChunkIDs, r.chunks}} {
		if req.idx < 0 {
			errs = append(errs, r.schemaErr(req.name, "required column is missing"))
		}
	}
	return errors.Join(errs...)
}

// Path is the file being read.
func (r *QuestionsReader) Path() string { return r.path }

// NumRows is the file's row count (all shards).
func (r *QuestionsReader) NumRows() int64 { return r.pf.NumRows() }

// PassthroughFields are the output's passthrough columns, in input order,
// with their input types. Pass them to OutputOptions.
func (r *QuestionsReader) PassthroughFields() []parquet.Field { return r.passFields }

// Stats reports how the reader has streamed so far.
func (r *QuestionsReader) Stats() ReaderStats { return r.stats }

// Close releases the file.
func (r *QuestionsReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.guard.Close()
	if r.rows != nil {
		r.rows.Close()
	}
	return r.f.Close()
}

// Next returns the next batch of up to BatchSize questions of this shard, or
// io.EOF after the last. Bad rows come back with Err set; only an unreadable
// file (corrupt page, I/O) is an error, and it names the file and row group.
func (r *QuestionsReader) Next(ctx context.Context) (batch []Question, err error) {
	defer func() {
		if p := recover(); p != nil { // parquet-go panics on some corrupt pages
			err = configErr(fmt.Errorf("questions file %s, row group %d: corrupt data: %v", r.path, r.rg-1, p))
		}
	}()
	for len(batch) < r.opts.BatchSize {
		if err := ctx.Err(); err != nil {
			return batch, err
		}
		if r.rows == nil {
			groups := r.pf.RowGroups()
			if r.rg >= len(groups) {
				break
			}
			if err := r.guard.RowGroup(r.rg); err != nil {
				return batch, configErr(err)
			}
			r.rows = groups[r.rg].Rows()
			r.rg++
			r.stats.RowGroups++
		}
		want := r.opts.BatchSize - len(batch)
		n, rerr := r.rows.ReadRows(r.buf[:want])
		if n > r.stats.MaxBufferRows {
			r.stats.MaxBufferRows = n
		}
		for i := 0; i < n; i++ {
			q, keep := r.decode(r.buf[i])
			r.row++
			r.stats.RowsRead++
			if keep {
				batch = append(batch, q)
			}
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				return batch, configErr(fmt.Errorf("questions file %s, row group %d (near row %d): %w", r.path, r.rg-1, r.row, rerr))
			}
			r.rows.Close()
			r.rows = nil
		} else if n == 0 {
			r.rows.Close()
			r.rows = nil
		}
	}
	if len(batch) == 0 {
		return nil, io.EOF
	}
	return batch, nil
}

// leafName is the dotted path of leaf column col.
func (r *QuestionsReader) leafName(col int) string {
	if cols := r.pf.Schema().Columns(); col < len(cols) {
		return strings.Join(cols[col], ".")
	}
	return fmt.Sprint(col)
}

func (r *QuestionsReader) rowErr(col, format string, args ...any) *RowError {
	return &RowError{File: r.path, Row: r.row, Column: col, Msg: fmt.Sprintf(format, args...)}
}

// decode turns one raw row into a Question; keep is false when another shard
// owns it.
func (r *QuestionsReader) decode(row parquet.Row) (q Question, keep bool) {
	q.Row = r.row
	var qidVals, qVals, chunkVals, ansVals, mntVals, choiceVals []parquet.Value
	pass := 0
	var rowBytes, bigBytes int64
	bigCol := 0
	row.Range(func(col int, vals []parquet.Value) bool {
		var n int64
		for _, v := range vals {
			if k := v.Kind(); k == parquet.ByteArray || k == parquet.FixedLenByteArray {
				n += int64(len(v.ByteArray()))
			}
		}
		if rowBytes += n; n > bigBytes {
			bigBytes, bigCol = n, col
		}
		switch col {
		case r.qid:
			qidVals = vals
		case r.question:
			qVals = vals
		case r.chunks:
			chunkVals = vals
		case r.mnt:
			mntVals = vals
		}
		if col == r.answers {
			ansVals = vals
		}
		if col == r.choices {
			choiceVals = vals
		}
		if col < len(r.outCol) && r.outCol[col] >= 0 {
			pass += len(vals)
		}
		return true
	})

	var errs []*RowError
	nullID := len(qidVals) == 0 || qidVals[0].DefinitionLevel() < r.qidMaxDef || len(qidVals[0].ByteArray()) == 0
	if nullID {
		q.QueryID = fmt.Sprintf("%s%d", NullQueryIDPrefix, r.row)
		errs = append(errs, r.rowErr(ColQueryID, "query_id is null or empty"))
	} else {
		q.QueryID = string(qidVals[0].ByteArray())
	}
	if !r.opts.Partition.Owns(q.QueryID) {
		return q, false
	}
	if !nullID {
		h := xxh3.HashString128(q.QueryID)
		if first, dup := r.seen[h]; dup {
			r.stats.Duplicates++
			q.Err = r.rowErr(ColQueryID, "duplicate query_id %q (first at row %d); only the first is answered", q.QueryID, first)
			q.Err.Duplicate = true
			return q, true
		}
		r.seen[h] = r.row
	}
	if rowBytes > MaxQuestionRowBytes {
		// Checked before any value is copied: one long dictionary entry can
		// stand for the same bytes in every row of a page.
		q.Err = r.rowErr(r.leafName(bigCol), "the row holds %d bytes of text (%d in this column), over the limit of %d", rowBytes, bigBytes, MaxQuestionRowBytes)
		return q, true
	}

	if len(qVals) == 0 || qVals[0].DefinitionLevel() < r.questionMaxDef {
		errs = append(errs, r.rowErr(ColQuestion, "question is null"))
	} else if q.Question = string(qVals[0].ByteArray()); strings.TrimSpace(q.Question) == "" {
		errs = append(errs, r.rowErr(ColQuestion, "question is empty"))
	}

	var bad string
	q.ChunkIDs, bad = r.stringList(chunkVals, r.chunkDef, r.chunkMaxDef, false)
	switch {
	case bad != "":
		errs = append(errs, r.rowErr(ColChunkIDs, "%s", bad))
	case len(q.ChunkIDs) == 0:
		errs = append(errs, r.rowErr(ColChunkIDs, "chunk_ids is null or empty"))
	}
	if r.answers >= 0 {
		// References are for scoring only: null elements are left out, not fatal.
		q.Answers, _ = r.stringList(ansVals, r.answerDef, r.answerMaxDef, true)
	}
	if r.choices >= 0 {
		var bad string
		q.Choices, bad = r.stringList(choiceVals, r.choiceDef, r.choiceMax, false)
		if bad == "" {
			bad = CheckLabels(q.Choices)
		}
		if bad != "" {
			q.Choices = nil
			errs = append(errs, r.rowErr(ColChoices, "%s", bad))
		}
	}
	if len(mntVals) > 0 && mntVals[0].DefinitionLevel() >= r.mntMaxDef {
		v := mntVals[0]
		var n int64
		if v.Kind() == parquet.Int32 {
			n = int64(v.Int32())
		} else {
			n = v.Int64()
		}
		if n <= 0 || n > 1<<24 {
			errs = append(errs, r.rowErr(ColMaxNewTokens, "max_new_tokens %d is not in 1..%d", n, 1<<24))
		} else {
			q.MaxNewTokens = int(n)
		}
	}

	if pass > 0 {
		q.Passthrough = make(parquet.Row, 0, pass)
		row.Range(func(col int, vals []parquet.Value) bool {
			if col < len(r.outCol) && r.outCol[col] >= 0 {
				oc := r.outCol[col]
				for _, v := range vals {
					// Clone: the reader reuses its buffers for the next rows.
					q.Passthrough = append(q.Passthrough, v.Clone().Level(v.RepetitionLevel(), v.DefinitionLevel(), oc))
				}
			}
			return true
		})
	}
	if len(errs) > 0 {
		// The first problem is the cause; the rest are appended to the message.
		q.Err = errs[0]
		for _, e := range errs[1:] {
			q.Err.Msg += "; also column " + e.Column + ": " + e.Msg
		}
	}
	return q, true
}

// stringList decodes a list<string> column's values. Unless lenient, bad
// names a null or empty element (a chunk id of "" can't be looked up).
func (r *QuestionsReader) stringList(vals []parquet.Value, elemDef, maxDef int, lenient bool) (out []string, bad string) {
	for i, v := range vals {
		d := v.DefinitionLevel()
		switch {
		case d == maxDef:
			s := string(v.ByteArray())
			if s == "" && !lenient {
				return nil, fmt.Sprintf("element %d is an empty string", i)
			}
			out = append(out, s)
		case d >= elemDef:
			if lenient {
				continue
			}
			return nil, fmt.Sprintf("element %d is null", i)
		default:
			return nil, "" // null or empty list
		}
	}
	return out, ""
}

package jobs

import (
	"fmt"
	"os"
	"reflect"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/encoding"
	"github.com/parquet-go/parquet-go/format"
)

// openParquet opens a Parquet file for streaming reads. The page index and
// bloom filters are skipped: the job only scans. The footer and the metadata
// are checked before parquet-go trusts them, and the returned guard checks a
// row group's pages before they are read (parquetGuard.RowGroup).
// parquet-go can panic on some malformed footers, so the panic is turned
// into an error naming the file.
func openParquet(path, what string) (f *os.File, pf *parquet.File, guard *parquetGuard, err error) {
	f, err = os.Open(path)
	if err != nil {
		return nil, nil, nil, configErr(fmt.Errorf("%s file: %w", what, err))
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, nil, configErr(fmt.Errorf("%s file %s: %w", what, path, err))
	}
	dataEnd, err := checkFooter(f, st.Size())
	if err != nil {
		f.Close()
		return nil, nil, nil, configErr(fmt.Errorf("%s file %s: not a readable Parquet file: %w", what, path, err))
	}
	defer func() {
		if r := recover(); r != nil {
			f.Close()
			f, pf, guard = nil, nil, nil
			err = configErr(fmt.Errorf("%s file %s: not a readable Parquet file: %v", what, path, r))
		}
	}()
	pf, err = parquet.OpenFile(f, st.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		f.Close()
		return nil, nil, nil, configErr(fmt.Errorf("%s file %s: not a readable Parquet file: %w", what, path, err))
	}
	if guard, err = newParquetGuard(path, what, f, st.Size(), dataEnd, pf); err != nil {
		f.Close()
		return nil, nil, nil, configErr(err)
	}
	return f, pf, guard, nil
}

// leafKind is a leaf column's physical kind; ok is false for a group or for
// a leaf whose type parquet-go cannot give a kind (a leaf annotated LIST or
// MAP makes Kind panic, found by FuzzCorpus).
func leafKind(c *parquet.Column) (k parquet.Kind, ok bool) {
	if !c.Leaf() {
		return 0, false
	}
	defer func() {
		if recover() != nil {
			k, ok = 0, false
		}
	}()
	return c.Type().Kind(), true
}

// isStringLeaf reports whether a leaf holds text: BYTE_ARRAY annotated STRING,
// or plain BYTE_ARRAY (some writers omit the annotation; the bytes are taken
// as UTF-8).
func isStringLeaf(c *parquet.Column) bool {
	if k, ok := leafKind(c); !ok || k != parquet.ByteArray {
		return false
	}
	lt := c.Type().LogicalType()
	if lt == nil || lt.Value == nil {
		return true
	}
	_, ok := lt.Value.(*format.StringType)
	return ok
}

func isIntLeaf(c *parquet.Column) bool {
	k, ok := leafKind(c)
	return ok && (k == parquet.Int32 || k == parquet.Int64)
}

func typeName(c *parquet.Column) string {
	if !c.Leaf() {
		if lt := c.Type().LogicalType(); lt != nil && lt.Value != nil {
			return "group " + lt.Value.String()
		}
		return "group"
	}
	return c.Type().String()
}

// listLeaf returns the single string leaf of a list<string> column (3-level
// LIST or a legacy repeated field) and the definition level at which a list
// element exists (null or not).
func listLeaf(c *parquet.Column) (leaf *parquet.Column, elemDef int, ok bool) {
	def := 0
	n := c
	for {
		if n.Optional() || n.Repeated() {
			def++
		}
		if n.Repeated() && elemDef == 0 {
			elemDef = def
		}
		if n.Leaf() {
			break
		}
		kids := n.Columns()
		if len(kids) != 1 {
			return nil, 0, false
		}
		n = kids[0]
	}
	if n.MaxRepetitionLevel() != 1 || !isStringLeaf(n) || elemDef == 0 {
		return nil, 0, false
	}
	return n, elemDef, true
}

// orderedGroup is a Parquet group whose fields keep the order given, unlike
// parquet.Group (a map, sorted by name). The output schema needs the column
// order of docs/JOBS.md (Output layout).
type orderedGroup struct {
	fields []parquet.Field
}

type namedField struct {
	parquet.Node
	name string
}

func (f namedField) Name() string                           { return f.name }
func (f namedField) Value(base reflect.Value) reflect.Value { return reflect.Value{} }

func field(name string, n parquet.Node) parquet.Field { return namedField{Node: n, name: name} }

func (g *orderedGroup) ID() int                     { return 0 }
func (g *orderedGroup) String() string              { return "group" }
func (g *orderedGroup) Type() parquet.Type          { return parquet.Group{}.Type() }
func (g *orderedGroup) Optional() bool              { return false }
func (g *orderedGroup) Repeated() bool              { return false }
func (g *orderedGroup) Required() bool              { return true }
func (g *orderedGroup) Leaf() bool                  { return false }
func (g *orderedGroup) Fields() []parquet.Field     { return g.fields }
func (g *orderedGroup) Encoding() encoding.Encoding { return nil }
func (g *orderedGroup) Compression() compress.Codec { return nil }
func (g *orderedGroup) GoType() reflect.Type        { return reflect.TypeOf(map[string]any{}) }

// cloneNode rebuilds a file's schema node as a plain writer node: same names,
// order, repetition, physical and logical types, without the file's encodings.
func cloneNode(n parquet.Node) parquet.Node {
	var out parquet.Node
	if n.Leaf() {
		out = parquet.Leaf(n.Type())
	} else {
		fs := n.Fields()
		g := &orderedGroup{fields: make([]parquet.Field, len(fs))}
		for i, f := range fs {
			g.fields[i] = field(f.Name(), cloneNode(f))
		}
		// Keep the original group type: it carries LIST/MAP annotations (logical
		// and converted), so passthrough lists and maps read back as such.
		out = &typedGroup{orderedGroup: g, typ: n.Type()}
	}
	switch {
	case n.Optional():
		out = parquet.Optional(out)
	case n.Repeated():
		out = parquet.Repeated(out)
	default:
		out = parquet.Required(out)
	}
	return out
}

type typedGroup struct {
	*orderedGroup
	typ parquet.Type
}

func (g *typedGroup) Type() parquet.Type { return g.typ }

func leafCount(n parquet.Node) int {
	if n.Leaf() {
		return 1
	}
	c := 0
	for _, f := range n.Fields() {
		c += leafCount(f)
	}
	return c
}

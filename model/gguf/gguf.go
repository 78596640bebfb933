// Package gguf reads GGUF files (llama.cpp's single-file model format, versions
// 2 and 3): the header, the metadata key/value pairs, the tensor index and the
// aligned tensor data, memory-mapped. Quantized tensors are dequantized to f32
// on request (Dequantize); Load turns a Llama or Qwen2 file into the engine's
// model, tokenizer and chat template.
//
// Every count and length in the header is checked against the bytes that remain
// before anything is allocated, so a corrupt or hostile file fails with an error
// naming the byte offset and the field, never with a huge allocation.
package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"

	"golang.org/x/sys/unix"
)

const magic = 0x46554747 // "GGUF" little-endian

// DefaultAlignment is the tensor data alignment when general.alignment is absent.
const DefaultAlignment = 32

// ValueType is a metadata value's type code.
type ValueType uint32

// Metadata value types.
const (
	TypeUint8 ValueType = iota
	TypeInt8
	TypeUint16
	TypeInt16
	TypeUint32
	TypeInt32
	TypeFloat32
	TypeBool
	TypeString
	TypeArray
	TypeUint64
	TypeInt64
	TypeFloat64
)

var valueTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}

func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// size is the encoded size of a scalar, 0 for string/array/unknown.
func (t ValueType) size() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// Value is one metadata value. Scalars are held as uint8, int8, uint16, int16,
// uint32, int32, float32, bool, string, uint64, int64 or float64; arrays as
// Array.
type Value struct {
	Type ValueType
	V    any
}

// Array is an array value: Elem is the element type and Items holds one Go
// value per element as Value.V does (nested arrays are []Array items).
type Array struct {
	Elem  ValueType
	Items []any
}

// KV is one metadata pair.
type KV struct {
	Key    string
	Value  Value
	Offset int64 // where the pair starts in the file
}

// TensorInfo is one entry of the tensor index.
type TensorInfo struct {
	Name string
	// Dims are GGUF's ne: Dims[0] is the fastest-varying (a row's length).
	Dims []uint64
	Type GGMLType
	// Offset is relative to the start of the data section.
	Offset uint64
	// Data is the tensor's bytes inside the mapped file.
	Data []byte
}

// Elements is the product of Dims.
func (t *TensorInfo) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// File is a parsed GGUF file.
type File struct {
	Path      string
	Version   uint32
	Alignment uint64
	KVs       []KV
	Tensors   []TensorInfo
	// DataOffset is where the data section starts.
	DataOffset int64

	kv     map[string]int
	tensor map[string]int
	unmap  func() error
}

// Close unmaps the file.
func (f *File) Close() error {
	if f.unmap == nil {
		return nil
	}
	u := f.unmap
	f.unmap = nil
	return u()
}

// Open memory-maps and parses path.
func Open(path string) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	size := st.Size()
	if size == 0 {
		return nil, fmt.Errorf("gguf %s: empty file", path)
	}
	if size != int64(int(size)) {
		return nil, fmt.Errorf("gguf %s: %d bytes is too large to map", path, size)
	}
	data, err := unix.Mmap(int(fd.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("gguf %s: mmap: %w", path, err)
	}
	f, err := Parse(path, data)
	if err != nil {
		_ = unix.Munmap(data)
		return nil, err
	}
	f.unmap = func() error { return unix.Munmap(data) }
	return f, nil
}

// Parse parses a whole GGUF file held in data (which the File's tensors alias);
// path only names the file in errors.
func Parse(path string, data []byte) (*File, error) {
	r := &reader{b: data, path: path}
	f := &File{Path: path, kv: map[string]int{}, tensor: map[string]int{}}
	if m := r.u32("magic"); r.err == nil && m != magic {
		return nil, r.fail(0, "magic", fmt.Sprintf("%q is not \"GGUF\"", data[:4]))
	}
	f.Version = r.u32("version")
	if r.err == nil && f.Version != 2 && f.Version != 3 {
		return nil, r.fail(4, "version", fmt.Sprintf("%d is not supported (want 2 or 3)", f.Version))
	}
	nTensors := r.count("tensor_count", 24) // name length, dims count, type, offset
	nKV := r.count("metadata_kv_count", 13) // key length, value type, one byte
	if r.err != nil {
		return nil, r.err
	}
	f.KVs = make([]KV, 0, nKV)
	for i := 0; i < nKV; i++ {
		start := r.off
		key := r.str(fmt.Sprintf("metadata[%d].key", i))
		field := "metadata " + fmt.Sprintf("%q", key)
		typ := ValueType(r.u32(field + " type"))
		v := r.value(field, typ, 0)
		if r.err != nil {
			return nil, r.err
		}
		if _, dup := f.kv[key]; dup {
			return nil, r.fail(start, field, "duplicate key")
		}
		f.kv[key] = len(f.KVs)
		f.KVs = append(f.KVs, KV{Key: key, Value: Value{Type: typ, V: v}, Offset: int64(start)})
	}
	f.Alignment = DefaultAlignment
	if i, ok := f.kv["general.alignment"]; ok {
		kv := f.KVs[i]
		a, ok := kv.Value.V.(uint32)
		if !ok || a == 0 || a&(a-1) != 0 {
			return nil, r.fail(int(kv.Offset), "metadata \"general.alignment\"", fmt.Sprintf("want a power-of-two uint32, got %s %v", kv.Value.Type, kv.Value.V))
		}
		f.Alignment = uint64(a)
	}
	f.Tensors = make([]TensorInfo, 0, nTensors)
	for i := 0; i < nTensors; i++ {
		start := r.off
		name := r.str(fmt.Sprintf("tensor[%d].name", i))
		field := fmt.Sprintf("tensor %q", name)
		nd := r.u32(field + " n_dims")
		if r.err == nil && (nd == 0 || nd > 4) {
			return nil, r.fail(start, field+" n_dims", fmt.Sprintf("%d (want 1 to 4)", nd))
		}
		dims := make([]uint64, 0, 4)
		for d := 0; d < int(nd) && r.err == nil; d++ {
			dims = append(dims, r.u64(fmt.Sprintf("%s dims[%d]", field, d)))
		}
		typ := GGMLType(r.u32(field + " type"))
		off := r.u64(field + " offset")
		if r.err != nil {
			return nil, r.err
		}
		if _, dup := f.tensor[name]; dup {
			return nil, r.fail(start, field, "duplicate tensor name")
		}
		f.tensor[name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, TensorInfo{Name: name, Dims: dims, Type: typ, Offset: off})
	}
	data0 := (uint64(r.off) + f.Alignment - 1) / f.Alignment * f.Alignment
	if data0 > uint64(len(data)) {
		if nTensors > 0 {
			return nil, r.fail(r.off, "data section", fmt.Sprintf("starts at %d, past the end of the file (%d bytes)", data0, len(data)))
		}
		data0 = uint64(len(data))
	}
	f.DataOffset = int64(data0)
	avail := uint64(len(data)) - data0
	for i := range f.Tensors {
		t := &f.Tensors[i]
		field := fmt.Sprintf("tensor %q", t.Name)
		size, err := t.Type.RowBytesFor(t.Dims)
		if err != nil {
			return nil, fmt.Errorf("gguf %s: %s: %w", path, field, err)
		}
		if t.Offset%f.Alignment != 0 {
			return nil, fmt.Errorf("gguf %s: %s offset: %d is not a multiple of the alignment %d", path, field, t.Offset, f.Alignment)
		}
		if t.Offset > avail || size > avail-t.Offset {
			return nil, fmt.Errorf("gguf %s: %s: %d bytes at data offset %d (file offset %d) run past the end of the file (%d bytes)", path, field, size, t.Offset, data0+t.Offset, len(data))
		}
		t.Data = data[data0+t.Offset : data0+t.Offset+size : data0+t.Offset+size]
	}
	return f, nil
}

// Get returns the value of key.
func (f *File) Get(key string) (Value, bool) {
	i, ok := f.kv[key]
	if !ok {
		return Value{}, false
	}
	return f.KVs[i].Value, true
}

// Tensor returns the tensor called name.
func (f *File) Tensor(name string) (*TensorInfo, bool) {
	i, ok := f.tensor[name]
	if !ok {
		return nil, false
	}
	return &f.Tensors[i], true
}

// reader decodes little-endian fields; the first error sticks.
type reader struct {
	b    []byte
	off  int
	path string
	err  error
}

func (r *reader) fail(off int, field, msg string) error {
	if r.err == nil {
		r.err = fmt.Errorf("gguf %s: offset %d: field %s: %s", r.path, off, field, msg)
	}
	return r.err
}

func (r *reader) take(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.off {
		r.fail(r.off, field, fmt.Sprintf("needs %d bytes, %d left (truncated file)", n, len(r.b)-r.off))
		return nil
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

func (r *reader) u32(field string) uint32 {
	if b := r.take(4, field); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64(field string) uint64 {
	if b := r.take(8, field); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// count reads a uint64 count whose items take at least minSize bytes each, so
// a count the remaining bytes cannot hold is an error, not an allocation.
func (r *reader) count(field string, minSize int) int {
	at := r.off
	n := r.u64(field)
	if r.err != nil {
		return 0
	}
	left := uint64(len(r.b) - r.off)
	if n > left/uint64(minSize) {
		r.fail(at, field, fmt.Sprintf("%d items cannot fit in the %d bytes left", n, left))
		return 0
	}
	return int(n)
}

func (r *reader) str(field string) string {
	at := r.off
	n := r.u64(field + " length")
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)-r.off) {
		r.fail(at, field, fmt.Sprintf("string of %d bytes, %d left (truncated or corrupt)", n, len(r.b)-r.off))
		return ""
	}
	return string(r.take(int(n), field))
}

// maxDepth bounds nested arrays (the format allows them; no writer nests deep).
const maxDepth = 4

func (r *reader) value(field string, t ValueType, depth int) any {
	at := r.off
	switch t {
	case TypeUint8:
		if b := r.take(1, field); b != nil {
			return b[0]
		}
	case TypeInt8:
		if b := r.take(1, field); b != nil {
			return int8(b[0])
		}
	case TypeBool:
		if b := r.take(1, field); b != nil {
			if b[0] > 1 {
				r.fail(at, field, fmt.Sprintf("bool byte %d (want 0 or 1)", b[0]))
				return nil
			}
			return b[0] == 1
		}
	case TypeUint16:
		if b := r.take(2, field); b != nil {
			return binary.LittleEndian.Uint16(b)
		}
	case TypeInt16:
		if b := r.take(2, field); b != nil {
			return int16(binary.LittleEndian.Uint16(b))
		}
	case TypeUint32:
		return r.u32(field)
	case TypeInt32:
		return int32(r.u32(field))
	case TypeFloat32:
		return math.Float32frombits(r.u32(field))
	case TypeUint64:
		return r.u64(field)
	case TypeInt64:
		return int64(r.u64(field))
	case TypeFloat64:
		return math.Float64frombits(r.u64(field))
	case TypeString:
		return r.str(field)
	case TypeArray:
		if depth >= maxDepth {
			r.fail(at, field, fmt.Sprintf("arrays nested deeper than %d", maxDepth))
			return nil
		}
		et := ValueType(r.u32(field + " element type"))
		if r.err != nil {
			return nil
		}
		min := et.size()
		switch et {
		case TypeString, TypeArray:
			min = 8 // a length or an element type
		case TypeUint8, TypeInt8, TypeBool, TypeUint16, TypeInt16, TypeUint32, TypeInt32, TypeFloat32, TypeUint64, TypeInt64, TypeFloat64:
		default:
			r.fail(at, field+" element type", fmt.Sprintf("unknown value type %d", uint32(et)))
			return nil
		}
		n := r.count(field+" length", min)
		if r.err != nil {
			return nil
		}
		a := Array{Elem: et, Items: make([]any, n)}
		for i := range a.Items {
			a.Items[i] = r.value(field, et, depth+1)
			if r.err != nil {
				return nil
			}
		}
		return a
	default:
		r.fail(at-4, field, fmt.Sprintf("unknown value type %d", uint32(t)))
	}
	return nil
}

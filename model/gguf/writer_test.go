package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
)

// builder writes GGUF bytes for tests: metadata pairs in order, then the
// tensor index, padding and data.
type builder struct {
	version   uint32
	align     int
	kvs       [][]byte
	tensors   []testTensor
	rawHeader func(*bytes.Buffer) // overrides the counts for malformed files
}

type testTensor struct {
	name string
	dims []uint64
	typ  GGMLType
	data []byte
}

func le(v any) []byte {
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, v)
	return b.Bytes()
}

func gstr(s string) []byte { return append(le(uint64(len(s))), s...) }

func (b *builder) kv(key string, typ ValueType, payload []byte) *builder {
	e := append(gstr(key), le(uint32(typ))...)
	b.kvs = append(b.kvs, append(e, payload...))
	return b
}

func (b *builder) str(key, v string) *builder        { return b.kv(key, TypeString, gstr(v)) }
func (b *builder) u32(key string, v uint32) *builder { return b.kv(key, TypeUint32, le(v)) }
func (b *builder) f32(key string, v float32) *builder {
	return b.kv(key, TypeFloat32, le(math.Float32bits(v)))
}
func (b *builder) boolean(key string, v bool) *builder {
	x := byte(0)
	if v {
		x = 1
	}
	return b.kv(key, TypeBool, []byte{x})
}

func (b *builder) strs(key string, v []string) *builder {
	p := append(le(uint32(TypeString)), le(uint64(len(v)))...)
	for _, s := range v {
		p = append(p, gstr(s)...)
	}
	return b.kv(key, TypeArray, p)
}

func (b *builder) i32s(key string, v []int32) *builder {
	p := append(le(uint32(TypeInt32)), le(uint64(len(v)))...)
	for _, x := range v {
		p = append(p, le(x)...)
	}
	return b.kv(key, TypeArray, p)
}

func (b *builder) f32s(key string, v []float32) *builder {
	p := append(le(uint32(TypeFloat32)), le(uint64(len(v)))...)
	for _, x := range v {
		p = append(p, le(math.Float32bits(x))...)
	}
	return b.kv(key, TypeArray, p)
}

func (b *builder) tensor(name string, typ GGMLType, data []byte, dims ...uint64) *builder {
	b.tensors = append(b.tensors, testTensor{name, dims, typ, data})
	return b
}

func (b *builder) f32Tensor(name string, v []float32, dims ...uint64) *builder {
	d := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(d[4*i:], math.Float32bits(x))
	}
	return b.tensor(name, GGMLF32, d, dims...)
}

func (b *builder) bytes() []byte {
	var w bytes.Buffer
	v := b.version
	if v == 0 {
		v = 3
	}
	align := b.align
	if align == 0 {
		align = DefaultAlignment
	}
	w.Write(le(uint32(magic)))
	w.Write(le(v))
	if b.rawHeader != nil {
		b.rawHeader(&w)
	} else {
		w.Write(le(uint64(len(b.tensors))))
		w.Write(le(uint64(len(b.kvs))))
	}
	for _, kv := range b.kvs {
		w.Write(kv)
	}
	off := 0
	offs := make([]int, len(b.tensors))
	for i, t := range b.tensors {
		offs[i] = off
		off += (len(t.data) + align - 1) / align * align
	}
	for i, t := range b.tensors {
		w.Write(gstr(t.name))
		w.Write(le(uint32(len(t.dims))))
		for _, d := range t.dims {
			w.Write(le(d))
		}
		w.Write(le(uint32(t.typ)))
		w.Write(le(uint64(offs[i])))
	}
	for w.Len()%align != 0 {
		w.WriteByte(0)
	}
	for _, t := range b.tensors {
		w.Write(t.data)
		for w.Len()%align != 0 {
			w.WriteByte(0)
		}
	}
	return w.Bytes()
}

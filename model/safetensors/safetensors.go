// Package safetensors reads and writes the safetensors format: an 8-byte little-endian
// header length, a JSON header mapping tensor names to dtype, shape and byte offsets,
// then the raw little-endian tensor bytes. Files are memory-mapped so that weights stay
// in their stored dtype without being copied onto the heap.
package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Tensor is one named tensor: its dtype string as stored (F32, F16, BF16, …), shape and
// raw bytes (a view into the mapped file).
type Tensor struct {
	Name  string
	DType string
	Shape []int
	Data  []byte
	File  string
}

// Elements is the product of the shape.
func (t *Tensor) Elements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// F32 reinterprets the bytes as float32 without copying (little-endian host assumed,
// which every supported platform is). The data must be 4-byte aligned; safetensors
// offsets are not guaranteed aligned, so unaligned data is copied.
func (t *Tensor) F32() []float32 {
	n := len(t.Data) / 4
	if n == 0 {
		return nil
	}
	if uintptr(unsafe.Pointer(&t.Data[0]))%4 == 0 {
		return unsafe.Slice((*float32)(unsafe.Pointer(&t.Data[0])), n)
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out
}

// U16 reinterprets the bytes as uint16 (f16/bf16 bit patterns), copying if unaligned.
func (t *Tensor) U16() []uint16 {
	n := len(t.Data) / 2
	if n == 0 {
		return nil
	}
	if uintptr(unsafe.Pointer(&t.Data[0]))%2 == 0 {
		return unsafe.Slice((*uint16)(unsafe.Pointer(&t.Data[0])), n)
	}
	out := make([]uint16, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(t.Data[2*i:])
	}
	return out
}

func float32frombits(b uint32) float32 { return *(*float32)(unsafe.Pointer(&b)) }

var dtypeSize = map[string]int{"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}

// File is one mapped safetensors file.
type File struct {
	Path     string
	Tensors  map[string]*Tensor
	Metadata map[string]string
	mapped   []byte
}

const maxHeader = 100 << 20

// Open maps a safetensors file and parses its header, checking every tensor's
// offsets against the file size so that a truncated file is reported, not read past.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	size := st.Size()
	if size < 8 {
		return nil, fmt.Errorf("safetensors: %s: file is %d bytes, too short for a header", path, size)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: mmap: %w", path, err)
	}
	file, err := parse(path, data)
	if err != nil {
		_ = unix.Munmap(data)
		return nil, err
	}
	file.mapped = data
	return file, nil
}

// Parse reads a safetensors image already in memory.
func Parse(path string, data []byte) (*File, error) { return parse(path, data) }

func parse(path string, data []byte) (*File, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("safetensors: %s: too short for a header", path)
	}
	hlen := binary.LittleEndian.Uint64(data)
	if hlen > maxHeader || hlen > uint64(len(data)-8) {
		return nil, fmt.Errorf("safetensors: %s: header length %d exceeds file size %d (truncated or not safetensors)", path, hlen, len(data))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data[8:8+hlen], &raw); err != nil {
		return nil, fmt.Errorf("safetensors: %s: header JSON: %w", path, err)
	}
	body := data[8+hlen:]
	file := &File{Path: path, Tensors: make(map[string]*Tensor, len(raw))}
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &file.Metadata); err != nil {
				return nil, fmt.Errorf("safetensors: %s: __metadata__: %w", path, err)
			}
			continue
		}
		var h struct {
			DType   string   `json:"dtype"`
			Shape   []int    `json:"shape"`
			Offsets []uint64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(msg, &h); err != nil {
			return nil, fmt.Errorf("safetensors: %s: tensor %q: %w", path, name, err)
		}
		es, ok := dtypeSize[h.DType]
		if !ok {
			return nil, fmt.Errorf("safetensors: %s: tensor %q: unknown dtype %q", path, name, h.DType)
		}
		if len(h.Offsets) != 2 || h.Offsets[0] > h.Offsets[1] {
			return nil, fmt.Errorf("safetensors: %s: tensor %q: bad data_offsets %v", path, name, h.Offsets)
		}
		if h.Offsets[1] > uint64(len(body)) {
			return nil, fmt.Errorf("safetensors: %s: tensor %q: data ends at byte %d but the file holds %d (truncated file)", path, name, h.Offsets[1], len(body))
		}
		// The byte count the shape needs, computed without overflow: a shape
		// whose product wraps around must not pass for a small tensor.
		n := uint64(es)
		for _, d := range h.Shape {
			if d < 0 {
				return nil, fmt.Errorf("safetensors: %s: tensor %q: negative dimension in shape %v", path, name, h.Shape)
			}
			if d != 0 && n > uint64(len(body))/uint64(d) {
				n = uint64(len(body)) + 1 // more than the file holds: fails below
				break
			}
			n *= uint64(d)
		}
		if hasZero(h.Shape) {
			n = 0
		}
		if n != h.Offsets[1]-h.Offsets[0] {
			return nil, fmt.Errorf("safetensors: %s: tensor %q: shape %v of %s needs %s, offsets give %d bytes", path, name, h.Shape, h.DType, shapeBytes(n, len(body)), h.Offsets[1]-h.Offsets[0])
		}
		file.Tensors[name] = &Tensor{Name: name, DType: h.DType, Shape: h.Shape, Data: body[h.Offsets[0]:h.Offsets[1]:h.Offsets[1]], File: path}
	}
	return file, nil
}

func hasZero(shape []int) bool {
	for _, d := range shape {
		if d == 0 {
			return true
		}
	}
	return false
}

func shapeBytes(n uint64, body int) string {
	if n > uint64(body) {
		return fmt.Sprintf("more than the file's %d bytes", body)
	}
	return fmt.Sprintf("%d bytes", n)
}

// Close unmaps the file; tensors must not be used afterwards.
func (f *File) Close() error {
	if f.mapped == nil {
		return nil
	}
	err := unix.Munmap(f.mapped)
	f.mapped = nil
	return err
}

// Set is the tensors of one model, possibly spread over shards.
type Set struct {
	Files   []*File
	Tensors map[string]*Tensor
}

// Close unmaps every file.
func (s *Set) Close() error {
	var errs []error
	for _, f := range s.Files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// OpenDir opens model.safetensors in dir, or the shards named by
// model.safetensors.index.json, or every model-*.safetensors when no index exists.
func OpenDir(dir string) (*Set, error) {
	var paths []string
	index := filepath.Join(dir, "model.safetensors.index.json")
	single := filepath.Join(dir, "model.safetensors")
	switch {
	case fileExists(index):
		b, err := os.ReadFile(index)
		if err != nil {
			return nil, fmt.Errorf("safetensors: %w", err)
		}
		var idx struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(b, &idx); err != nil {
			return nil, fmt.Errorf("safetensors: %s: %w", index, err)
		}
		if len(idx.WeightMap) == 0 {
			return nil, fmt.Errorf("safetensors: %s: weight_map is empty", index)
		}
		seen := map[string]bool{}
		for _, f := range idx.WeightMap {
			if !seen[f] {
				seen[f] = true
				paths = append(paths, filepath.Join(dir, f))
			}
		}
		sort.Strings(paths)
	case fileExists(single):
		paths = []string{single}
	default:
		m, _ := filepath.Glob(filepath.Join(dir, "model-*.safetensors"))
		if len(m) == 0 {
			return nil, fmt.Errorf("safetensors: %s: no model.safetensors, model.safetensors.index.json or model-*.safetensors", dir)
		}
		sort.Strings(m)
		paths = m
	}
	set := &Set{Tensors: map[string]*Tensor{}}
	for _, p := range paths {
		f, err := Open(p)
		if err != nil {
			_ = set.Close()
			return nil, err
		}
		set.Files = append(set.Files, f)
		for name, t := range f.Tensors {
			if prev, dup := set.Tensors[name]; dup {
				_ = set.Close()
				return nil, fmt.Errorf("safetensors: tensor %q appears in both %s and %s", name, prev.File, p)
			}
			set.Tensors[name] = t
		}
	}
	return set, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

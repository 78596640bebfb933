package safetensors

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"

	"cacheclip/kernels"
)

// WriteTensor is a tensor to write: raw little-endian bytes of the given dtype.
type WriteTensor struct {
	Name  string
	DType string
	Shape []int
	Data  []byte
}

// Encode returns vals as the little-endian bytes of dtype dt (F32, F16 or
// BF16), the Data of a WriteTensor.
func Encode(vals []float32, dt kernels.DType) []byte {
	if dt == kernels.F32 {
		out := make([]byte, 4*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
		}
		return out
	}
	u := make([]uint16, len(vals))
	kernels.FromF32(u, vals, dt)
	out := make([]byte, 2*len(u))
	for i, v := range u {
		binary.LittleEndian.PutUint16(out[2*i:], v)
	}
	return out
}

// Write stores tensors as one safetensors file atomically (temp file, fsync, rename).
func Write(path string, tensors []WriteTensor, metadata map[string]string) error {
	sorted := append([]WriteTensor(nil), tensors...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	header := map[string]any{}
	if len(metadata) > 0 {
		header["__metadata__"] = metadata
	}
	var off uint64
	for _, t := range sorted {
		header[t.Name] = map[string]any{"dtype": t.DType, "shape": t.Shape, "data_offsets": []uint64{off, off + uint64(len(t.Data))}}
		off += uint64(len(t.Data))
	}
	hb, err := json.Marshal(header)
	if err != nil {
		return fmt.Errorf("safetensors: %s: header: %w", path, err)
	}
	for len(hb)%8 != 0 { // keep tensor data 8-byte aligned
		hb = append(hb, ' ')
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*.safetensors")
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriterSize(tmp, 1<<20)
	var lb [8]byte
	binary.LittleEndian.PutUint64(lb[:], uint64(len(hb)))
	w.Write(lb[:])
	w.Write(hb)
	for _, t := range sorted {
		w.Write(t.Data)
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("safetensors: fsync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}

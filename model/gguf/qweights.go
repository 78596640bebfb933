package gguf

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strings"

	"cacheclip/kernels"
)

// Options says how a GGUF file's weight matrices are held in memory.
type Options struct {
	// Native keeps matrices stored as Q4_0, Q4_1 or Q8_0 in their blocks
	// (kernels.Q4_1 and kernels.Q8_0, the planar layout of the kernels
	// package), read directly by the quantized matrix–vector kernels: 0.56 to
	// 1.06 bytes per weight instead of 4. Every other type, and a Q4_0 block
	// whose −8·d does not fit an f16, is widened to f32 as without it.
	Native bool
	// Q8Act (with Native) marks the kept matrices kernels.Mat.Q8Act: a
	// decode step's rows (model.Forward) round their activations to 8-bit
	// blocks and dot them with the weight blocks in integers, as llama.cpp
	// does.
	Q8Act bool
}

// Report counts the matrices a load kept in their blocks (Native) and those
// it widened to f32 (Widened), by GGUF type.
type Report struct {
	Native, Widened map[string]int
	// Q8Act: the native matrices decode with 8-bit activations.
	Q8Act bool
}

// String is the one line a command logs about the load, e.g. "weights native:
// Q4_1 ×210, Q8_0 ×1; widened to f32: none".
func (r Report) String() string {
	list := func(m map[string]int) string {
		if len(m) == 0 {
			return "none"
		}
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
		}
		return strings.Join(parts, ", ")
	}
	q8 := ""
	if r.Q8Act && len(r.Native) > 0 {
		q8 = " (decode with 8-bit activations)"
	}
	return "weights native" + q8 + ": " + list(r.Native) + "; widened to f32: " + list(r.Widened)
}

// planar converts a rows×cols tensor of GGUF blocks to the kernels' planar
// quantized rows; ok is false for types the kernels do not read (the caller
// widens those to f32).
func planar(t GGMLType, rows, cols int, data []byte) (kernels.Mat, bool, error) {
	var dt kernels.DType
	switch t {
	case GGMLQ4_0, GGMLQ4_1:
		dt = kernels.Q4_1
	case GGMLQ8_0:
		dt = kernels.Q8_0
	default:
		return kernels.Mat{}, false, nil
	}
	l := layouts[t]
	nb := cols / l.block
	if cols%l.block != 0 || len(data) != rows*nb*l.blockBytes {
		return kernels.Mat{}, false, fmt.Errorf("%d×%d values of %s take %d bytes, got %d", rows, cols, t, rows*nb*l.blockBytes, len(data))
	}
	rb := kernels.QuantRowBytes(dt, cols)
	out := make([]byte, rows*rb)
	for r := 0; r < rows; r++ {
		src := data[r*nb*l.blockBytes : (r+1)*nb*l.blockBytes]
		dst := out[r*rb : (r+1)*rb]
		for b := 0; b < nb; b++ {
			blk := src[b*l.blockBytes : (b+1)*l.blockBytes]
			switch t {
			case GGMLQ4_1:
				copy(dst[b*16:], blk[4:20])
				copy(dst[nb*16+2*b:], blk[0:2])
				copy(dst[nb*18+2*b:], blk[2:4])
			case GGMLQ4_0:
				// (q−8)·d = q·d + m with m = −8d: exact in f16 unless it overflows.
				d := kernels.F16ToF32(binary.LittleEndian.Uint16(blk))
				m := kernels.F32ToF16(-8 * d)
				if kernels.F16ToF32(m) != -8*d {
					return kernels.Mat{}, false, nil
				}
				copy(dst[b*16:], blk[2:18])
				copy(dst[nb*16+2*b:], blk[0:2])
				binary.LittleEndian.PutUint16(dst[nb*18+2*b:], m)
			case GGMLQ8_0:
				copy(dst[b*32:], blk[2:34])
				copy(dst[nb*32+2*b:], blk[0:2])
			}
		}
	}
	return kernels.Mat{DType: dt, Rows: rows, Cols: cols, Q: out}, true, nil
}

package kernels

import "fmt"

// Mat is a row-major weight matrix of Rows×Cols elements kept in its stored dtype:
// F32 uses the F32 slice, F16 and BF16 the U16 slice, the block-quantized types
// (quant.go) the Q bytes. Rows are output features, so
// a linear layer y = W·x reads one row per output. The slices may alias a
// memory-mapped file and must be treated as read-only.
type Mat struct {
	DType      DType
	Rows, Cols int
	F32        []float32
	U16        []uint16
	Q          []byte
	// Q8Act (quantized DTypes only) has every product over the matrix
	// round each activation row to 8-bit blocks on its own and dot it with
	// the weight blocks in integers (quant_q8.go): about llama.cpp's
	// numerics and speed, where false keeps f32 activations (results equal
	// f32 weights' up to summation order). A row's result does not depend
	// on the other rows of the product; the caller picks the products
	// (model.Forward: a decode step's rows only).
	Q8Act bool
	// Panels (f32, f16, bf16 only) says the slice holds the matrix in the
	// column-panel layout the product kernels read (Pack, panels.go):
	// ⌈Rows/32⌉ panels of Cols × 32 values, the last one padded with zero
	// rows. Loaders pack once; MatMul and RowF32 read either layout.
	Panels bool
}

// Validate checks that the backing slice matches the shape.
func (m Mat) Validate() error {
	if m.DType.Quantized() {
		return m.validateQuant()
	}
	if m.Panels {
		return m.validatePanels()
	}
	n := m.Rows * m.Cols
	switch m.DType {
	case F32:
		if len(m.F32) != n {
			return fmt.Errorf("f32 matrix %dx%d has %d elements", m.Rows, m.Cols, len(m.F32))
		}
	case F16, BF16:
		if len(m.U16) != n {
			return fmt.Errorf("%s matrix %dx%d has %d elements", m.DType, m.Rows, m.Cols, len(m.U16))
		}
	default:
		return fmt.Errorf("matrix has unknown dtype %v", m.DType)
	}
	return nil
}

// RowF32 writes row i widened to f32 into dst (len Cols).
func (m Mat) RowF32(i int, dst []float32) { defaultKernels.RowF32(m, i, dst) }

// RowF32 writes row i of m widened to f32 into dst (len Cols) with this kernel set.
func (k *Kernels) RowF32(m Mat, i int, dst []float32) {
	if m.Panels {
		k.panelRowF32(m, i, dst)
		return
	}
	off := i * m.Cols
	switch m.DType {
	case F32:
		copy(dst, m.F32[off:off+m.Cols])
	case Q4_1, Q8_0:
		k.dequantRow(m, i, dst)
	default:
		k.ToF32(dst[:m.Cols], m.U16[off:off+m.Cols], m.DType)
	}
}

// Bytes is the storage size of the matrix.
func (m Mat) Bytes() int64 {
	if m.DType.Quantized() {
		return int64(m.Rows) * int64(QuantRowBytes(m.DType, m.Cols))
	}
	return int64(m.Rows) * int64(m.Cols) * int64(m.DType.Size())
}

package gguf

import (
	"encoding/binary"
	"fmt"
	"math"

	"cacheclip/kernels"
)

// GGMLType is a tensor's storage type code (ggml's enum ggml_type).
type GGMLType uint32

// The tensor types this package knows the layout of. Dequantize supports all
// of them except Q8_1 and Q8_K, which only exist inside llama.cpp as the
// activations' formats and never appear in files.
const (
	GGMLF32  GGMLType = 0
	GGMLF16  GGMLType = 1
	GGMLQ4_0 GGMLType = 2
	GGMLQ4_1 GGMLType = 3
	GGMLQ5_0 GGMLType = 6
	GGMLQ5_1 GGMLType = 7
	GGMLQ8_0 GGMLType = 8
	GGMLQ8_1 GGMLType = 9
	GGMLQ2_K GGMLType = 10
	GGMLQ3_K GGMLType = 11
	GGMLQ4_K GGMLType = 12
	GGMLQ5_K GGMLType = 13
	GGMLQ6_K GGMLType = 14
	GGMLQ8_K GGMLType = 15
	GGMLBF16 GGMLType = 30
)

// qk is the number of values in a K-quant super-block.
const qk = 256

type layout struct {
	name       string
	block      int // values per block
	blockBytes int
	dequant    func(dst []float32, b []byte) // one block
}

var layouts = map[GGMLType]layout{
	GGMLF32:  {"F32", 1, 4, nil},
	GGMLF16:  {"F16", 1, 2, nil},
	GGMLBF16: {"BF16", 1, 2, nil},
	GGMLQ4_0: {"Q4_0", 32, 18, dqQ4_0},
	GGMLQ4_1: {"Q4_1", 32, 20, dqQ4_1},
	GGMLQ5_0: {"Q5_0", 32, 22, dqQ5_0},
	GGMLQ5_1: {"Q5_1", 32, 24, dqQ5_1},
	GGMLQ8_0: {"Q8_0", 32, 34, dqQ8_0},
	GGMLQ8_1: {"Q8_1", 32, 36, nil},
	GGMLQ2_K: {"Q2_K", qk, 84, dqQ2_K},
	GGMLQ3_K: {"Q3_K", qk, 110, dqQ3_K},
	GGMLQ4_K: {"Q4_K", qk, 144, dqQ4_K},
	GGMLQ5_K: {"Q5_K", qk, 176, dqQ5_K},
	GGMLQ6_K: {"Q6_K", qk, 210, dqQ6_K},
	GGMLQ8_K: {"Q8_K", qk, 292, nil},
}

func (t GGMLType) String() string {
	if l, ok := layouts[t]; ok {
		return l.name
	}
	return fmt.Sprintf("ggml_type(%d)", uint32(t))
}

// RowBytesFor is the byte size of a tensor of this type with dims ne; rows
// (Dims[0]) must be whole blocks.
func (t GGMLType) RowBytesFor(dims []uint64) (uint64, error) {
	l, ok := layouts[t]
	if !ok {
		return 0, fmt.Errorf("type %s is not supported", t)
	}
	if len(dims) == 0 {
		return 0, fmt.Errorf("no dims")
	}
	if dims[0]%uint64(l.block) != 0 {
		return 0, fmt.Errorf("row length %d is not a multiple of %s's block of %d", dims[0], l.name, l.block)
	}
	// Bounded products: no tensor in a mappable file exceeds 2^48 bytes.
	const limit = 1 << 48
	n := dims[0] / uint64(l.block) * uint64(l.blockBytes)
	if dims[0] > limit {
		return 0, fmt.Errorf("dims %v: too large", dims)
	}
	for _, d := range dims[1:] {
		if d != 0 && n > limit/d {
			return 0, fmt.Errorf("dims %v: too large", dims)
		}
		n *= d
	}
	return n, nil
}

// Dequantize widens src, n values of type t, into dst[:n] as f32.
func Dequantize(dst []float32, src []byte, t GGMLType) error {
	l, ok := layouts[t]
	if !ok {
		return fmt.Errorf("type %s is not supported", t)
	}
	n := len(dst)
	if n%l.block != 0 {
		return fmt.Errorf("%d values are not whole %s blocks of %d", n, l.name, l.block)
	}
	if want := n / l.block * l.blockBytes; len(src) != want {
		return fmt.Errorf("%d values of %s take %d bytes, got %d", n, l.name, want, len(src))
	}
	switch t {
	case GGMLF32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case GGMLF16:
		for i := range dst {
			dst[i] = kernels.F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case GGMLBF16:
		for i := range dst {
			dst[i] = kernels.BF16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	default:
		if l.dequant == nil {
			return fmt.Errorf("type %s cannot be dequantized", t)
		}
		for b := 0; b < n/l.block; b++ {
			l.dequant(dst[b*l.block:(b+1)*l.block], src[b*l.blockBytes:(b+1)*l.blockBytes])
		}
	}
	return nil
}

func f16(b []byte) float32 { return kernels.F16ToF32(binary.LittleEndian.Uint16(b)) }

// The block decoders follow ggml's dequantize_row_* (ggml-quants.c): the same
// layouts and the same f32 operations, so results match its own to rounding.

func dqQ4_0(y []float32, b []byte) {
	d := f16(b)
	qs := b[2:18]
	for j := 0; j < 16; j++ {
		y[j] = float32(int(qs[j]&0xF)-8) * d
		y[j+16] = float32(int(qs[j]>>4)-8) * d
	}
}

func dqQ4_1(y []float32, b []byte) {
	d, m := f16(b), f16(b[2:])
	qs := b[4:20]
	for j := 0; j < 16; j++ {
		y[j] = float32(qs[j]&0xF)*d + m
		y[j+16] = float32(qs[j]>>4)*d + m
	}
}

func dqQ5_0(y []float32, b []byte) {
	d := f16(b)
	qh := binary.LittleEndian.Uint32(b[2:])
	qs := b[6:22]
	for j := 0; j < 16; j++ {
		h0 := byte((qh>>j)<<4) & 0x10
		h1 := byte(qh>>(j+12)) & 0x10
		y[j] = float32(int(qs[j]&0xF|h0)-16) * d
		y[j+16] = float32(int(qs[j]>>4|h1)-16) * d
	}
}

func dqQ5_1(y []float32, b []byte) {
	d, m := f16(b), f16(b[2:])
	qh := binary.LittleEndian.Uint32(b[4:])
	qs := b[8:24]
	for j := 0; j < 16; j++ {
		h0 := byte((qh>>j)<<4) & 0x10
		h1 := byte(qh>>(j+12)) & 0x10
		y[j] = float32(qs[j]&0xF|h0)*d + m
		y[j+16] = float32(qs[j]>>4|h1)*d + m
	}
}

func dqQ8_0(y []float32, b []byte) {
	d := f16(b)
	for j := 0; j < 32; j++ {
		y[j] = float32(int8(b[2+j])) * d
	}
}

// scaleMinK4 unpacks the j-th 6-bit scale and min of Q4_K/Q5_K.
func scaleMinK4(j int, q []byte) (byte, byte) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0xF | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

func dqQ4_K(y []float32, b []byte) {
	d, dmin := f16(b), f16(b[2:])
	scales := b[4:16]
	q := b[16:144]
	is := 0
	for j := 0; j < qk; j += 64 {
		sc, m := scaleMinK4(is, scales)
		d1, m1 := d*float32(sc), dmin*float32(m)
		sc, m = scaleMinK4(is+1, scales)
		d2, m2 := d*float32(sc), dmin*float32(m)
		for l := 0; l < 32; l++ {
			y[j+l] = d1*float32(q[l]&0xF) - m1
			y[j+32+l] = d2*float32(q[l]>>4) - m2
		}
		q = q[32:]
		is += 2
	}
}

func dqQ5_K(y []float32, b []byte) {
	d, dmin := f16(b), f16(b[2:])
	scales := b[4:16]
	qh := b[16:48]
	ql := b[48:176]
	is := 0
	u1, u2 := byte(1), byte(2)
	for j := 0; j < qk; j += 64 {
		sc, m := scaleMinK4(is, scales)
		d1, m1 := d*float32(sc), dmin*float32(m)
		sc, m = scaleMinK4(is+1, scales)
		d2, m2 := d*float32(sc), dmin*float32(m)
		for l := 0; l < 32; l++ {
			h := byte(0)
			if qh[l]&u1 != 0 {
				h = 16
			}
			y[j+l] = d1*float32(ql[l]&0xF+h) - m1
		}
		for l := 0; l < 32; l++ {
			h := byte(0)
			if qh[l]&u2 != 0 {
				h = 16
			}
			y[j+32+l] = d2*float32(ql[l]>>4+h) - m2
		}
		ql = ql[32:]
		is += 2
		u1 <<= 2
		u2 <<= 2
	}
}

func dqQ6_K(y []float32, b []byte) {
	ql := b[0:128]
	qh := b[128:192]
	sc := b[192:208]
	d := f16(b[208:])
	for n := 0; n < qk; n += 128 {
		for l := 0; l < 32; l++ {
			is := l / 16
			q1 := int(ql[l]&0xF|(qh[l]>>0&3)<<4) - 32
			q2 := int(ql[l+32]&0xF|(qh[l]>>2&3)<<4) - 32
			q3 := int(ql[l]>>4|(qh[l]>>4&3)<<4) - 32
			q4 := int(ql[l+32]>>4|(qh[l]>>6&3)<<4) - 32
			y[n+l] = d * float32(int8(sc[is])) * float32(q1)
			y[n+l+32] = d * float32(int8(sc[is+2])) * float32(q2)
			y[n+l+64] = d * float32(int8(sc[is+4])) * float32(q3)
			y[n+l+96] = d * float32(int8(sc[is+6])) * float32(q4)
		}
		ql = ql[64:]
		qh = qh[32:]
		sc = sc[8:]
	}
}

func dqQ2_K(y []float32, b []byte) {
	scales := b[0:16]
	q := b[16:80]
	d, dmin := f16(b[80:]), f16(b[82:])
	is := 0
	at := 0
	for n := 0; n < qk; n += 128 {
		shift := 0
		for j := 0; j < 4; j++ {
			sc := scales[is]
			is++
			dl, ml := d*float32(sc&0xF), dmin*float32(sc>>4)
			for l := 0; l < 16; l++ {
				y[at] = dl*float32(int8((q[l]>>shift)&3)) - ml
				at++
			}
			sc = scales[is]
			is++
			dl, ml = d*float32(sc&0xF), dmin*float32(sc>>4)
			for l := 0; l < 16; l++ {
				y[at] = dl*float32(int8((q[l+16]>>shift)&3)) - ml
				at++
			}
			shift += 2
		}
		q = q[32:]
	}
}

func dqQ3_K(y []float32, b []byte) {
	hm := b[0:32]
	q := b[32:96]
	raw := b[96:108]
	d := f16(b[108:])
	// Unpack the 16 6-bit scales as ggml does with its kmask shuffles.
	var aux [4]uint32
	for i := range 3 {
		aux[i] = binary.LittleEndian.Uint32(raw[4*i:])
	}
	const kmask1, kmask2 = 0x03030303, 0x0f0f0f0f
	tmp := aux[2]
	aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4)
	aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4)
	aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4)
	aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4)
	var scales [16]int8
	for i := range 16 {
		scales[i] = int8(byte(aux[i/4] >> (8 * (i % 4))))
	}
	is := 0
	m := byte(1)
	at := 0
	for n := 0; n < qk; n += 128 {
		shift := 0
		for j := 0; j < 4; j++ {
			dl := d * float32(int(scales[is])-32)
			is++
			for l := 0; l < 16; l++ {
				v := int((q[l] >> shift) & 3)
				if hm[l]&m == 0 {
					v -= 4
				}
				y[at] = dl * float32(v)
				at++
			}
			dl = d * float32(int(scales[is])-32)
			is++
			for l := 0; l < 16; l++ {
				v := int((q[l+16] >> shift) & 3)
				if hm[l+16]&m == 0 {
					v -= 4
				}
				y[at] = dl * float32(v)
				at++
			}
			shift += 2
			m <<= 1
		}
		q = q[32:]
	}
}

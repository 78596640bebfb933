package kvshards

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"

	"cacheclip/kernels"

	"github.com/zeebo/xxh3"
)

// FormatVersion is the on-disk format this package writes and the only one it reads.
const FormatVersion = 1

// Magic opens every shard file.
const Magic = "CCLIPKVS"

// Alignment of every block's start (and of the header region's end). 64 bytes
// is a cache line and a multiple of every element size, so an mmap'd f32 block
// (the mapping itself is page aligned) can be used as []float32 in place.
const Alignment = 64

// Fixed header field offsets; see docs/SHARD_FORMAT.md.
const (
	offMagic       = 0
	offVersion     = 8
	offHeaderSize  = 12
	offFingerprint = 16
	offPrefixHash  = 48
	offKey         = 80
	offLayers      = 112
	offKVHeads     = 116
	offHeadDim     = 120
	offDType       = 124
	offAlignLog2   = 125
	offReserved    = 126
	offTokens      = 128
	offBasePos     = 132
	offFileSize    = 136
	offHeaderSum   = 144
	fixedSize      = 152
	alignLog2      = 6
)

// Header is a shard's decoded header.
type Header struct {
	Version                  uint32
	Fingerprint              [32]byte
	PrefixHash               [32]byte
	Key                      Key
	Layers, KVHeads, HeadDim int
	DType                    kernels.DType
	Tokens                   int
	BasePos                  int32
	HeaderSize               int64 // fixed part + checksum table, padded to Alignment
	FileSize                 int64
	HeaderSum                uint64
	BlockSums                []uint64 // tokens, then K0, V0, K1, V1, …
}

// layout holds block offsets computed from the dimensions, never read from disk,
// so a damaged header cannot point the reader outside the file.
type layout struct {
	headerSize int64
	tokOff     int64
	tokLen     int64
	kvOff      int64 // first K block
	kvLen      int64 // unpadded bytes of one K or V block
	kvStride   int64 // padded
	fileSize   int64
	blocks     int
}

func alignUp(n int64) int64 { return (n + Alignment - 1) &^ (Alignment - 1) }

func computeLayout(layers, kvHeads, headDim, tokens int, dt kernels.DType) layout {
	var l layout
	l.blocks = 1 + 2*layers
	l.headerSize = alignUp(fixedSize + 8*int64(l.blocks))
	l.tokOff = l.headerSize
	l.tokLen = 4 * int64(tokens)
	l.kvOff = l.tokOff + alignUp(l.tokLen)
	l.kvLen = int64(tokens) * int64(kvHeads) * int64(headDim) * int64(dt.Size())
	l.kvStride = alignUp(l.kvLen)
	l.fileSize = l.kvOff + 2*int64(layers)*l.kvStride
	return l
}

// block returns the padded extent [off, end) of block i (0 = tokens).
func (l *layout) block(i int) (off, end int64) {
	if i == 0 {
		return l.tokOff, l.kvOff
	}
	off = l.kvOff + int64(i-1)*l.kvStride
	return off, off + l.kvStride
}

// BlockName names block i for error messages.
func BlockName(i int) string {
	if i == 0 {
		return "tokens"
	}
	kind := "K"
	if (i-1)%2 == 1 {
		kind = "V"
	}
	return fmt.Sprintf("layer %d %s", (i-1)/2, kind)
}

// Parse errors. The store wraps them with the shard's key and path.
var (
	errTruncated = errors.New("file is truncated")
	errVersion   = errors.New("format version differs")
)

// formatError is damage found by the parser: the file is not a valid shard.
type formatError struct {
	block string // "" for the header
	msg   string
	kind  error // errTruncated or nil
}

func (e *formatError) Error() string {
	if e.block == "" {
		return "header: " + e.msg
	}
	return e.block + " block: " + e.msg
}

func (e *formatError) Unwrap() error { return e.kind }

type versionError struct{ got uint32 }

func (e *versionError) Error() string {
	return fmt.Sprintf("format version %d, this build reads version %d", e.got, FormatVersion)
}
func (e *versionError) Unwrap() error { return errVersion }

func badHeader(format string, args ...any) error {
	return &formatError{msg: fmt.Sprintf(format, args...)}
}

// parseHeader decodes and checks the header region of data: magic, version,
// ranges, header checksum and file size. It never reads past len(data).
func parseHeader(data []byte) (*Header, layout, error) {
	le := binary.LittleEndian
	if len(data) < fixedSize {
		return nil, layout{}, &formatError{msg: fmt.Sprintf("%d bytes, shorter than the %d-byte fixed header", len(data), fixedSize), kind: errTruncated}
	}
	if string(data[offMagic:offMagic+8]) != Magic {
		return nil, layout{}, badHeader("bad magic %q, want %q (not a shard file)", data[offMagic:offMagic+8], Magic)
	}
	h := &Header{Version: le.Uint32(data[offVersion:])}
	if h.Version != FormatVersion {
		return nil, layout{}, &versionError{got: h.Version}
	}
	layers := le.Uint32(data[offLayers:])
	kvh := le.Uint32(data[offKVHeads:])
	hd := le.Uint32(data[offHeadDim:])
	tok := le.Uint32(data[offTokens:])
	switch {
	case layers == 0 || layers > MaxLayers:
		return nil, layout{}, badHeader("layers %d out of range 1..%d", layers, MaxLayers)
	case kvh == 0 || kvh > MaxKVHeads:
		return nil, layout{}, badHeader("kv heads %d out of range 1..%d", kvh, MaxKVHeads)
	case hd == 0 || hd > MaxHeadDim:
		return nil, layout{}, badHeader("head dim %d out of range 1..%d", hd, MaxHeadDim)
	case tok > MaxTokens:
		return nil, layout{}, badHeader("token count %d above %d", tok, MaxTokens)
	case data[offDType] > uint8(kernels.BF16):
		return nil, layout{}, badHeader("unknown storage dtype %d", data[offDType])
	case data[offAlignLog2] != alignLog2:
		return nil, layout{}, badHeader("block alignment 2^%d, want 2^%d", data[offAlignLog2], alignLog2)
	case le.Uint16(data[offReserved:]) != 0:
		return nil, layout{}, badHeader("reserved field is %#x, want 0", le.Uint16(data[offReserved:]))
	}
	h.Layers, h.KVHeads, h.HeadDim, h.Tokens = int(layers), int(kvh), int(hd), int(tok)
	h.DType = kernels.DType(data[offDType])
	h.BasePos = int32(le.Uint32(data[offBasePos:]))
	if h.BasePos < 0 {
		return nil, layout{}, badHeader("negative base position %d", h.BasePos)
	}
	lay := computeLayout(h.Layers, h.KVHeads, h.HeadDim, h.Tokens, h.DType)
	h.HeaderSize = int64(le.Uint32(data[offHeaderSize:]))
	if h.HeaderSize != lay.headerSize {
		return nil, layout{}, badHeader("header size %d, want %d for %d layers", h.HeaderSize, lay.headerSize, h.Layers)
	}
	fs := le.Uint64(data[offFileSize:])
	if fs > math.MaxInt64 || int64(fs) != lay.fileSize {
		return nil, layout{}, badHeader("file size field %d, want %d for these dimensions", fs, lay.fileSize)
	}
	h.FileSize = lay.fileSize
	if int64(len(data)) < lay.headerSize {
		return nil, layout{}, &formatError{msg: fmt.Sprintf("%d bytes, shorter than the %d-byte header", len(data), lay.headerSize), kind: errTruncated}
	}
	h.HeaderSum = le.Uint64(data[offHeaderSum:])
	if got := headerChecksum(data[:lay.headerSize]); got != h.HeaderSum {
		return nil, layout{}, badHeader("checksum %016x, stored %016x", got, h.HeaderSum)
	}
	copy(h.Fingerprint[:], data[offFingerprint:])
	copy(h.PrefixHash[:], data[offPrefixHash:])
	copy(h.Key[:], data[offKey:])
	h.BlockSums = make([]uint64, lay.blocks)
	for i := range h.BlockSums {
		h.BlockSums[i] = le.Uint64(data[fixedSize+8*i:])
	}
	switch {
	case int64(len(data)) < lay.fileSize:
		return nil, layout{}, &formatError{msg: fmt.Sprintf("%d bytes, header says %d", len(data), lay.fileSize), kind: errTruncated}
	case int64(len(data)) > lay.fileSize:
		return nil, layout{}, badHeader("%d trailing bytes after the last block", int64(len(data))-lay.fileSize)
	}
	return h, lay, nil
}

// headerChecksum hashes the header region with the checksum field read as zero.
func headerChecksum(region []byte) uint64 {
	h := xxh3.New()
	h.Write(region[:offHeaderSum])
	var zero [8]byte
	h.Write(zero[:])
	h.Write(region[fixedSize:])
	return h.Sum64()
}

// verifyBlocks checks every block's checksum (padding included) and that the
// key in the header is the hash of the header's fingerprint and prefix hash
// and the token block, so a shard copied under another name is caught too.
func verifyBlocks(data []byte, h *Header, lay layout) error {
	for i := range lay.blocks {
		off, end := lay.block(i)
		if got := xxh3.Hash(data[off:end]); got != h.BlockSums[i] {
			return &formatError{block: BlockName(i), msg: fmt.Sprintf("checksum %016x, stored %016x", got, h.BlockSums[i])}
		}
	}
	if k := keyFromHashes(h.Fingerprint, h.PrefixHash, tokensOf(data, lay)); k != h.Key {
		return &formatError{block: "tokens", msg: fmt.Sprintf("key recomputed from header and tokens is %s, header says %s", k, h.Key)}
	}
	return nil
}

func tokensOf(data []byte, lay layout) []int32 {
	t := make([]int32, lay.tokLen/4)
	for i := range t {
		t[i] = int32(binary.LittleEndian.Uint32(data[lay.tokOff+4*int64(i):]))
	}
	return t
}

// ParseBytes decodes a whole shard held in memory, checking the header and, if
// verify is set, every block. It is the parser the store uses on mmap'd files,
// exposed for tools and fuzzing.
func ParseBytes(data []byte, verify bool) (*Header, error) {
	h, lay, err := parseHeader(data)
	if err != nil {
		return nil, err
	}
	if verify {
		if err := verifyBlocks(data, h, lay); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Encode serialises kv in storage dtype dt, computed by the model with
// fingerprint fp after the prefix with hash prefixHash.
func Encode(kv *ChunkKV, fp, prefixHash [32]byte, dt kernels.DType) ([]byte, Key, error) {
	if err := kv.Validate(); err != nil {
		return nil, Key{}, err
	}
	if dt > kernels.BF16 {
		return nil, Key{}, fmt.Errorf("encode shard: unknown storage dtype %v", dt)
	}
	le := binary.LittleEndian
	lay := computeLayout(kv.Layers, kv.KVHeads, kv.HeadDim, len(kv.Tokens), dt)
	buf := make([]byte, lay.fileSize)
	key := keyFromHashes(fp, prefixHash, kv.Tokens)
	copy(buf[offMagic:], Magic)
	le.PutUint32(buf[offVersion:], FormatVersion)
	le.PutUint32(buf[offHeaderSize:], uint32(lay.headerSize))
	copy(buf[offFingerprint:], fp[:])
	copy(buf[offPrefixHash:], prefixHash[:])
	copy(buf[offKey:], key[:])
	le.PutUint32(buf[offLayers:], uint32(kv.Layers))
	le.PutUint32(buf[offKVHeads:], uint32(kv.KVHeads))
	le.PutUint32(buf[offHeadDim:], uint32(kv.HeadDim))
	buf[offDType] = uint8(dt)
	buf[offAlignLog2] = alignLog2
	le.PutUint32(buf[offTokens:], uint32(len(kv.Tokens)))
	le.PutUint32(buf[offBasePos:], uint32(kv.BasePos))
	le.PutUint64(buf[offFileSize:], uint64(lay.fileSize))
	for i, t := range kv.Tokens {
		le.PutUint32(buf[lay.tokOff+4*int64(i):], uint32(t))
	}
	for l := range kv.Layers {
		for j, src := range [2][]float32{kv.K[l], kv.V[l]} {
			off, _ := lay.block(1 + 2*l + j)
			putFloats(buf[off:off+lay.kvLen], src, dt)
		}
	}
	for i := range lay.blocks {
		off, end := lay.block(i)
		le.PutUint64(buf[fixedSize+8*i:], xxh3.Hash(buf[off:end]))
	}
	le.PutUint64(buf[offHeaderSum:], headerChecksum(buf[:lay.headerSize]))
	return buf, key, nil
}

func putFloats(dst []byte, src []float32, dt kernels.DType) {
	if len(src) == 0 {
		return
	}
	if dt == kernels.F32 {
		copy(asF32(dst), src)
		return
	}
	kernels.FromF32(asU16(dst), src, dt)
}

// asF32 and asU16 view little-endian storage in place; the store refuses to
// run on big-endian hosts (see littleEndian) and blocks are 64-byte aligned.
func asF32(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

func asU16(b []byte) []uint16 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2)
}

func littleEndian() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}

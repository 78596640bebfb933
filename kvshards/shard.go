package kvshards

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"

	"cacheclip/kernels"
)

// mapping is one opened shard file's bytes (mmap'd, or a heap copy), shared by
// the cache and every Shard handle; it is unmapped when the last reference goes.
type mapping struct {
	key   Key
	path  string
	hdr   *Header
	lay   layout
	data  []byte
	unmap func([]byte) error
	refs  atomic.Int64
}

func (m *mapping) acquire() { m.refs.Add(1) }

func (m *mapping) release() error {
	switch n := m.refs.Add(-1); {
	case n == 0 && m.unmap != nil:
		d := m.data
		m.data = nil
		return m.unmap(d)
	case n < 0:
		return fmt.Errorf("shard %s: released more often than acquired", m.key)
	}
	return nil
}

// Shard is a caller's handle on a loaded, verified shard. The bytes stay valid
// until Close; a Shard may be used from several goroutines at once.
type Shard struct {
	m      *mapping
	closed atomic.Bool
}

// ErrClosed is returned by a Shard's methods after Close.
var ErrClosed = errors.New("shard is closed")

func newHandle(m *mapping) *Shard {
	m.acquire()
	return &Shard{m: m}
}

// Key is the shard's content address.
func (s *Shard) Key() Key { return s.m.key }

// Path is the file the shard was read from ("" for an in-memory shard).
func (s *Shard) Path() string { return s.m.path }

// Header returns a copy of the decoded header.
func (s *Shard) Header() Header {
	h := *s.m.hdr
	h.BlockSums = append([]uint64(nil), h.BlockSums...)
	return h
}

// Bytes is the shard's size on disk (and in the cache).
func (s *Shard) Bytes() int64 { return s.m.lay.fileSize }

// Tokens returns a copy of the chunk's token ids. A fault reading the
// mapping (the file truncated under us) is an error, as in CopyInto.
func (s *Shard) Tokens() (toks []int32, err error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("shard %s: %w", s.m.key, ErrClosed)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			toks, err = nil, s.m.faultError("tokens", r)
		}
	}()
	return tokensOf(s.m.data, s.m.lay), nil
}

// faultError is the error for a fault (recovered r) reading what of the
// mapped file.
func (m *mapping) faultError(what string, r any) error {
	return fmt.Errorf("shard %s (%s) %s: fault reading the mapped file (truncated by another process?): %v", m.key, m.path, what, r)
}

// Close releases the handle; the mapping goes when the cache drops it too.
func (s *Shard) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.m.release()
}

// LayerF32 returns layer's K and V as views of the file's bytes, without a
// copy, when the shard is stored in f32; ok is false for f16/bf16 storage. The
// views must not be written to and are invalid after Close.
func (s *Shard) LayerF32(layer int) (k, v []float32, ok bool) {
	m := s.m
	if s.closed.Load() || m.hdr.DType != kernels.F32 || layer < 0 || layer >= m.hdr.Layers {
		return nil, nil, false
	}
	ko, _ := m.lay.block(1 + 2*layer)
	vo, _ := m.lay.block(2 + 2*layer)
	return asF32(m.data[ko : ko+m.lay.kvLen]), asF32(m.data[vo : vo+m.lay.kvLen]), true
}

// CopyInto writes layer's K and V, widened to f32, into kDst and vDst, each
// exactly Tokens·KVHeads·HeadDim floats laid out [token][kvHead*HeadDim+d].
// A fault reading the mapping (the file truncated under us by someone else)
// comes back as an error rather than crashing the process.
func (s *Shard) CopyInto(layer int, kDst, vDst []float32) (err error) {
	m := s.m
	if s.closed.Load() {
		return fmt.Errorf("shard %s: %w", m.key, ErrClosed)
	}
	h := m.hdr
	if layer < 0 || layer >= h.Layers {
		return fmt.Errorf("shard %s: layer %d out of range 0..%d", m.key, layer, h.Layers-1)
	}
	n := h.Tokens * h.KVHeads * h.HeadDim
	if len(kDst) != n || len(vDst) != n {
		return fmt.Errorf("shard %s layer %d: destinations hold %d K and %d V floats, want %d (%d tokens × %d kv heads × %d head dim)",
			m.key, layer, len(kDst), len(vDst), n, h.Tokens, h.KVHeads, h.HeadDim)
	}
	if n == 0 {
		return nil
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = m.faultError(fmt.Sprintf("layer %d", layer), r)
		}
	}()
	ko, _ := m.lay.block(1 + 2*layer)
	vo, _ := m.lay.block(2 + 2*layer)
	kb, vb := m.data[ko:ko+m.lay.kvLen], m.data[vo:vo+m.lay.kvLen]
	if h.DType == kernels.F32 {
		copy(kDst, asF32(kb))
		copy(vDst, asF32(vb))
		return nil
	}
	kernels.ToF32(kDst, asU16(kb), h.DType)
	kernels.ToF32(vDst, asU16(vb), h.DType)
	return nil
}

// ChunkKV decodes the whole shard into freshly allocated f32 slices.
func (s *Shard) ChunkKV() (*ChunkKV, error) {
	toks, err := s.Tokens()
	if err != nil {
		return nil, err
	}
	h := s.m.hdr
	kv := &ChunkKV{Tokens: toks, BasePos: h.BasePos, Layers: h.Layers, KVHeads: h.KVHeads, HeadDim: h.HeadDim,
		K: make([][]float32, h.Layers), V: make([][]float32, h.Layers)}
	n := h.Tokens * h.KVHeads * h.HeadDim
	for l := range h.Layers {
		kv.K[l], kv.V[l] = make([]float32, n), make([]float32, n)
		if err := s.CopyInto(l, kv.K[l], kv.V[l]); err != nil {
			return nil, err
		}
	}
	return kv, nil
}

// FromBytes parses and fully verifies an in-memory shard and wraps it as a
// Shard; for tools and tests.
func FromBytes(data []byte) (*Shard, error) {
	h, lay, err := parseHeader(data)
	if err != nil {
		return nil, err
	}
	if err := verifyBlocks(data, h, lay); err != nil {
		return nil, err
	}
	return newHandle(&mapping{key: h.Key, hdr: h, lay: lay, data: data}), nil
}

package prefill

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"cacheclip/kvshards"
	"cacheclip/model"
)

// Computer computes chunk caches with a model: P's rows then the chunk's rows at
// positions |P|, |P|+1, …, keeping only the chunk's part (docs/PROMPT_LAYOUT.md). It is
// the kvshards.Computer of a model.
type Computer struct {
	Model model.Backend
}

var _ kvshards.Computer = (*Computer)(nil)

// Fingerprint is the model's.
func (c *Computer) Fingerprint() [32]byte { return c.Model.Fingerprint() }

// ComputeChunk returns the chunk's KV with BasePos = len(prefix).
func (c *Computer) ComputeChunk(ctx context.Context, prefix, chunk []int32) (*kvshards.ChunkKV, error) {
	n := len(prefix) + len(chunk)
	if lim := c.Model.ModelConfig().MaxPos; n > lim {
		return nil, fmt.Errorf("compute chunk: %d prefix + %d chunk tokens exceed the model's context of %d", len(prefix), len(chunk), lim)
	}
	cache, err := c.Model.NewCache(n)
	if err != nil {
		return nil, fmt.Errorf("compute chunk: %w", err)
	}
	defer cache.Free()
	toks := append(append(make([]int32, 0, n), prefix...), chunk...)
	if _, err := model.Append(ctx, c.Model, cache, toks, 0, 0, false); err != nil {
		return nil, fmt.Errorf("compute chunk: %w", err)
	}
	return sliceKV(c.Model.ModelConfig(), cache, len(prefix), chunk)
}

// sliceKV copies slots [from, from+len(tokens)) of every layer out of a cache.
func sliceKV(cfg *model.Config, cache model.KVCache, from int, tokens []int32) (*kvshards.ChunkKV, error) {
	kv := &kvshards.ChunkKV{Tokens: append([]int32(nil), tokens...), BasePos: int32(from), Layers: cfg.Layers, KVHeads: cfg.KVHeads, HeadDim: cfg.HeadDim,
		K: make([][]float32, cfg.Layers), V: make([][]float32, cfg.Layers)}
	for l := 0; l < cfg.Layers; l++ {
		var err error
		if kv.K[l], kv.V[l], err = cache.ReadKV(l, from, from+len(tokens)); err != nil {
			return nil, fmt.Errorf("compute chunk: %w", err)
		}
	}
	return kv, nil
}

// MemorySource is a ChunkSource that computes each chunk once with a Computer and
// keeps it in memory: the stand-in for a shard store in tests, benchmarks and
// one-off answers.
type MemorySource struct {
	C  *Computer
	mu sync.Mutex
	m  map[[32]byte]*kvshards.ChunkKV
}

// NewMemorySource returns an empty source over c.
func NewMemorySource(c *Computer) *MemorySource {
	return &MemorySource{C: c, m: map[[32]byte]*kvshards.ChunkKV{}}
}

// Fingerprint is the computer's model's.
func (s *MemorySource) Fingerprint() [32]byte { return s.C.Fingerprint() }

// Chunk returns the cached KV or computes it.
func (s *MemorySource) Chunk(ctx context.Context, prefix, chunk []int32) (*kvshards.ChunkKV, error) {
	key := tokenKey(prefix, chunk)
	s.mu.Lock()
	kv, ok := s.m[key]
	s.mu.Unlock()
	if ok {
		return kv, nil
	}
	kv, err := s.C.ComputeChunk(ctx, prefix, chunk)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.m[key] = kv
	s.mu.Unlock()
	return kv, nil
}

func tokenKey(prefix, chunk []int32) [32]byte {
	h := sha256.New()
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(len(prefix)))
	h.Write(b[:])
	for _, t := range prefix {
		binary.LittleEndian.PutUint32(b[:], uint32(t))
		h.Write(b[:])
	}
	for _, t := range chunk {
		binary.LittleEndian.PutUint32(b[:], uint32(t))
		h.Write(b[:])
	}
	var k [32]byte
	copy(k[:], h.Sum(nil))
	return k
}

// Assembled is a cache holding P and the chunks at their global offsets, ready
// for Q (and any recomputed rows) to be written after them. Slot i holds
// position i.
type Assembled struct {
	Cache model.KVCache
	// ChunkStart[i] is o_i, the global offset of chunk i; ChunkStart[k] is where Q begins.
	ChunkStart []int
	Load       float64 // seconds spent getting chunk caches from the source (mapping a shard, or decoding a ChunkKV)
	Fill       float64 // seconds spent copying (widening a mapped shard's layers) and re-rotating them into the cache
}

// Assemble builds the blended cache: P's cache (exact, computed once per prefix
// and model by prefixKV) in slots [0,|P|), chunk i's cache re-rotated from
// |P|+t to o_i+t, with room for Q and reserve more slots. The slots for Q are
// allocated but left empty.
func Assemble(ctx context.Context, m model.Backend, src ChunkSource, prefix *kvshards.ChunkKV, lay *Layout, reserve int) (*Assembled, error) {
	cache, err := m.NewCache(lay.Len() + reserve)
	if err != nil {
		return nil, fmt.Errorf("assemble: %w", err)
	}
	a, err := AssembleInto(ctx, m, src, prefix, lay, cache)
	if err != nil {
		cache.Free()
	}
	return a, err
}

// AssembleInto is Assemble into cache, which must be empty (Len 0; a reused
// cache, so that a caller assembling one question after another, as the
// auxiliary scorer does, does not allocate and zero a whole cache each time).
// On error the cache holds a partial assembly and the caller frees or resets it.
func AssembleInto(ctx context.Context, m model.Backend, src ChunkSource, prefix *kvshards.ChunkKV, lay *Layout, cache model.KVCache) (*Assembled, error) {
	if src == nil {
		return nil, fmt.Errorf("assemble: no chunk source")
	}
	if fp := src.Fingerprint(); fp != m.Fingerprint() {
		return nil, fmt.Errorf("assemble: chunk source belongs to model %x, not to this model %x: refusing caches from another model", fp[:6], m.Fingerprint())
	}
	if cache.Len() != 0 {
		return nil, fmt.Errorf("assemble: the cache holds %d slots already", cache.Len())
	}
	cfg := m.ModelConfig()
	np := len(lay.Prefix.IDs)
	total := lay.Len()
	if _, err := cache.Alloc(total); err != nil {
		return nil, fmt.Errorf("assemble: %w", err)
	}
	a := &Assembled{Cache: cache}
	var pos, from []int32
	positions := func(n, at int, base int32) {
		pos, from = slices.Grow(pos[:0], n)[:n], slices.Grow(from[:0], n)[:n]
		for t := 0; t < n; t++ {
			pos[t] = int32(at + t)
			from[t] = base + int32(t)
		}
	}
	fill := func(kv *kvshards.ChunkKV, at int) error {
		positions(len(kv.Tokens), at, kv.BasePos)
		for l := 0; l < cfg.Layers; l++ {
			if err := m.Fill(cache, l, at, pos, kv.K[l], kv.V[l], from); err != nil {
				return err
			}
		}
		return nil
	}
	// One layer of a mapped shard at a time, widened into kBuf and vBuf.
	var kBuf, vBuf []float32
	fillShard := func(sh *kvshards.Shard, chunk []int32, at int) error {
		h := sh.Header()
		toks, err := sh.Tokens()
		if err != nil {
			return err
		}
		meta := &kvshards.ChunkKV{Tokens: toks, BasePos: h.BasePos, Layers: h.Layers, KVHeads: h.KVHeads, HeadDim: h.HeadDim}
		if err := checkShape(meta, cfg.Layers, cfg.KVHeads, cfg.HeadDim, np, chunk); err != nil {
			return err
		}
		w := len(toks) * cfg.KVHeads * cfg.HeadDim
		kBuf, vBuf = slices.Grow(kBuf[:0], w)[:w], slices.Grow(vBuf[:0], w)[:w]
		positions(len(toks), at, h.BasePos)
		for l := 0; l < cfg.Layers; l++ {
			if err := sh.CopyInto(l, kBuf, vBuf); err != nil {
				return err
			}
			if err := m.Fill(cache, l, at, pos, kBuf, vBuf, from); err != nil {
				return err
			}
		}
		return nil
	}
	if np > 0 {
		if err := checkKV(prefix, cfg.Layers, cfg.KVHeads, cfg.HeadDim, 0, lay.Prefix.IDs); err != nil {
			return nil, fmt.Errorf("assemble: prefix: %w", err)
		}
		if err := fill(prefix, 0); err != nil {
			return nil, fmt.Errorf("assemble: prefix: %w", err)
		}
	}
	shards, _ := src.(ShardSource)
	at := np
	for i, ch := range lay.Chunks {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		a.ChunkStart = append(a.ChunkStart, at)
		t0 := now()
		if shards != nil {
			sh, err := shards.Shard(ctx, lay.Prefix.IDs, ch.IDs)
			switch {
			case err == nil:
				t1 := now()
				err = fillShard(sh, ch.IDs, at)
				sh.Close()
				if err != nil {
					return nil, fmt.Errorf("assemble: chunk %d: %w", i, err)
				}
				a.Load += t1.Sub(t0).Seconds()
				a.Fill += now().Sub(t1).Seconds()
				at += len(ch.IDs)
				continue
			case !errors.Is(err, kvshards.ErrNotFound):
				return nil, fmt.Errorf("assemble: chunk %d: %w", i, err)
			}
		}
		kv, err := src.Chunk(ctx, lay.Prefix.IDs, ch.IDs)
		if err != nil {
			return nil, fmt.Errorf("assemble: chunk %d: %w", i, err)
		}
		if err := checkKV(kv, cfg.Layers, cfg.KVHeads, cfg.HeadDim, np, ch.IDs); err != nil {
			return nil, fmt.Errorf("assemble: chunk %d: %w", i, err)
		}
		t1 := now()
		if err := fill(kv, at); err != nil {
			return nil, fmt.Errorf("assemble: chunk %d: %w", i, err)
		}
		a.Load += t1.Sub(t0).Seconds()
		a.Fill += now().Sub(t1).Seconds()
		at += len(ch.IDs)
	}
	a.ChunkStart = append(a.ChunkStart, at)
	return a, nil
}

// PrefixCache computes P's cache once per prefix for a model; safe for
// concurrent use.
type PrefixCache struct {
	mu sync.Mutex
	m  map[[32]byte]*kvshards.ChunkKV
}

// Get returns P's KV (BasePos 0), computing it on first use.
func (p *PrefixCache) Get(ctx context.Context, m model.Backend, prefix []int32) (*kvshards.ChunkKV, error) {
	key := tokenKey(nil, prefix)
	fp := m.Fingerprint()
	for i := range key {
		key[i] ^= fp[i]
	}
	p.mu.Lock()
	kv, ok := p.m[key]
	p.mu.Unlock()
	if ok {
		return kv, nil
	}
	kv, err := (&Computer{Model: m}).ComputeChunk(ctx, nil, prefix)
	if err != nil {
		return nil, fmt.Errorf("prefix: %w", err)
	}
	p.mu.Lock()
	if p.m == nil {
		p.m = map[[32]byte]*kvshards.ChunkKV{}
	}
	p.m[key] = kv
	p.mu.Unlock()
	return kv, nil
}

// StoreSource serves chunk caches from a shard store, building missing ones with
// Computer (write-through) unless ReadOnly. The store refuses a shard written by
// another model or after another prefix; the source's fingerprint is the
// computer's, so the engine refuses a store source built over another model.
type StoreSource struct {
	Store    *kvshards.Store
	Computer kvshards.Computer
	ReadOnly bool
}

// Fingerprint is the computer's model's.
func (s *StoreSource) Fingerprint() [32]byte { return s.Computer.Fingerprint() }

// Shard maps (or builds) the chunk's shard without decoding it (ShardSource).
func (s *StoreSource) Shard(ctx context.Context, prefix, chunk []int32) (*kvshards.Shard, error) {
	if s.ReadOnly {
		fp := s.Computer.Fingerprint()
		return s.Store.Open(ctx, kvshards.KeyOf(fp, prefix, chunk), kvshards.Expect{Fingerprint: fp, PrefixHash: kvshards.PrefixHash(prefix)})
	}
	return s.Store.GetOrBuild(ctx, s.Computer, prefix, chunk)
}

// Chunk loads (or builds) the chunk's shard and decodes it to f32.
func (s *StoreSource) Chunk(ctx context.Context, prefix, chunk []int32) (*kvshards.ChunkKV, error) {
	if s.ReadOnly {
		fp := s.Computer.Fingerprint()
		return s.Store.Load(ctx, kvshards.KeyOf(fp, prefix, chunk), kvshards.Expect{Fingerprint: fp, PrefixHash: kvshards.PrefixHash(prefix)})
	}
	h, err := s.Store.GetOrBuild(ctx, s.Computer, prefix, chunk)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return h.ChunkKV()
}

// Package kvshards stores per-chunk KV caches on disk, content addressed by
// (model fingerprint, prefix tokens, chunk tokens), and loads them back into the
// engine's cache slots. The on-disk format is described in docs/SHARD_FORMAT.md.
//
// The package does not import the model engine: the engine satisfies Computer
// through a small adapter, and hands the store ChunkKV values.
package kvshards

import (
	"context"
	"fmt"
)

// ChunkKV is one chunk's cache as the engine produces it: for each layer, K and V
// as [Tokens][KVHeads*HeadDim] float32 (row-major), K already rotated (RoPE) at
// positions BasePos, BasePos+1, …; V position-free.
type ChunkKV struct {
	Tokens                   []int32
	BasePos                  int32
	Layers, KVHeads, HeadDim int
	K, V                     [][]float32
}

// Computer is the engine seen from the store.
type Computer interface {
	// Fingerprint identifies the model: config, weight names/shapes/dtypes (and
	// sampled weight bytes). Two models with equal fingerprints must produce the
	// same caches.
	Fingerprint() [32]byte
	// ComputeChunk runs chunk as the continuation of prefix and returns only the
	// chunk's part of the cache (BasePos = len(prefix)). Build calls it from
	// several goroutines at once when Workers > 1.
	ComputeChunk(ctx context.Context, prefix, chunk []int32) (*ChunkKV, error)
}

// CorpusReader yields the corpus chunks (id and text) in turn; Next returns
// io.EOF at the end.
type CorpusReader interface {
	Next(ctx context.Context) (id, text string, err error)
}

// Tokenize turns a chunk's text into its tokens (the prompt template's EncodeChunk).
type Tokenize func(text string) ([]int32, error)

// Limits keep the parser's arithmetic far from overflow and refuse absurd
// headers before any allocation: 1024·1024·1024 f32 rows of 2^24 tokens per block
// and 2·1024+1 blocks stay below 2^58 bytes.
const (
	MaxLayers  = 1024
	MaxKVHeads = 1024
	MaxHeadDim = 1024
	MaxTokens  = 1 << 24
)

// RowLen is the number of floats per token in one layer's K (or V).
func (c *ChunkKV) RowLen() int { return c.KVHeads * c.HeadDim }

// Validate checks that the slices agree with the dimensions, so a bad engine
// result is reported before it is written.
func (c *ChunkKV) Validate() error {
	if c == nil {
		return fmt.Errorf("chunk kv is nil")
	}
	switch {
	case c.Layers <= 0 || c.Layers > MaxLayers:
		return fmt.Errorf("chunk kv: layers %d out of range 1..%d", c.Layers, MaxLayers)
	case c.KVHeads <= 0 || c.KVHeads > MaxKVHeads:
		return fmt.Errorf("chunk kv: kv heads %d out of range 1..%d", c.KVHeads, MaxKVHeads)
	case c.HeadDim <= 0 || c.HeadDim > MaxHeadDim:
		return fmt.Errorf("chunk kv: head dim %d out of range 1..%d", c.HeadDim, MaxHeadDim)
	case len(c.Tokens) > MaxTokens:
		return fmt.Errorf("chunk kv: %d tokens, more than %d", len(c.Tokens), MaxTokens)
	case c.BasePos < 0:
		return fmt.Errorf("chunk kv: negative base position %d", c.BasePos)
	case len(c.K) != c.Layers || len(c.V) != c.Layers:
		return fmt.Errorf("chunk kv: %d K and %d V layers, want %d", len(c.K), len(c.V), c.Layers)
	}
	n := len(c.Tokens) * c.RowLen()
	for l := range c.Layers {
		if len(c.K[l]) != n || len(c.V[l]) != n {
			return fmt.Errorf("chunk kv: layer %d has %d K and %d V floats, want %d (%d tokens × %d kv heads × %d head dim)",
				l, len(c.K[l]), len(c.V[l]), n, len(c.Tokens), c.KVHeads, c.HeadDim)
		}
	}
	return nil
}

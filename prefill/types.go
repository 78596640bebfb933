// Package prefill assembles a question's KV cache from a shared prefix P, the
// precomputed caches of its retrieved chunks and a fresh question Q, and runs one
// of the selective-recompute methods of docs/METHODS.md (full, reuse, ape,
// cacheblend, cacheclip) as calls of the model's one forward primitive.
package prefill

import (
	"context"
	"fmt"
	"time"

	"cacheclip/kvshards"
)

// Segment is one tokenised part of the prompt. Offsets are byte offsets
// [start, end) of each token within Text; special tokens may be zero-width.
// It mirrors model/prompt.Segment so that the two convert field by field.
type Segment struct {
	Text    string
	IDs     []int32
	Offsets [][2]int
}

// Layout is the prompt [P][chunk 1]…[chunk k][Q] of docs/PROMPT_LAYOUT.md, each
// part tokenised on its own so a chunk's tokens do not depend on its neighbours.
type Layout struct {
	Prefix   Segment
	Chunks   []Segment
	Question Segment
}

// ContextTokens is the number of chunk tokens (N in the budget ⌈r·N⌉).
func (l *Layout) ContextTokens() int {
	n := 0
	for _, c := range l.Chunks {
		n += len(c.IDs)
	}
	return n
}

// Len is the number of tokens of the whole prompt.
func (l *Layout) Len() int { return len(l.Prefix.IDs) + l.ContextTokens() + len(l.Question.IDs) }

// Layouter tokenises chunk texts and a question into a Layout with a model's own
// tokenizer and template (model/prompt.Template.Build bound to a tokenizer).
type Layouter interface {
	Layout(chunks []string, question string) (Layout, error)
}

// Query is one question over its retrieved chunks.
type Query struct {
	Chunks   []string
	Question string
	// Selection, when not nil, is CacheClip's selection made ahead of time (a job
	// scores the next batch with the auxiliary model while the primary works on
	// this one): exactly the budget's ascending context-token indices. AuxTime is
	// what making it cost, for the accounting.
	Selection []int
	AuxTime   time.Duration
	// Allocated says Selection's size was set by the job, which spread its
	// budget over a batch (budget=adaptive: auxscore.Allocate); otherwise it
	// must be the method's own ⌈r·N⌉.
	Allocated bool
}

// ChunkSource hands out a chunk's KV (from a shard store, or computed on the fly).
// Fingerprint names the model the caches belong to; a source whose fingerprint is
// not the model's is refused before any cache is used.
type ChunkSource interface {
	Fingerprint() [32]byte
	Chunk(ctx context.Context, prefix, chunk []int32) (*kvshards.ChunkKV, error)
}

// ShardSource is a ChunkSource that can also hand out a chunk's shard mapped
// and undecoded. Assemble then widens it one layer at a time into a buffer it
// reuses for every layer and chunk, where Chunk decodes the whole chunk into
// fresh f32 memory first (a 256-token chunk: 30 layers × 192 × 256 × 4 B ×
// 2 (K and V) = 11.25 MiB on SmolLM2-135M's shape, 24 × 128 × 256 × 4 B × 2 =
// 6 MiB on Qwen2.5-0.5B's: allocated, zeroed and written once more per
// question). A
// Shard error matching kvshards.ErrNotFound sends Assemble to Chunk, which
// may compute what the store lacks.
type ShardSource interface {
	ChunkSource
	Shard(ctx context.Context, prefix, chunk []int32) (*kvshards.Shard, error)
}

// Selector picks the context tokens to recompute (CacheClip's auxiliary scorer).
// It returns exactly budget distinct indices, ascending, into the concatenation
// of primary.Chunks' tokens.
type Selector interface {
	Select(ctx context.Context, q Query, primary Layout, budget int) ([]int, error)
}

// check validates a chunk cache against what the engine expects of it.
func checkKV(kv *kvshards.ChunkKV, layers, kvHeads, headDim int, prefixLen int, chunk []int32) error {
	if kv == nil {
		return fmt.Errorf("no cache")
	}
	if err := checkShape(kv, layers, kvHeads, headDim, prefixLen, chunk); err != nil {
		return err
	}
	if len(kv.K) != layers || len(kv.V) != layers {
		return fmt.Errorf("cache has %d key and %d value layers, want %d", len(kv.K), len(kv.V), layers)
	}
	w := len(chunk) * kvHeads * headDim
	for l := 0; l < layers; l++ {
		if len(kv.K[l]) != w || len(kv.V[l]) != w {
			return fmt.Errorf("layer %d: %d keys and %d values, want %d", l, len(kv.K[l]), len(kv.V[l]), w)
		}
	}
	return nil
}

// checkShape is checkKV without the K and V slices: what a mapped shard's
// header and tokens (kv with K and V nil) must match before its layers are read.
func checkShape(kv *kvshards.ChunkKV, layers, kvHeads, headDim int, prefixLen int, chunk []int32) error {
	if kv.Layers != layers || kv.KVHeads != kvHeads || kv.HeadDim != headDim {
		return fmt.Errorf("cache shaped %d layers × %d KV heads × %d, model has %d × %d × %d", kv.Layers, kv.KVHeads, kv.HeadDim, layers, kvHeads, headDim)
	}
	if int(kv.BasePos) != prefixLen {
		return fmt.Errorf("cache computed after a prefix of %d tokens, this prompt's prefix has %d", kv.BasePos, prefixLen)
	}
	if len(kv.Tokens) != len(chunk) {
		return fmt.Errorf("cache holds %d tokens, chunk has %d", len(kv.Tokens), len(chunk))
	}
	for i := range chunk {
		if kv.Tokens[i] != chunk[i] {
			return fmt.Errorf("cache token %d is %d, chunk has %d", i, kv.Tokens[i], chunk[i])
		}
	}
	return nil
}

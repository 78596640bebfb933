package model

import (
	"context"
	"fmt"
)

// Backend is the seam between the methods and a forward implementation: what
// prefill, the auxiliary scorer, the agreement measure and the job runner need
// of a model, and nothing more. Model (the CPU) implements it; package gpu's
// Model (CUDA) does too. Every backend runs the same conformance suite
// (model/backendtest), so a method written against Backend means the same thing
// on each. docs/ARCHITECTURE.md draws where the seam sits.
type Backend interface {
	// ModelConfig is the architecture the backend runs (read-only).
	ModelConfig() *Config
	// Fingerprint identifies the weights; chunk caches are keyed by it.
	Fingerprint() [32]byte
	// NewCache allocates a cache of capacity slots in the backend's memory.
	NewCache(capacity int) (KVCache, error)
	// Fill copies keys and values computed elsewhere (a KV shard, held on the
	// host as [len(pos)][KVDim]) into slots [first, first+len(pos)) of one layer
	// of c, re-rotating the keys from positions fromPos to pos.
	Fill(c KVCache, layer, first int, pos []int32, k, v []float32, fromPos []int32) error
	// Forward is the one forward primitive: see Model.Forward for the contract,
	// including the Probe and Prune hooks of a Seq.
	Forward(ctx context.Context, seqs []*Seq) ([]Output, error)
	// Generate decodes every state to completion (Decode over Forward).
	Generate(ctx context.Context, states []*GenState) error
}

// KVCache is a backend's cache of keys and values: slots, each holding one
// position's key (rotated there) and value for every layer.
type KVCache interface {
	// Len is the number of slots in use; Cap the number allocated.
	Len() int
	Cap() int
	// Alloc reserves n consecutive slots (growing the cache if needed) and
	// returns the first.
	Alloc(n int) (first int, err error)
	// ReadKV copies the keys and values of slots [from, to) of one layer to the
	// host, [to-from][KVDim] each.
	ReadKV(layer, from, to int) (k, v []float32, err error)
	// Free releases the cache's memory (a no-op for host memory, which the
	// garbage collector owns).
	Free()
}

// Viewer is a KVCache that branches: View shares the keys and values but
// keeps its own slot positions, which SetPos changes, so that several
// sequences of one Forward call see different slots of one cache (label
// scoring branches every label from one context this way). A backend whose
// caches cannot branch leaves it out; label scoring then says so.
type Viewer interface {
	KVCache
	View() Viewer
	SetPos(slot int, pos int32)
}

var (
	_ Backend = (*Model)(nil)
	_ Viewer  = (*Cache)(nil)
)

// ModelConfig is m.Config.
func (m *Model) ModelConfig() *Config { return &m.Config }

// DefaultAppendRows bounds the rows of one forward call of Append when the
// caller gives no bound: activations grow with the rows of a call, so a long
// prompt is computed in pieces of this many rows.
const DefaultAppendRows = 2048

// Append computes toks as the continuation of what c holds: token i at
// position pos0+i in a newly allocated slot, at most maxRows rows per forward
// call (<= 0: DefaultAppendRows). With logits it returns the next-token logits
// of the last token (nil for no tokens). Full prefill, chunk caches, the
// auxiliary model's context and the agreement measure all fill caches this way.
func Append(ctx context.Context, b Backend, c KVCache, toks []int32, pos0 int32, maxRows int, logits bool) ([]float32, error) {
	if maxRows <= 0 {
		maxRows = DefaultAppendRows
	}
	var last []float32
	for lo := 0; lo < len(toks); lo += maxRows {
		hi := min(lo+maxRows, len(toks))
		first, err := c.Alloc(hi - lo)
		if err != nil {
			return nil, err
		}
		s := &Seq{Cache: c, Tokens: toks[lo:hi], Pos: make([]int32, hi-lo), Slots: make([]int32, hi-lo)}
		for i := range s.Pos {
			s.Pos[i] = pos0 + int32(lo+i)
			s.Slots[i] = int32(first + i)
		}
		if logits && hi == len(toks) {
			s.Logits = []int{hi - lo - 1}
		}
		out, err := b.Forward(ctx, []*Seq{s})
		if err != nil {
			return nil, fmt.Errorf("rows [%d,%d): %w", lo, hi, err)
		}
		if logits && hi == len(toks) {
			last = out[0].Logits[0]
		}
	}
	return last, nil
}

// Package kvtest provides a deterministic fake Computer and an in-memory
// CorpusReader for tests of kvshards and of code that uses it.
package kvtest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cacheclip/kvshards"
)

// Computer produces pseudo-random K/V determined by (seed, prefix, chunk,
// layer), so two computers with the same seed agree and a stored shard can be
// compared with a fresh computation.
type Computer struct {
	Seed                     uint64
	Layers, KVHeads, HeadDim int
	Delay                    time.Duration // per ComputeChunk, to make builds slow enough to interrupt
	Calls                    atomic.Int64
	mu                       sync.Mutex
	fail                     map[int32]error // first chunk token -> error
}

// New returns a computer with the given shape.
func New(seed uint64, layers, kvHeads, headDim int) *Computer {
	return &Computer{Seed: seed, Layers: layers, KVHeads: kvHeads, HeadDim: headDim}
}

// FailOn makes ComputeChunk fail for chunks starting with tok.
func (c *Computer) FailOn(tok int32, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail == nil {
		c.fail = map[int32]error{}
	}
	c.fail[tok] = err
}

// Fingerprint hashes the seed and shape.
func (c *Computer) Fingerprint() [32]byte {
	return sha256.Sum256(fmt.Appendf(nil, "kvtest seed=%d layers=%d kvh=%d hd=%d", c.Seed, c.Layers, c.KVHeads, c.HeadDim))
}

// ComputeChunk returns the fake cache of chunk after prefix.
func (c *Computer) ComputeChunk(ctx context.Context, prefix, chunk []int32) (*kvshards.ChunkKV, error) {
	c.Calls.Add(1)
	if len(chunk) > 0 {
		c.mu.Lock()
		err := c.fail[chunk[0]]
		c.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	if c.Delay > 0 {
		select {
		case <-time.After(c.Delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	k := kvshards.KeyOf(c.Fingerprint(), prefix, chunk)
	kv := &kvshards.ChunkKV{Tokens: append([]int32(nil), chunk...), BasePos: int32(len(prefix)),
		Layers: c.Layers, KVHeads: c.KVHeads, HeadDim: c.HeadDim,
		K: make([][]float32, c.Layers), V: make([][]float32, c.Layers)}
	n := len(chunk) * c.KVHeads * c.HeadDim
	for l := range c.Layers {
		r := rand.New(rand.NewPCG(binary.LittleEndian.Uint64(k[:8])^c.Seed, uint64(l)))
		kv.K[l], kv.V[l] = make([]float32, n), make([]float32, n)
		for i := range n {
			kv.K[l][i] = float32(r.NormFloat64() * 2)
			kv.V[l][i] = float32(r.NormFloat64() * 0.5)
		}
	}
	return kv, nil
}

// Source yields fixed (id, text) rows.
type Source struct {
	IDs, Texts []string
	i          int
}

// NewSource makes n rows "c<i>" whose text is chunkLen space-separated
// numbers derived from i (row i and row j share no text unless i == j).
func NewSource(n, chunkLen int) *Source {
	s := &Source{}
	for i := range n {
		var b strings.Builder
		for j := range chunkLen {
			if j > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(strconv.Itoa(1000 + i*chunkLen + j))
		}
		s.IDs = append(s.IDs, "c"+strconv.Itoa(i))
		s.Texts = append(s.Texts, b.String())
	}
	return s
}

// Next returns the next row or io.EOF.
func (s *Source) Next(ctx context.Context) (string, string, error) {
	if err := ctx.Err(); err != nil {
		return "", "", err
	}
	if s.i >= len(s.IDs) {
		return "", "", io.EOF
	}
	s.i++
	return s.IDs[s.i-1], s.Texts[s.i-1], nil
}

// Len is the number of rows.
func (s *Source) Len() int { return len(s.IDs) }

// Tokenize parses space-separated integers.
func Tokenize(text string) ([]int32, error) {
	var out []int32
	for f := range strings.FieldsSeq(text) {
		v, err := strconv.ParseInt(f, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("token %q: %w", f, err)
		}
		out = append(out, int32(v))
	}
	return out, nil
}

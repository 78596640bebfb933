package model

import (
	"fmt"
	"math"
)

// Cache holds keys and values of a set of slots for every layer. Keys are stored
// rotated (RoPE applied at the slot's position). A slot's position says which rows
// may attend to it: slot j is visible to a row at position p iff 0 <= Pos[j] <= p.
type Cache struct {
	Layers  int
	KVDim   int
	HeadDim int
	K, V    [][]float32 // [layer][slot*KVDim]
	Pos     []int32     // per slot; -1 for an unused slot
	n       int
}

// NewCache allocates a cache of the given slot capacity for the model.
func (m *Model) NewCache(capacity int) *Cache {
	c := &Cache{Layers: m.Config.Layers, KVDim: m.Config.KVDim(), HeadDim: m.Config.HeadDim}
	c.K = make([][]float32, c.Layers)
	c.V = make([][]float32, c.Layers)
	c.grow(capacity)
	return c
}

// Len is the number of slots in use.
func (c *Cache) Len() int { return c.n }

// Cap is the number of allocated slots.
func (c *Cache) Cap() int { return len(c.Pos) }

func (c *Cache) grow(capacity int) {
	if capacity <= len(c.Pos) {
		return
	}
	for l := range c.K {
		k := make([]float32, capacity*c.KVDim)
		copy(k, c.K[l])
		c.K[l] = k
		v := make([]float32, capacity*c.KVDim)
		copy(v, c.V[l])
		c.V[l] = v
	}
	p := make([]int32, capacity)
	copy(p, c.Pos)
	for i := len(c.Pos); i < capacity; i++ {
		p[i] = -1
	}
	c.Pos = p
}

// Alloc reserves n consecutive slots and returns the first; their positions stay -1
// until a forward call or Fill sets them.
func (c *Cache) Alloc(n int) int {
	first := c.n
	if c.n+n > len(c.Pos) {
		c.grow(max(c.n+n, 2*len(c.Pos)))
	}
	c.n += n
	return first
}

// View returns a cache that shares c's keys and values but has its own copy of
// the slot positions. Several views in one forward call give their sequences
// different visibility over the same slots (a slot at position -1 in a view is
// invisible to that view's rows): label scoring branches every label from one
// context this way without copying it. Allocate every slot before taking views;
// a view must not Alloc (growing would detach it from the shared storage).
func (c *Cache) View() *Cache {
	v := *c
	v.Pos = append([]int32(nil), c.Pos...)
	return &v
}

// Reset empties the cache without freeing memory.
func (c *Cache) Reset() {
	for i := range c.Pos[:c.n] {
		c.Pos[i] = -1
	}
	c.n = 0
}

// Fill copies keys and values computed elsewhere (a KV shard) into slots
// [first, first+len(pos)) of one layer. k and v are [len(pos)][KVDim]; the keys were
// rotated at positions fromPos and are re-rotated to pos (RoPE composes:
// R(b) = R(b-a)·R(a)), so a chunk computed at one offset can sit at any other.
func (m *Model) Fill(c *Cache, layer, first int, pos []int32, k, v []float32, fromPos []int32) error {
	n := len(pos)
	if first < 0 || first+n > c.n {
		return fmt.Errorf("cache fill: slots [%d,%d) outside the %d allocated", first, first+n, c.n)
	}
	if len(k) != n*c.KVDim || len(v) != n*c.KVDim || len(fromPos) != n {
		return fmt.Errorf("cache fill: layer %d: got %d keys, %d values, %d positions for %d slots of width %d", layer, len(k), len(v), len(fromPos), n, c.KVDim)
	}
	dk := c.K[layer][first*c.KVDim : (first+n)*c.KVDim]
	copy(dk, k)
	copy(c.V[layer][first*c.KVDim:(first+n)*c.KVDim], v)
	cos := make([]float32, c.HeadDim/2)
	sin := make([]float32, c.HeadDim/2)
	for i := 0; i < n; i++ {
		if d := pos[i] - fromPos[i]; d != 0 {
			m.ropeTable(d, cos, sin)
			m.rotate(dk[i*c.KVDim:(i+1)*c.KVDim], c.KVDim/c.HeadDim, cos, sin)
		}
		c.Pos[first+i] = pos[i]
	}
	return nil
}

// ropeTable fills the cosines and sines of the rotation for position pos.
func (m *Model) ropeTable(pos int32, cos, sin []float32) {
	for i, f := range m.invFreq {
		s, c := math.Sincos(float64(pos) * f)
		cos[i] = float32(c)
		sin[i] = float32(s)
	}
}

// rotate applies the rotation in cos/sin to each of heads vectors in x.
func (m *Model) rotate(x []float32, heads int, cos, sin []float32) {
	hd := m.Config.HeadDim
	half := hd / 2
	for h := 0; h < heads; h++ {
		v := x[h*hd : (h+1)*hd]
		if m.Config.RopeInterleaved {
			for i := 0; i < half; i++ {
				a, b := v[2*i], v[2*i+1]
				v[2*i] = a*cos[i] - b*sin[i]
				v[2*i+1] = a*sin[i] + b*cos[i]
			}
		} else {
			for i := 0; i < half; i++ {
				a, b := v[i], v[i+half]
				v[i] = a*cos[i] - b*sin[i]
				v[i+half] = b*cos[i] + a*sin[i]
			}
		}
	}
}

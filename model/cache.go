package model

import (
	"fmt"

	"cacheclip/kernels"
)

// Cache holds keys and values of a set of slots for every layer. Keys are stored
// rotated (RoPE applied at the slot's position). A slot's position says which rows
// may attend to it: slot j is visible to a row at position p iff 0 <= Pos[j] <= p.
//
// Keys are kept in the blocked layout the attention kernel reads
// (kernels.KeyBlock), so a decode step appends its key in place and attention
// never repacks the context's keys; values in the natural [slot][KVDim] layout,
// which the kernel also reads in place. ReadKV, WriteKV and Fill speak the
// natural layout for both.
type Cache struct {
	Layers  int
	KVDim   int
	HeadDim int
	k, v    [][]float32 // [layer]: keys blocked, values [slot*KVDim]
	Pos     []int32     // per slot; -1 for an unused slot
	n       int
}

// NewCache allocates a host cache of the given slot capacity (Backend).
func (m *Model) NewCache(capacity int) (KVCache, error) {
	if capacity < 0 {
		return nil, fmt.Errorf("cache: capacity %d", capacity)
	}
	return m.HostCache(capacity), nil
}

// HostCache is NewCache with the concrete type, for callers that read the
// slots directly (tests, the reference comparisons of other backends).
func (m *Model) HostCache(capacity int) *Cache {
	c := &Cache{Layers: m.Config.Layers, KVDim: m.Config.KVDim(), HeadDim: m.Config.HeadDim}
	c.k = make([][]float32, c.Layers)
	c.v = make([][]float32, c.Layers)
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
	for l := range c.k {
		// Whole key blocks grow by appending blocks: the prefix keeps its place.
		k := make([]float32, kernels.BlockedKeysLen(capacity, c.KVDim))
		copy(k, c.k[l])
		c.k[l] = k
		v := make([]float32, capacity*c.KVDim)
		copy(v, c.v[l])
		c.v[l] = v
	}
	p := make([]int32, capacity)
	copy(p, c.Pos)
	for i := len(c.Pos); i < capacity; i++ {
		p[i] = -1
	}
	c.Pos = p
}

// Alloc reserves n consecutive slots and returns the first; their positions stay -1
// until a forward call or Fill sets them. Host memory grows without a limit of
// its own, so the error is only for a negative n.
func (c *Cache) Alloc(n int) (int, error) {
	if n < 0 {
		return 0, fmt.Errorf("cache: alloc %d slots", n)
	}
	first := c.n
	if c.n+n > len(c.Pos) {
		c.grow(max(c.n+n, 2*len(c.Pos)))
	}
	c.n += n
	return first, nil
}

// ReadKV copies slots [from, to) of one layer.
func (c *Cache) ReadKV(layer, from, to int) (k, v []float32, err error) {
	if layer < 0 || layer >= c.Layers || from < 0 || from > to || to > c.n {
		return nil, nil, fmt.Errorf("cache read: layer %d slots [%d,%d) outside %d layers × %d slots", layer, from, to, c.Layers, c.n)
	}
	k = make([]float32, (to-from)*c.KVDim)
	kernels.GetKeys(k, c.k[layer], from, to-from, c.KVDim)
	v = append([]float32(nil), c.v[layer][from*c.KVDim:to*c.KVDim]...)
	return k, v, nil
}

// WriteKV overwrites slots [first, first+len(k)/KVDim) of one layer with keys
// and values in the natural [slot][KVDim] layout, as they are (no rotation;
// Fill re-rotates). Slot positions are left as they are.
func (c *Cache) WriteKV(layer, first int, k, v []float32) error {
	n := len(k) / max(1, c.KVDim)
	if layer < 0 || layer >= c.Layers || first < 0 || first+n > c.n {
		return fmt.Errorf("cache write: layer %d slots [%d,%d) outside %d layers × %d slots", layer, first, first+n, c.Layers, c.n)
	}
	if len(k) != n*c.KVDim || len(v) != len(k) {
		return fmt.Errorf("cache write: layer %d: %d keys and %d values are not whole slots of width %d", layer, len(k), len(v), c.KVDim)
	}
	c.putKV(layer, first, k, v)
	return nil
}

// putKV stores keys and values of consecutive slots (natural layout).
func (c *Cache) putKV(layer, first int, k, v []float32) {
	kernels.PutKeys(c.k[layer], first, c.KVDim, k)
	copy(c.v[layer][first*c.KVDim:], v)
}

// Free is a no-op: host memory belongs to the garbage collector.
func (c *Cache) Free() {}

// View returns a cache that shares c's keys and values but has its own copy of
// the slot positions (Viewer). Several views in one forward call give their
// sequences different visibility over the same slots (a slot at position -1 in
// a view is invisible to that view's rows): label scoring branches every label
// from one context this way without copying it. Allocate every slot before
// taking views; a view must not Alloc (growing would detach it from the shared
// storage).
func (c *Cache) View() Viewer {
	v := *c
	v.Pos = append([]int32(nil), c.Pos...)
	return &v
}

// SetPos sets the position of one slot of this cache or view (Viewer); -1
// hides it from every row.
func (c *Cache) SetPos(slot int, pos int32) { c.Pos[slot] = pos }

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
func (m *Model) Fill(kc KVCache, layer, first int, pos []int32, k, v []float32, fromPos []int32) error {
	c, ok := kc.(*Cache)
	if !ok {
		return fmt.Errorf("cache fill: a %T is not a CPU cache", kc)
	}
	if layer < 0 || layer >= c.Layers {
		return fmt.Errorf("cache fill: layer %d of %d", layer, c.Layers)
	}
	n := len(pos)
	if first < 0 || first+n > c.n {
		return fmt.Errorf("cache fill: slots [%d,%d) outside the %d allocated", first, first+n, c.n)
	}
	if len(k) != n*c.KVDim || len(v) != n*c.KVDim || len(fromPos) != n {
		return fmt.Errorf("cache fill: layer %d: got %d keys, %d values, %d positions for %d slots of width %d", layer, len(k), len(v), len(fromPos), n, c.KVDim)
	}
	copy(c.v[layer][first*c.KVDim:(first+n)*c.KVDim], v)
	ks := m.Pool.Kernels()
	cos := make([]float32, c.HeadDim/2)
	sin := make([]float32, c.HeadDim/2)
	row := make([]float32, c.KVDim)
	// A chunk moves by one offset for all its rows: the table (a sine and
	// cosine per frequency) is made once per offset, not once per row.
	tableD := int32(0)
	for i := 0; i < n; i++ {
		key := k[i*c.KVDim : (i+1)*c.KVDim]
		if d := pos[i] - fromPos[i]; d != 0 {
			copy(row, key)
			if d != tableD {
				kernels.RoPETable(cos, sin, d, 1, m.invFreq)
				tableD = d
			}
			ks.RoPE(row, 0, c.KVDim/c.HeadDim, c.HeadDim, cos, sin, m.Config.RopeInterleaved)
			key = row
		}
		kernels.PutKeys(c.k[layer], first+i, c.KVDim, key)
		c.Pos[first+i] = pos[i]
	}
	return nil
}

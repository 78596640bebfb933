package gpu

import (
	"fmt"

	"cacheclip/kernels"
	"cacheclip/model"
)

// Cache is model.Cache on the device: f32 keys (rotated at the slot's position)
// and values per layer, and slot positions (-1: unused). Pos is the host mirror
// of the positions; the device copy is refreshed before attention reads it.
type Cache struct {
	Layers, KVDim, HeadDim int
	K, V                   []Buffer // [layer] [cap][KVDim] f32
	Pos                    []int32
	pos                    Buffer // [cap] int32
	n                      int
	posDirty               bool
	dev                    *Device
	// ready holds shard loads into the cache still in flight (Await): the next
	// Forward writes rows of layer l only after load l has landed, so a
	// recomputed row always overwrites the shard's copy, never the reverse.
	ready *Pending
}

var _ model.KVCache = (*Cache)(nil)

// NewCache allocates a device cache with room for capacity slots (model.Backend).
func (m *Model) NewCache(capacity int) (model.KVCache, error) {
	c, err := m.DeviceCache(capacity)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Await makes the next Forward over c wait, layer by layer, for the loads of p
// (from Loader.Load into c) before writing into the cache; that Forward
// consumes it. The caller still Waits on p to release it.
func (c *Cache) Await(p *Pending) { c.ready = p }

// DeviceCache is NewCache with the concrete type (Loader.Load, Download).
func (m *Model) DeviceCache(capacity int) (*Cache, error) {
	if capacity <= 0 {
		return nil, fmt.Errorf("gpu cache: capacity %d", capacity)
	}
	c := &Cache{Layers: m.Config.Layers, KVDim: m.Config.KVDim(), HeadDim: m.Config.HeadDim, dev: m.dev,
		K: make([]Buffer, m.Config.Layers), V: make([]Buffer, m.Config.Layers)}
	unlock := m.dev.bind()
	defer unlock()
	if err := c.grow(capacity); err != nil {
		c.freeLocked()
		return nil, err
	}
	return c, nil
}

// Len is the number of slots in use; Cap the number allocated.
func (c *Cache) Len() int { return c.n }
func (c *Cache) Cap() int { return len(c.Pos) }

// Bytes is the device memory of the cache.
func (c *Cache) Bytes() uint64 {
	return uint64(c.Cap()) * (uint64(c.Layers)*2*uint64(c.KVDim)*4 + 4)
}

func (c *Cache) grow(capacity int) error {
	if capacity <= len(c.Pos) {
		return nil
	}
	d := c.dev
	row := uint64(c.KVDim) * 4
	old := uint64(len(c.Pos)) * row
	for l := 0; l < c.Layers; l++ {
		for _, b := range []*Buffer{&c.K[l], &c.V[l]} {
			nb, err := d.alloc(uint64(capacity) * row)
			if err != nil {
				return fmt.Errorf("gpu cache: growing to %d slots: %w", capacity, err)
			}
			if b.Ptr != 0 && old > 0 {
				if err := d.drv.check("cuMemcpyDtoDAsync", d.drv.cuMemcpyDtoDAsync(nb.Ptr, b.Ptr, old, d.compute)); err != nil {
					d.free(nb)
					return err
				}
				d.drv.cuStreamSynchronize(d.compute)
			}
			d.free(*b)
			*b = nb
		}
	}
	np, err := d.alloc(uint64(capacity) * 4)
	if err != nil {
		return fmt.Errorf("gpu cache: growing to %d slots: %w", capacity, err)
	}
	d.free(c.pos)
	c.pos = np
	p := make([]int32, capacity)
	copy(p, c.Pos)
	for i := len(c.Pos); i < capacity; i++ {
		p[i] = -1
	}
	c.Pos = p
	c.posDirty = true
	return nil
}

// Alloc reserves n consecutive slots and returns the first.
func (c *Cache) Alloc(n int) (int, error) {
	if n < 0 {
		return 0, fmt.Errorf("gpu cache: alloc %d slots", n)
	}
	first := c.n
	if c.n+n > len(c.Pos) {
		unlock := c.dev.bind()
		err := c.grow(max(c.n+n, 2*len(c.Pos)))
		unlock()
		if err != nil {
			return 0, err
		}
	}
	c.n += n
	return first, nil
}

// Reset empties the cache without freeing memory.
func (c *Cache) Reset() {
	for i := range c.Pos[:c.n] {
		c.Pos[i] = -1
	}
	c.n = 0
	c.posDirty = true
}

// syncPos uploads the host positions on the compute stream if they changed.
func (c *Cache) syncPos() error {
	if !c.posDirty {
		return nil
	}
	if err := uploadAsync(c.dev, c.pos.Ptr, c.Pos); err != nil {
		return err
	}
	c.posDirty = false
	return nil
}

// Free releases the cache's device memory.
func (c *Cache) Free() {
	unlock := c.dev.bind()
	defer unlock()
	c.dev.drv.cuStreamSynchronize(c.dev.compute)
	c.dev.drv.cuStreamSynchronize(c.dev.copy)
	c.freeLocked()
}

func (c *Cache) freeLocked() {
	for l := range c.K {
		c.dev.free(c.K[l])
		c.dev.free(c.V[l])
		c.K[l], c.V[l] = Buffer{}, Buffer{}
	}
	c.dev.free(c.pos)
	c.pos = Buffer{}
}

// Fill is model.Fill on the device: keys and values computed elsewhere (rotated
// at fromPos) go into slots [first, first+len(pos)) of one layer, keys re-rotated
// to pos. Synchronous; the Loader is the overlapped path.
func (m *Model) Fill(kc model.KVCache, layer, first int, pos []int32, k, v []float32, fromPos []int32) error {
	c, ok := kc.(*Cache)
	if !ok {
		return fmt.Errorf("gpu cache fill: a %T is not a device cache", kc)
	}
	n := len(pos)
	if layer < 0 || layer >= c.Layers {
		return fmt.Errorf("gpu cache fill: layer %d of %d", layer, c.Layers)
	}
	if first < 0 || first+n > c.n {
		return fmt.Errorf("gpu cache fill: slots [%d,%d) outside the %d allocated", first, first+n, c.n)
	}
	if len(k) != n*c.KVDim || len(v) != n*c.KVDim || len(fromPos) != n {
		return fmt.Errorf("gpu cache fill: layer %d: got %d keys, %d values, %d positions for %d slots of width %d", layer, len(k), len(v), len(fromPos), n, c.KVDim)
	}
	if n == 0 {
		return nil
	}
	d := m.dev
	unlock := d.bind()
	defer unlock()
	off := DevPtr(uint64(first) * uint64(c.KVDim) * 4)
	if err := uploadAsync(d, c.K[layer].Ptr+off, k); err != nil {
		return err
	}
	if err := uploadAsync(d, c.V[layer].Ptr+off, v); err != nil {
		return err
	}
	idx, err := d.alloc(uint64(2*n) * 4)
	if err != nil {
		return err
	}
	defer func() {
		d.drv.cuStreamSynchronize(d.compute)
		d.free(idx)
	}()
	both := append(append(make([]int32, 0, 2*n), fromPos...), pos...)
	if err := uploadAsync(d, idx.Ptr, both); err != nil {
		return err
	}
	if err := d.flat("rope_rerotate", int64(n*c.KVDim/2), c.K[layer].Ptr+off, idx.Ptr, idx.Ptr+DevPtr(4*n), m.invFreq.Ptr,
		n, c.KVDim/c.HeadDim, c.HeadDim, boolInt(m.Config.RopeInterleaved)); err != nil {
		return err
	}
	copy(c.Pos[first:first+n], pos)
	c.posDirty = true
	return d.drv.check("cuStreamSynchronize", d.drv.cuStreamSynchronize(d.compute))
}

// Download copies one layer's keys and values of the used slots to the host.
func (c *Cache) Download(layer int) (k, v []float32, err error) { return c.ReadKV(layer, 0, c.n) }

// ReadKV copies the keys and values of slots [from, to) of one layer to the
// host (model.KVCache).
func (c *Cache) ReadKV(layer, from, to int) (k, v []float32, err error) {
	if layer < 0 || layer >= c.Layers || from < 0 || from > to || to > c.n {
		return nil, nil, fmt.Errorf("gpu cache read: layer %d slots [%d,%d) outside %d layers × %d slots", layer, from, to, c.Layers, c.n)
	}
	unlock := c.dev.bind()
	defer unlock()
	k = make([]float32, (to-from)*c.KVDim)
	v = make([]float32, (to-from)*c.KVDim)
	at := DevPtr(uint64(from) * uint64(c.KVDim) * 4)
	if err := download(c.dev, k, c.K[layer].Ptr+at); err != nil {
		return nil, nil, err
	}
	if err := download(c.dev, v, c.V[layer].Ptr+at); err != nil {
		return nil, nil, err
	}
	return k, v, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// dtypeKernel names the widening kernel for raw KV or embedding storage.
func widenKernel(dt kernels.DType) (string, error) {
	switch dt {
	case kernels.BF16:
		return "bf16_to_f32_k", nil
	case kernels.F16:
		return "f16_to_f32_k", nil
	}
	return "", fmt.Errorf("no widening kernel for %v", dt)
}

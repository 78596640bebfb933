package gpu

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"cacheclip/kernels"
)

// StoredKV is one chunk's cached keys and values as a shard stores them.
type StoredKV struct {
	Key     string // content address; equal keys share one device copy
	DType   kernels.DType
	Tokens  int
	FromPos []int32 // positions the stored keys were rotated at
	// Layer returns layer l's keys and values, each [Tokens][KVDim] in DType,
	// typically slices of a memory-mapped shard file.
	Layer func(l int) (k, v []byte)
}

// Placement puts a chunk into cache slots [First, First+Tokens) at positions Pos.
type Placement struct {
	Chunk StoredKV
	First int
	Pos   []int32
}

// copyEngine is what the load scheduler needs from a device. The real one
// drives pinned buffers, the copy stream and events; tests use a fake that
// completes copies only when waited for, so reusing a staging buffer too early
// corrupts data visibly.
type copyEngine interface {
	stage(buf int, src []byte)            // host copy into pinned staging buffer buf
	h2d(dst DevPtr, buf int, n int) error // async copy of buf's first n bytes on the copy stream
	recordBuf(buf int) error              // buf is free once the copy stream passes this point
	waitBuf(buf int) error                // host waits until buf is free
	widen(layer, job int) error           // copy stream: job's layer from its device copy into the cache, keys re-rotated
	recordLayer(layer int) error          // every load of layer is in the cache once the copy stream passes this point
}

// loadJob is one placement as the scheduler sees it.
type loadJob struct {
	hit        bool   // the chunk's device copy is already resident
	entry      DevPtr // device copy of the chunk: [layer][K | V][layerBytes]
	layerBytes int
	src        func(l int) (k, v []byte)
}

// stager cycles through staging buffers, waiting for one only when it comes
// round again, so that up to nbuf copies are in flight while the host fills the next.
type stager struct {
	eng        copyEngine
	nbuf, size int
	next       int
	inUse      []bool
}

func newStager(eng copyEngine, nbuf, size int) *stager {
	return &stager{eng: eng, nbuf: nbuf, size: size, inUse: make([]bool, nbuf)}
}

func (s *stager) put(dst DevPtr, src []byte) error {
	for o := 0; o < len(src); {
		b := s.next
		s.next = (s.next + 1) % s.nbuf
		if s.inUse[b] {
			if err := s.eng.waitBuf(b); err != nil {
				return err
			}
		}
		n := min(s.size, len(src)-o)
		s.eng.stage(b, src[o:o+n])
		if err := s.eng.h2d(dst+DevPtr(o), b, n); err != nil {
			return err
		}
		if err := s.eng.recordBuf(b); err != nil {
			return err
		}
		s.inUse[b] = true
		o += n
	}
	return nil
}

// scheduleLoads issues the loads layer by layer, so the forward pass can start
// recomputing layer l while layer l+1 is still crossing the bus: every job's
// layer l (copied on a miss, widened and re-rotated into the cache always),
// then layer l's event. It returns the bytes copied from the host.
func scheduleLoads(ctx context.Context, eng copyEngine, st *stager, layers int, jobs []loadJob) (uint64, error) {
	var copied uint64
	for l := 0; l < layers; l++ {
		if err := ctx.Err(); err != nil {
			return copied, err
		}
		for i, j := range jobs {
			if !j.hit {
				k, v := j.src(l)
				if len(k) != j.layerBytes || len(v) != j.layerBytes {
					return copied, fmt.Errorf("load job %d layer %d: %d key and %d value bytes, want %d each", i, l, len(k), len(v), j.layerBytes)
				}
				base := j.entry + DevPtr(2*l*j.layerBytes)
				if err := st.put(base, k); err != nil {
					return copied, err
				}
				if err := st.put(base+DevPtr(j.layerBytes), v); err != nil {
					return copied, err
				}
				copied += 2 * uint64(j.layerBytes)
			}
			if err := eng.widen(l, i); err != nil {
				return copied, err
			}
		}
		if err := eng.recordLayer(l); err != nil {
			return copied, err
		}
	}
	return copied, nil
}

// LoadStats counts a loader's work since it was made.
type LoadStats struct {
	Hits, Misses uint64
	BytesCopied  uint64
}

// Loader streams chunk KV from host memory into device caches: pinned staging
// buffers, asynchronous copies on the device's copy stream, and a device-memory
// LRU of chunk copies bounded in bytes so that hot chunks cross the bus once.
type Loader struct {
	m       *Model
	dev     *Device
	mu      sync.Mutex // one load issues at a time: the staging ring is shared
	lru     *byteLRU[Buffer]
	staging []*Pinned
	bufEv   []cuEvent
	stats   LoadStats
}

// NewLoader makes a loader with a device chunk cache of cacheBytes and nbuf
// staging buffers of bufBytes each.
func NewLoader(m *Model, cacheBytes uint64, nbuf, bufBytes int) (*Loader, error) {
	if nbuf < 2 || bufBytes < 4096 {
		return nil, fmt.Errorf("loader: want at least 2 staging buffers of 4 KiB, got %d of %d bytes", nbuf, bufBytes)
	}
	ld := &Loader{m: m, dev: m.dev, lru: newByteLRU[Buffer](cacheBytes)}
	for i := 0; i < nbuf; i++ {
		p, err := m.dev.AllocPinned(bufBytes)
		if err != nil {
			ld.Close()
			return nil, fmt.Errorf("loader staging buffer %d: %w", i, err)
		}
		ld.staging = append(ld.staging, p)
	}
	unlock := m.dev.bind()
	defer unlock()
	for i := 0; i < nbuf; i++ {
		var e cuEvent
		if err := m.dev.drv.check("cuEventCreate", m.dev.drv.cuEventCreate(&e, cuEventDisableTiming)); err != nil {
			ld.Close()
			return nil, err
		}
		ld.bufEv = append(ld.bufEv, e)
	}
	return ld, nil
}

// Stats returns the loader's counters.
func (ld *Loader) Stats() LoadStats {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return ld.stats
}

// Close frees the staging buffers and the device chunk cache.
func (ld *Loader) Close() {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	for _, p := range ld.staging {
		ld.dev.FreePinned(p)
	}
	ld.staging = nil
	unlock := ld.dev.bind()
	defer unlock()
	ld.dev.drv.cuStreamSynchronize(ld.dev.copy)
	for _, e := range ld.bufEv {
		ld.dev.drv.cuEventDestroy(e)
	}
	ld.bufEv = nil
	for _, b := range ld.lru.Drain() {
		ld.dev.free(b)
	}
}

// Pending is a load in flight. Forward waits on it layer by layer (Cache.Await);
// Wait waits for all of it and releases what it holds.
type Pending struct {
	events   []cuEvent
	recorded []chan struct{} // closed once layer l's event is recorded (or the load failed)
	done     chan struct{}
	err      error
	release  func()
	once     sync.Once
	Copied   uint64
}

// waitLayer makes the compute stream wait for layer l's loads.
func (p *Pending) waitLayer(d *Device, l int) error {
	if l >= len(p.recorded) {
		return nil
	}
	<-p.recorded[l]
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("shard load: %w", p.err)
		}
	default:
	}
	return d.drv.check("cuStreamWaitEvent", d.drv.cuStreamWaitEvent(d.compute, p.events[l], 0))
}

// Wait blocks until the load has landed and releases its buffers and events.
func (p *Pending) Wait() error {
	<-p.done
	p.once.Do(p.release)
	return p.err
}

// Load starts copying the placements into cache c and returns at once; the
// copies are issued by a goroutine, layer by layer, on the copy stream. Pass the
// result to Cache.Await before a Forward over the same cache, then Wait on it.
func (ld *Loader) Load(ctx context.Context, c *Cache, ps []Placement) (*Pending, error) {
	d := ld.dev
	KD := c.KVDim
	for i, p := range ps {
		ch := p.Chunk
		if ch.Tokens <= 0 || len(ch.FromPos) != ch.Tokens || len(p.Pos) != ch.Tokens || ch.Layer == nil {
			return nil, fmt.Errorf("load placement %d (chunk %s): %d tokens, %d stored positions, %d target positions", i, ch.Key, ch.Tokens, len(ch.FromPos), len(p.Pos))
		}
		if p.First < 0 || p.First+ch.Tokens > c.Len() {
			return nil, fmt.Errorf("load placement %d (chunk %s): slots [%d,%d) outside the %d allocated", i, ch.Key, p.First, p.First+ch.Tokens, c.Len())
		}
		if ch.DType != kernels.F32 && ch.DType != kernels.BF16 && ch.DType != kernels.F16 {
			return nil, fmt.Errorf("load placement %d (chunk %s): dtype %v", i, ch.Key, ch.DType)
		}
	}
	for _, p := range ps {
		copy(c.Pos[p.First:p.First+p.Chunk.Tokens], p.Pos)
	}
	c.posDirty = true
	pd := &Pending{done: make(chan struct{}), recorded: make([]chan struct{}, c.Layers)}
	for l := range pd.recorded {
		pd.recorded[l] = make(chan struct{})
	}
	ld.mu.Lock()
	go func() {
		defer ld.mu.Unlock()
		unlock := d.bind()
		defer unlock()
		var pinnedKeys []string
		var temps []Buffer
		var posBuf Buffer
		pd.release = func() {
			unlock := d.bind()
			defer unlock()
			d.drv.cuStreamSynchronize(d.copy)
			for _, e := range pd.events {
				d.drv.cuEventDestroy(e)
			}
			for _, b := range temps {
				d.free(b)
			}
			d.free(posBuf)
			ld.mu.Lock()
			for _, k := range pinnedKeys {
				ld.lru.Unpin(k)
			}
			ld.mu.Unlock()
		}
		err := func() error {
			for range c.Layers {
				var e cuEvent
				if err := d.drv.check("cuEventCreate", d.drv.cuEventCreate(&e, cuEventDisableTiming)); err != nil {
					return err
				}
				pd.events = append(pd.events, e)
			}
			// Stored and target positions of every placement, for the re-rotation.
			var both []int32
			for _, p := range ps {
				both = append(both, p.Chunk.FromPos...)
			}
			for _, p := range ps {
				both = append(both, p.Pos...)
			}
			var err error
			if posBuf, err = d.alloc(uint64(len(both)) * 4); err != nil {
				return err
			}
			if err := d.drv.check("cuMemcpyHtoDAsync", d.drv.cuMemcpyHtoDAsync(posBuf.Ptr, ptrOf(both), uint64(len(both))*4, d.copy)); err != nil {
				return err
			}
			jobs := make([]loadJob, len(ps))
			for i, p := range ps {
				lb := p.Chunk.Tokens * KD * p.Chunk.DType.Size()
				jobs[i] = loadJob{layerBytes: lb, src: p.Chunk.Layer}
				if b, ok := ld.lru.Get(p.Chunk.Key); ok {
					pinnedKeys = append(pinnedKeys, p.Chunk.Key)
					jobs[i].hit, jobs[i].entry = true, b.Ptr
					ld.stats.Hits++
					continue
				}
				ld.stats.Misses++
				b, err := d.alloc(uint64(c.Layers) * 2 * uint64(lb))
				if err != nil {
					return fmt.Errorf("device copy of chunk %s: %w", p.Chunk.Key, err)
				}
				jobs[i].entry = b.Ptr
				evicted, err := ld.lru.Put(p.Chunk.Key, b, b.Bytes)
				var noRoom *ErrNoRoom
				switch {
				case errors.As(err, &noRoom):
					temps = append(temps, b)
				case err != nil:
					d.free(b)
					return err
				default:
					pinnedKeys = append(pinnedKeys, p.Chunk.Key)
				}
				for _, e := range evicted {
					d.free(e)
				}
			}
			eng := &deviceEngine{ld: ld, c: c, ps: ps, jobs: jobs, pos: posBuf, nPos: len(both) / 2, pd: pd}
			st := newStager(eng, len(ld.staging), len(ld.staging[0].Data))
			n, err := scheduleLoads(ctx, eng, st, c.Layers, jobs)
			pd.Copied = n
			ld.stats.BytesCopied += n
			return err
		}()
		// On failure done closes first, so a Forward woken by a layer that was
		// never recorded sees the error instead of waiting on a blank event.
		pd.err = err
		close(pd.done)
		for l := range pd.recorded {
			select {
			case <-pd.recorded[l]:
			default:
				close(pd.recorded[l])
			}
		}
	}()
	return pd, nil
}

// deviceEngine is the copyEngine of a real device.
type deviceEngine struct {
	ld   *Loader
	c    *Cache
	ps   []Placement
	jobs []loadJob
	pos  Buffer // [FromPos of every placement..., Pos of every placement...]
	nPos int
	pd   *Pending
}

func (e *deviceEngine) stage(buf int, src []byte) { copy(e.ld.staging[buf].Data, src) }

func (e *deviceEngine) h2d(dst DevPtr, buf int, n int) error {
	d := e.ld.dev
	return d.drv.check("cuMemcpyHtoDAsync", d.drv.cuMemcpyHtoDAsync(dst, e.ld.staging[buf].ptr, uint64(n), d.copy))
}

func (e *deviceEngine) recordBuf(buf int) error {
	d := e.ld.dev
	return d.drv.check("cuEventRecord", d.drv.cuEventRecord(e.ld.bufEv[buf], d.copy))
}

func (e *deviceEngine) waitBuf(buf int) error {
	d := e.ld.dev
	return d.drv.check("cuEventSynchronize", d.drv.cuEventSynchronize(e.ld.bufEv[buf]))
}

func (e *deviceEngine) widen(layer, job int) error {
	d, c, p, j := e.ld.dev, e.c, e.ps[job], e.jobs[job]
	T, KD := p.Chunk.Tokens, c.KVDim
	src := j.entry + DevPtr(2*layer*j.layerBytes)
	offset := DevPtr(uint64(p.First) * uint64(KD) * 4)
	n := int64(T * KD)
	for i, dst := range []DevPtr{c.K[layer].Ptr + offset, c.V[layer].Ptr + offset} {
		s := src + DevPtr(i*j.layerBytes)
		if p.Chunk.DType == kernels.F32 {
			if err := d.drv.check("cuMemcpyDtoDAsync", d.drv.cuMemcpyDtoDAsync(dst, s, uint64(j.layerBytes), d.copy)); err != nil {
				return err
			}
			continue
		}
		name, err := widenKernel(p.Chunk.DType)
		if err != nil {
			return err
		}
		g, b := grid1(n)
		if err := d.launchOn(d.copy, name, g, b, 0, dst, s, n); err != nil {
			return err
		}
	}
	first := 0
	for _, q := range e.ps[:job] {
		first += q.Chunk.Tokens
	}
	from := e.pos.Ptr + DevPtr(4*first)
	to := e.pos.Ptr + DevPtr(4*(e.nPos+first))
	g, b := grid1(int64(T * KD / 2))
	return d.launchOn(d.copy, "rope_rerotate", g, b, 0, c.K[layer].Ptr+offset, from, to, e.ld.m.invFreq.Ptr,
		T, KD/c.HeadDim, c.HeadDim, boolInt(e.ld.m.Config.RopeInterleaved))
}

func (e *deviceEngine) recordLayer(layer int) error {
	d := e.ld.dev
	err := d.drv.check("cuEventRecord", d.drv.cuEventRecord(e.pd.events[layer], d.copy))
	if err == nil {
		close(e.pd.recorded[layer])
	}
	return err
}

// Purge frees every device chunk copy no load in flight is using.
func (ld *Loader) Purge() {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	unlock := ld.dev.bind()
	defer unlock()
	for _, b := range ld.lru.DropUnpinned() {
		ld.dev.free(b)
	}
}

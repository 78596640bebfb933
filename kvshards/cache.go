package kvshards

import (
	"container/list"
	"sync"
)

// lru is the host-memory cache of opened shards, bounded by the sum of their
// file sizes. It holds one reference on each cached mapping; eviction drops
// it, and the mapping goes away once callers' handles are closed too.
//
// Plain LRU rather than S3-FIFO or ARC: entries are whole chunk caches (MBs),
// so a job holds hundreds to thousands of them and list operations cost nothing
// next to a load; a miss on an evicted shard costs an mmap and a checksum pass
// over page-cache-resident bytes, not a recomputation, so the scan resistance
// those policies buy is worth little here, and LRU's behaviour is easy to predict
// when sizing the budget ("the last B bytes of shards touched stay loaded").
type lru struct {
	mu       sync.Mutex
	capacity int64
	bytes    int64
	order    *list.List // front = most recent; values are *mapping
	index    map[Key]*list.Element

	hits, misses, evictions, evictedBytes int64
}

func newLRU(capacity int64) *lru {
	return &lru{capacity: capacity, order: list.New(), index: make(map[Key]*list.Element)}
}

// get returns a new handle on a cached shard, or nil.
func (c *lru) get(k Key) *Shard {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.index[k]
	if !ok {
		c.misses++
		return nil
	}
	c.hits++
	c.order.MoveToFront(e)
	return newHandle(e.Value.(*mapping))
}

// add caches m (taking a reference) unless it alone exceeds the budget, evicts
// least recently used shards until the total fits, and returns the caller's
// handle, whose reference is taken under the lock so that a concurrent eviction
// cannot unmap the shard first. If m's key is already cached (two loaders
// raced), the handle is on the cached copy and dup reports that m is unused.
func (c *lru) add(m *mapping) (h *Shard, dup bool) {
	if c.capacity <= 0 || m.lay.fileSize > c.capacity {
		return newHandle(m), false
	}
	c.mu.Lock()
	if e, ok := c.index[m.key]; ok {
		c.order.MoveToFront(e)
		h = newHandle(e.Value.(*mapping))
		c.mu.Unlock()
		return h, true
	}
	m.acquire()
	h = newHandle(m)
	c.index[m.key] = c.order.PushFront(m)
	c.bytes += m.lay.fileSize
	var drop []*mapping
	for c.bytes > c.capacity {
		e := c.order.Back()
		old := e.Value.(*mapping)
		c.order.Remove(e)
		delete(c.index, old.key)
		c.bytes -= old.lay.fileSize
		c.evictions++
		c.evictedBytes += old.lay.fileSize
		drop = append(drop, old)
	}
	c.mu.Unlock()
	for _, d := range drop {
		_ = d.release() // an unmap error leaves an unreachable mapping; nothing to do
	}
	return h, false
}

// remove drops k from the cache (after quarantine or GC).
func (c *lru) remove(k Key) {
	c.mu.Lock()
	e, ok := c.index[k]
	var m *mapping
	if ok {
		m = e.Value.(*mapping)
		c.order.Remove(e)
		delete(c.index, k)
		c.bytes -= m.lay.fileSize
	}
	c.mu.Unlock()
	if m != nil {
		_ = m.release()
	}
}

func (c *lru) clear() {
	c.mu.Lock()
	var all []*mapping
	for e := c.order.Front(); e != nil; e = e.Next() {
		all = append(all, e.Value.(*mapping))
	}
	c.order.Init()
	c.index = make(map[Key]*list.Element)
	c.bytes = 0
	c.mu.Unlock()
	for _, m := range all {
		_ = m.release()
	}
}

func (c *lru) stats(s *Stats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.CacheHits, s.CacheMisses = c.hits, c.misses
	s.Evictions, s.EvictedBytes = c.evictions, c.evictedBytes
	s.CacheBytes, s.CacheEntries, s.CacheCapacity = c.bytes, int64(len(c.index)), c.capacity
}

package s3store

import (
	"container/list"
	"context"
	"os"
	"sort"
	"sync"
	"time"

	"cacheclip/kvshards"
)

// diskLRU bounds the local tier's bytes. Its order starts from the files'
// modification times (touch sets them, so the order survives restarts) and
// follows uses after that. Removing a file another handle has mapped is safe:
// the mapping outlives the name.
type diskLRU struct {
	mu      sync.Mutex
	st      *kvshards.Store
	max     int64
	bytes   int64
	order   *list.List // front = most recent; values are *lruEntry
	idx     map[kvshards.Key]*list.Element
	pinned  func(kvshards.Key) bool // shards still to upload
	touched map[kvshards.Key]bool

	evictions, evictedBytes int64
}

type lruEntry struct {
	k    kvshards.Key
	size int64
}

func newDiskLRU(ctx context.Context, st *kvshards.Store, max int64, pinned func(kvshards.Key) bool) (*diskLRU, error) {
	c := &diskLRU{st: st, max: max, order: list.New(), idx: map[kvshards.Key]*list.Element{}, pinned: pinned, touched: map[kvshards.Key]bool{}}
	type found struct {
		k    kvshards.Key
		size int64
		t    time.Time
	}
	var all []found
	err := st.Walk(ctx, func(e kvshards.Entry) error {
		if e.Kind == kvshards.EntryShard {
			all = append(all, found{e.Key, e.Info.Size(), e.Info.ModTime()})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(all, func(i, j int) bool { return all[i].t.Before(all[j].t) })
	for _, f := range all {
		c.idx[f.k] = c.order.PushFront(&lruEntry{f.k, f.size})
		c.bytes += f.size
	}
	c.evict()
	return c, nil
}

// touch marks a use; the first use in this process also sets the file's
// modification time.
func (c *diskLRU) touch(k kvshards.Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.idx[k]; ok {
		c.order.MoveToFront(e)
	}
	if !c.touched[k] {
		c.touched[k] = true
		now := time.Now()
		_ = os.Chtimes(c.st.Path(k), now, now)
	}
}

// add records a shard written to the tier and evicts down to the bound.
func (c *diskLRU) add(k kvshards.Key, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.touched[k] = true
	if e, ok := c.idx[k]; ok {
		c.order.MoveToFront(e)
		c.bytes += size - e.Value.(*lruEntry).size
		e.Value.(*lruEntry).size = size
	} else {
		c.idx[k] = c.order.PushFront(&lruEntry{k, size})
		c.bytes += size
	}
	c.evict()
}

// evict removes least recently used shards until the bound holds, keeping
// the newest one (a shard larger than the bound is still usable once) and
// pinned ones. Called with mu held.
func (c *diskLRU) evict() {
	if c.max <= 0 {
		return
	}
	for e := c.order.Back(); e != nil && c.bytes > c.max && e != c.order.Front(); {
		prev := e.Prev()
		le := e.Value.(*lruEntry)
		if !c.pinned(le.k) {
			if err := c.st.Remove(le.k); err == nil {
				c.order.Remove(e)
				delete(c.idx, le.k)
				delete(c.touched, le.k)
				c.bytes -= le.size
				c.evictions++
				c.evictedBytes += le.size
			}
		}
		e = prev
	}
}

func (c *diskLRU) counters() (n, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.evictions, c.evictedBytes
}

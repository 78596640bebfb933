package gpu

import (
	"container/list"
	"fmt"
)

// byteLRU is an LRU of values bounded by the sum of their sizes in bytes. An
// entry in use (pinned by a load still in flight) is never evicted; Put evicts
// least recently used unpinned entries until the new one fits and returns them
// so the caller can free their device memory.
type byteLRU[V any] struct {
	capacity uint64
	used     uint64
	order    *list.List // front = most recent; elements hold *lruEntry[V]
	byKey    map[string]*list.Element
}

type lruEntry[V any] struct {
	key   string
	val   V
	bytes uint64
	pins  int
}

func newByteLRU[V any](capacity uint64) *byteLRU[V] {
	return &byteLRU[V]{capacity: capacity, order: list.New(), byKey: map[string]*list.Element{}}
}

// Used is the bytes held; Len the number of entries.
func (c *byteLRU[V]) Used() uint64 { return c.used }
func (c *byteLRU[V]) Len() int     { return len(c.byKey) }

// Get returns the value and pins it; the caller must Unpin it once done.
func (c *byteLRU[V]) Get(key string) (V, bool) {
	el, ok := c.byKey[key]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(el)
	e := el.Value.(*lruEntry[V])
	e.pins++
	return e.val, true
}

// Unpin releases one Get or Put.
func (c *byteLRU[V]) Unpin(key string) {
	if el, ok := c.byKey[key]; ok {
		if e := el.Value.(*lruEntry[V]); e.pins > 0 {
			e.pins--
		}
	}
}

// ErrNoRoom is returned when an entry cannot fit even after evicting every
// unpinned entry; the caller then uses the value without caching it.
type ErrNoRoom struct{ Need, Pinned, Capacity uint64 }

func (e *ErrNoRoom) Error() string {
	return fmt.Sprintf("device chunk cache: %d bytes do not fit (capacity %d, %d pinned by loads in flight)", e.Need, e.Capacity, e.Pinned)
}

// Put adds a pinned entry of the given size, evicting as needed. An existing key
// is replaced (its old value is among the evicted ones). Nothing is evicted when
// the entry cannot fit.
func (c *byteLRU[V]) Put(key string, val V, bytes uint64) (evicted []V, err error) {
	if el, ok := c.byKey[key]; ok {
		e := el.Value.(*lruEntry[V])
		if e.pins > 0 {
			return nil, fmt.Errorf("device chunk cache: %s replaced while in use", key)
		}
		c.order.Remove(el)
		delete(c.byKey, key)
		c.used -= e.bytes
		evicted = append(evicted, e.val)
	}
	var pinned uint64
	for el := c.order.Front(); el != nil; el = el.Next() {
		if e := el.Value.(*lruEntry[V]); e.pins > 0 {
			pinned += e.bytes
		}
	}
	if bytes > c.capacity || pinned+bytes > c.capacity {
		return evicted, &ErrNoRoom{Need: bytes, Pinned: pinned, Capacity: c.capacity}
	}
	for el := c.order.Back(); c.used+bytes > c.capacity && el != nil; {
		prev := el.Prev()
		e := el.Value.(*lruEntry[V])
		if e.pins == 0 {
			c.order.Remove(el)
			delete(c.byKey, e.key)
			c.used -= e.bytes
			evicted = append(evicted, e.val)
		}
		el = prev
	}
	c.byKey[key] = c.order.PushFront(&lruEntry[V]{key: key, val: val, bytes: bytes, pins: 1})
	c.used += bytes
	return evicted, nil
}

// Drain removes every entry (pinned or not) and returns the values.
func (c *byteLRU[V]) Drain() []V {
	var out []V
	for el := c.order.Front(); el != nil; el = el.Next() {
		out = append(out, el.Value.(*lruEntry[V]).val)
	}
	c.order.Init()
	c.byKey = map[string]*list.Element{}
	c.used = 0
	return out
}

// DropUnpinned removes every entry not in use and returns their values.
func (c *byteLRU[V]) DropUnpinned() []V {
	var out []V
	for el := c.order.Front(); el != nil; {
		next := el.Next()
		if e := el.Value.(*lruEntry[V]); e.pins == 0 {
			c.order.Remove(el)
			delete(c.byKey, e.key)
			c.used -= e.bytes
			out = append(out, e.val)
		}
		el = next
	}
	return out
}

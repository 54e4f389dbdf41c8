package zeoclient

import (
	"cmp"
	"container/list"
	"slices"
	"sync"

	"github.com/zeoraid/zeoraid/stack"
)

// entryOverhead is what one cached revision costs besides its data.
const entryOverhead = 64

// invalLogSize is how many recent invalidations the cache remembers to
// decide whether a load reply raced with one.
const invalLogSize = 256

// cache is the in-memory load cache, in the spirit of ZEO's client cache:
// per object the current revision (valid until an invalidation) and
// non-current revisions [serial, next), which never change. Objects are
// evicted least recently used first.
//
// Correctness rests on two rules. Invalidations are applied here before
// the commit is published to watchers (Storage.foreign, Txn.Finish). And a
// load reply is stored as current only if no invalidation of its object
// was applied since the load was sent: the reply may have been computed
// before a commit whose invalidation the reader goroutine has processed
// already (ZEO issue 155).
type cache struct {
	mu   sync.Mutex
	max  int64
	size int64
	objs map[stack.Oid]*list.Element // of *object
	lru  *list.List                  // front: most recent
	last stack.Tid                   // newest tid the cache knows of

	gen uint64       // invalidations applied so far
	log []invalEntry // the last invalLogSize of them, oldest first
}

type invalEntry struct {
	gen  uint64
	oids []stack.Oid // nil: everything
}

type object struct {
	oid stack.Oid
	cur *revision   // nil when unknown
	old []*revision // non-current, by serial
}

type revision struct {
	data         []byte
	serial, next stack.Tid // next 0: current
}

func newCache(max int64) *cache {
	return &cache{max: max, objs: map[stack.Oid]*list.Element{}, lru: list.New()}
}

func clone(b []byte) []byte { return append(make([]byte, 0, len(b)), b...) }

// generation returns a token for store: take it before sending a load.
func (c *cache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// load answers loadBefore(oid, before) from the cache. A current revision
// answers only a before the cache knows to be in the present (MaxTid or
// at most one past the last tid it has seen).
func (c *cache) load(oid stack.Oid, before stack.Tid) (stack.Revision, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.objs[oid]
	if !ok {
		return stack.Revision{}, false
	}
	o := el.Value.(*object)
	if r := o.cur; r != nil && r.serial < before && (before == stack.MaxTid || before <= c.last+1) {
		c.lru.MoveToFront(el)
		return stack.Revision{Data: clone(r.data), Serial: r.serial}, true
	}
	for _, r := range o.old {
		if r.serial < before && before <= r.next {
			c.lru.MoveToFront(el)
			return stack.Revision{Data: clone(r.data), Serial: r.serial, NextSerial: r.next}, true
		}
	}
	return stack.Revision{}, false
}

// knows reports whether the cache holds oid's revision serial.
func (c *cache) knows(oid stack.Oid, serial stack.Tid) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.objs[oid]
	if !ok {
		return false
	}
	o := el.Value.(*object)
	if o.cur != nil && o.cur.serial == serial {
		return true
	}
	for _, r := range o.old {
		if r.serial == serial {
			return true
		}
	}
	return false
}

// store keeps a loadBefore reply. gen is generation() from before the
// load was sent: a current revision is kept only if no invalidation of oid
// came since.
func (c *cache) store(oid stack.Oid, before stack.Tid, rev stack.Revision, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max <= 0 || rev.NextSerial == 0 && c.invalidatedSince(oid, gen) {
		return
	}
	o := c.object(oid)
	r := &revision{data: clone(rev.Data), serial: rev.Serial, next: rev.NextSerial}
	if rev.NextSerial == 0 {
		if o.cur != nil {
			if o.cur.serial >= rev.Serial {
				return
			}
			c.size -= int64(len(o.cur.data)) + entryOverhead
		}
		o.cur = r
	} else {
		for _, x := range o.old {
			if x.serial == r.serial {
				return
			}
		}
		o.old = append(o.old, r)
		slices.SortFunc(o.old, func(a, b *revision) int { return cmp.Compare(a.serial, b.serial) })
	}
	c.size += int64(len(r.data)) + entryOverhead
	c.evict()
}

// invalidatedSince reports whether an invalidation of oid was applied
// after generation gen (or the log no longer reaches back to it).
func (c *cache) invalidatedSince(oid stack.Oid, gen uint64) bool {
	if gen == c.gen {
		return false
	}
	if len(c.log) == 0 || c.log[0].gen > gen+1 {
		return true
	}
	for i := len(c.log) - 1; i >= 0 && c.log[i].gen > gen; i-- {
		if c.log[i].oids == nil || slices.Contains(c.log[i].oids, oid) {
			return true
		}
	}
	return false
}

func (c *cache) object(oid stack.Oid) *object {
	if el, ok := c.objs[oid]; ok {
		c.lru.MoveToFront(el)
		return el.Value.(*object)
	}
	o := &object{oid: oid}
	c.objs[oid] = c.lru.PushFront(o)
	return o
}

// resize changes the bound (cache-size changed by a reload), evicting
// what no longer fits; 0 empties the cache and keeps it empty.
func (c *cache) resize(max int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.max = max
	c.evict()
}

func (c *cache) evict() {
	for c.size > c.max && c.lru.Len() > 0 {
		el := c.lru.Back()
		c.remove(el)
	}
}

func (c *cache) remove(el *list.Element) {
	o := el.Value.(*object)
	if o.cur != nil {
		c.size -= int64(len(o.cur.data)) + entryOverhead
	}
	for _, r := range o.old {
		c.size -= int64(len(r.data)) + entryOverhead
	}
	c.lru.Remove(el)
	delete(c.objs, o.oid)
}

// invalidate applies the commit tid that changed oids. exact says that
// tid is the very commit that changed them, so a current revision becomes
// the non-current [serial, tid); otherwise (a catch-up that merged several
// commits) it is dropped.
func (c *cache) invalidate(tid stack.Tid, oids []stack.Oid, exact bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.record(append([]stack.Oid{}, oids...))
	if tid > c.last {
		c.last = tid
	}
	for _, oid := range oids {
		el, ok := c.objs[oid]
		if !ok {
			continue
		}
		o := el.Value.(*object)
		if o.cur == nil || o.cur.serial >= tid {
			continue
		}
		if exact {
			o.cur.next = tid
			o.old = append(o.old, o.cur)
		} else {
			c.size -= int64(len(o.cur.data)) + entryOverhead
		}
		o.cur = nil
	}
}

// committed applies the node's own commit tid, which wrote data[oid] for
// each oid of data and changed every oid of oids: as invalidate, and then
// the written data becomes the current revision of its object, as ZEO's
// ClientStorage keeps what it committed. A later store then finds the
// serial it is given here, without asking the server whether the object
// exists. Nothing is kept when the cache already knows of a later commit
// (an invalidation that overtook the tpc_finish reply): it may have
// changed these objects.
func (c *cache) committed(tid stack.Tid, oids []stack.Oid, data map[stack.Oid][]byte) {
	c.invalidate(tid, oids, true)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max <= 0 || c.last != tid {
		return
	}
	for oid, d := range data {
		o := c.object(oid)
		if o.cur != nil {
			if o.cur.serial >= tid {
				continue
			}
			c.size -= int64(len(o.cur.data)) + entryOverhead
		}
		o.cur = &revision{data: clone(d), serial: tid}
		c.size += int64(len(d)) + entryOverhead
	}
	c.evict()
}

func (c *cache) record(oids []stack.Oid) {
	c.gen++
	c.log = append(c.log, invalEntry{gen: c.gen, oids: oids})
	if len(c.log) > invalLogSize {
		c.log = slices.Delete(c.log, 0, len(c.log)-invalLogSize)
	}
}

// setLast records the server's tid at (re)connection.
func (c *cache) setLast(tid stack.Tid) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tid > c.last {
		c.last = tid
	}
}

// rewind forgets everything and takes tid as the last transaction: the
// server was replaced by one that is behind.
func (c *cache) rewind(tid stack.Tid) {
	c.clear()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = tid
}

// clear forgets everything.
func (c *cache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.record(nil)
	c.objs = map[stack.Oid]*list.Element{}
	c.lru.Init()
	c.size = 0
}

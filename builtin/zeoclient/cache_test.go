package zeoclient

import (
	"testing"

	"github.com/zeoraid/zeoraid/stack"
)

func TestCacheCurrentAndHistorical(t *testing.T) {
	c := newCache(1 << 20)
	c.setLast(10)
	c.store(1, stack.MaxTid, stack.Revision{Data: []byte("a"), Serial: 5}, c.generation())
	if r, ok := c.load(1, stack.MaxTid); !ok || string(r.Data) != "a" || r.Serial != 5 || r.NextSerial != 0 {
		t.Fatalf("current = %+v, %v", r, ok)
	}
	if _, ok := c.load(1, 5); ok {
		t.Fatal("a revision served for a before not after its serial")
	}
	if _, ok := c.load(1, 20); ok {
		t.Fatal("a current revision served for a before beyond the last known tid")
	}
	c.invalidate(12, []stack.Oid{1}, true)
	if _, ok := c.load(1, stack.MaxTid); ok {
		t.Fatal("invalidated revision still current")
	}
	if r, ok := c.load(1, 12); !ok || r.Serial != 5 || r.NextSerial != 12 {
		t.Fatalf("revision before the invalidation = %+v, %v; want [5, 12)", r, ok)
	}
	if _, ok := c.load(1, 13); ok {
		t.Fatal("non-current revision served past its end")
	}
	// A catch-up that merged commits drops the current revision instead.
	c.store(2, stack.MaxTid, stack.Revision{Data: []byte("b"), Serial: 6}, c.generation())
	c.invalidate(30, []stack.Oid{2}, false)
	if _, ok := c.load(2, 30); ok {
		t.Fatal("a merged invalidation made up an end tid")
	}
}

// TestCacheRaceWithInvalidation is ZEO issue 155 from the client side: a
// load reply computed before a commit, stored after that commit's
// invalidation was applied, must not become the current revision.
func TestCacheRaceWithInvalidation(t *testing.T) {
	c := newCache(1 << 20)
	gen := c.generation()                    // the load is sent
	c.invalidate(7, []stack.Oid{1}, true)    // the reader applies commit 7
	c.store(1, stack.MaxTid, stack.Revision{ // the (stale) reply is stored
		Data: []byte("old"), Serial: 3}, gen)
	if r, ok := c.load(1, stack.MaxTid); ok {
		t.Fatalf("stale reply cached as current: %+v", r)
	}
	// An invalidation of another object does not stop caching.
	gen = c.generation()
	c.invalidate(8, []stack.Oid{2}, true)
	c.store(1, stack.MaxTid, stack.Revision{Data: []byte("new"), Serial: 7}, gen)
	if r, ok := c.load(1, stack.MaxTid); !ok || r.Serial != 7 {
		t.Fatalf("reply not cached: %+v %v", r, ok)
	}
	// Historical revisions are immutable and always cached.
	gen = c.generation()
	c.invalidate(9, []stack.Oid{3}, true)
	c.store(3, 5, stack.Revision{Data: []byte("h"), Serial: 2, NextSerial: 4}, gen)
	if r, ok := c.load(3, 4); !ok || r.Serial != 2 {
		t.Fatalf("historical revision not cached: %+v %v", r, ok)
	}
	// When the log no longer reaches back, nothing is cached as current.
	gen = c.generation()
	for i := 0; i < invalLogSize+1; i++ {
		c.invalidate(stack.Tid(100+i), []stack.Oid{99}, true)
	}
	c.store(4, stack.MaxTid, stack.Revision{Data: []byte("x"), Serial: 50}, gen)
	if _, ok := c.load(4, stack.MaxTid); ok {
		t.Fatal("cached as current although the invalidation log was overrun")
	}
}

func TestCacheEvictsAndCopies(t *testing.T) {
	c := newCache(3 * (100 + entryOverhead))
	for oid := stack.Oid(1); oid <= 5; oid++ {
		c.store(oid, stack.MaxTid, stack.Revision{Data: make([]byte, 100), Serial: 1}, c.generation())
	}
	if c.size > c.max || c.lru.Len() != 3 {
		t.Fatalf("size %d of %d with %d objects", c.size, c.max, c.lru.Len())
	}
	if _, ok := c.load(1, stack.MaxTid); ok {
		t.Fatal("least recently used object not evicted")
	}
	r, _ := c.load(5, stack.MaxTid)
	r.Data[0] = 'X'
	if r2, _ := c.load(5, stack.MaxTid); r2.Data[0] != 0 {
		t.Fatal("a load handed out the cache's own bytes")
	}
	c.clear()
	if c.size != 0 || c.lru.Len() != 0 {
		t.Fatal("clear left entries")
	}
}

// TestCacheOwnCommit: the node's own commit leaves what it wrote as the
// current revision (so a later store of it needs no existence check),
// unless an invalidation of a later commit overtook the tpc_finish reply.
func TestCacheOwnCommit(t *testing.T) {
	c := newCache(1 << 20)
	c.setLast(10)
	c.store(1, stack.MaxTid, stack.Revision{Data: []byte("old"), Serial: 5}, c.generation())
	c.committed(12, []stack.Oid{1, 2, 3}, map[stack.Oid][]byte{1: []byte("new"), 2: []byte("two")})
	if r, ok := c.load(1, stack.MaxTid); !ok || string(r.Data) != "new" || r.Serial != 12 {
		t.Fatalf("oid 1 after the own commit = %+v, %v; want new at 12", r, ok)
	}
	if r, ok := c.load(1, 12); !ok || string(r.Data) != "old" || r.NextSerial != 12 {
		t.Fatalf("oid 1 before the own commit = %+v, %v; want old [5, 12)", r, ok)
	}
	if !c.knows(2, 12) || c.knows(3, 12) {
		t.Fatalf("knows(2, 12) = %v, knows(3, 12) = %v; want true (written), false (deleted or undone)", c.knows(2, 12), c.knows(3, 12))
	}
	// A later commit's invalidation applied first: nothing is kept.
	c.invalidate(20, []stack.Oid{4}, true)
	c.committed(15, []stack.Oid{4}, map[stack.Oid][]byte{4: []byte("stale")})
	if c.knows(4, 15) {
		t.Fatal("an own commit overtaken by a later invalidation was cached")
	}
	// A cache of size 0 keeps nothing.
	z := newCache(0)
	z.committed(12, []stack.Oid{1}, map[stack.Oid][]byte{1: []byte("x")})
	if z.knows(1, 12) {
		t.Fatal("a disabled cache kept an own commit")
	}
}

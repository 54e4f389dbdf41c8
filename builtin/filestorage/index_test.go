package filestorage

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/zeoraid/zeoraid/stack"
)

// indexOf builds an index holding m.
func indexOf(m map[stack.Oid]int64) *index {
	ix := newIndex()
	for oid, pos := range m {
		ix.set(oid, pos)
	}
	return ix
}

// indexMap lists ix as a map.
func indexMap(ix *index) map[stack.Oid]int64 {
	m := map[stack.Oid]int64{}
	for oid, pos := range ix.all() {
		m[oid] = pos
	}
	return m
}

// TestIndexOrdered: whatever the insertion order, the index keeps oids
// ordered (all, ceil, maxOid) and overwrites in place.
func TestIndexOrdered(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	want := map[stack.Oid]int64{}
	ix := newIndex()
	for i := 0; i < 20000; i++ {
		oid := stack.Oid(rng.Uint64N(1 << 20))
		if i%7 == 0 {
			oid = stack.Oid(rng.Uint64())
		}
		pos := rng.Int64N(1 << 48)
		ix.set(oid, pos)
		want[oid] = pos
	}
	if ix.len() != len(want) || !maps.Equal(indexMap(ix), want) {
		t.Fatalf("index holds %d oids, want %d", ix.len(), len(want))
	}
	sorted := slices.Sorted(maps.Keys(want))
	var got []stack.Oid
	for oid := range ix.all() {
		got = append(got, oid)
	}
	if !slices.Equal(got, sorted) {
		t.Fatalf("all() is not in ascending order")
	}
	if ix.maxOid() != sorted[len(sorted)-1] {
		t.Errorf("maxOid %s, want %s", ix.maxOid(), sorted[len(sorted)-1])
	}
	for k := 0; k < 2000; k++ {
		from := stack.Oid(rng.Uint64N(1 << 21))
		i, _ := slices.BinarySearch(sorted, from)
		oid, pos, ok := ix.ceil(from)
		if ok != (i < len(sorted)) || (ok && (oid != sorted[i] || pos != want[oid])) {
			t.Fatalf("ceil(%s) = %s, %d, %v", from, oid, pos, ok)
		}
	}
	for k := 0; k < 2000; k++ {
		oid := stack.Oid(rng.Uint64N(1 << 20))
		pos, ok := ix.get(oid)
		if wp, wok := want[oid]; ok != wok || pos != wp {
			t.Fatalf("get(%s) = %d, %v; want %d, %v", oid, pos, ok, wp, wok)
		}
	}
}

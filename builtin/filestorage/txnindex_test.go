package filestorage

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/stack"
)

func walkOids(t *testing.T, s *Storage) []stack.Oid {
	t.Helper()
	var got []stack.Oid
	ctx := context.Background()
	for from, more := stack.Oid(0), true; more; {
		rec, next, m, err := s.RecordIterNext(ctx, from)
		must(t, err)
		got = append(got, rec.Oid)
		from, more = next, m
	}
	return got
}

// TestRecordIterNextFollowsChanges: the ordered oid list picks up oids
// that commits add after it was built, skips deleted objects, and is
// rebuilt after a pack.
func TestRecordIterNextFollowsChanges(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "Data.fs"), Options{}, nil)
	must(t, err)
	defer s.Close()
	serials := map[stack.Oid]stack.Tid{}
	put := func(oids ...stack.Oid) {
		tid := commit(t, s, stack.TxnMeta{}, func(tx stack.Txn) {
			for _, oid := range oids {
				must(t, tx.Store(ctx, oid, serials[oid], statePickle(fmt.Sprint(oid))))
			}
		})
		for _, oid := range oids {
			serials[oid] = tid
		}
	}
	put(0, 9, 3, 5)
	if got := walkOids(t, s); !slices.Equal(got, []stack.Oid{0, 3, 5, 9}) {
		t.Fatalf("walk %v", got)
	}
	put(12, 1, 7)
	commit(t, s, stack.TxnMeta{}, func(tx stack.Txn) { must(t, tx.(stack.DeleteTxn).Delete(ctx, 5, serials[5])) })
	if got := walkOids(t, s); !slices.Equal(got, []stack.Oid{0, 1, 3, 7, 9, 12}) {
		t.Fatalf("walk after commits %v", got)
	}
	if _, _, _, err := s.RecordIterNext(ctx, 13); !isNotFound(err) {
		t.Errorf("RecordIterNext past the last oid: %v", err)
	}
	time.Sleep(2 * time.Millisecond)
	must(t, s.Pack(ctx, time.Now(), false))
	put(4)
	if got := walkOids(t, s); !slices.Equal(got, []stack.Oid{0, 1, 3, 4, 7, 9, 12}) {
		t.Fatalf("walk after pack %v", got)
	}
}

// TestRestoreFindsOldTransactions: Restore with a prevTxn further back
// than the walk from the end writes a backpointer through the tid list,
// also for transactions committed after the list was built.
func TestRestoreFindsOldTransactions(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "Data.fs"), Options{}, nil)
	must(t, err)
	defer s.Close()
	var tids []stack.Tid
	var serial stack.Tid
	for i := 0; i < 3*recentTxns; i++ {
		serial = commit(t, s, stack.TxnMeta{}, func(tx stack.Txn) {
			must(t, tx.Store(ctx, 1, serial, statePickle(fmt.Sprint(i))))
		})
		tids = append(tids, serial)
	}
	restore := func(i int) {
		t.Helper()
		commit(t, s, stack.TxnMeta{}, func(tx stack.Txn) {
			must(t, tx.(stack.RestoreTxn).Restore(ctx, 1, statePickle(fmt.Sprint(i)), tids[i]))
		})
		s.mu.RLock()
		h, err := s.rd.dataHeader(s.ix.pos(1))
		s.mu.RUnlock()
		must(t, err)
		if h.plen != 0 || h.back == 0 {
			t.Fatalf("restore of revision %d wrote inline data, want a backpointer", i)
		}
		bh, err := s.rd.dataHeader(h.back)
		must(t, err)
		if bh.tid != tids[i] {
			t.Fatalf("backpointer names %s, want %s", bh.tid, tids[i])
		}
	}
	restore(1)                // builds the list
	restore(2*recentTxns - 5) // in the list as built
	serial = s.ltid
	for i := 3 * recentTxns; i < 5*recentTxns; i++ {
		serial = commit(t, s, stack.TxnMeta{}, func(tx stack.Txn) {
			must(t, tx.Store(ctx, 1, serial, statePickle(fmt.Sprint(i))))
		})
		tids = append(tids, serial)
	}
	restore(3*recentTxns + 2) // appended by Finish after the list was built
	restore(0)
}

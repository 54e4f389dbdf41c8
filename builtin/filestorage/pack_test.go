package filestorage

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/stack"
)

const packed145 = `46533330 03f594581ddddddd 0000000000000085 70 0000 0004 0000 756e646f
0000000000000000 03f594581ddddddd 0000000000000000 0000000000000004 0000 0000000000000040`

var t0 = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func TestPackVector(t *testing.T) {
	path := writeExample(t, t.TempDir())
	orig, _ := os.ReadFile(path)
	ctx := context.Background()
	s, err := Open(path, Options{PackKeepOld: true, PackGC: true}, nil)
	must(t, err)
	defer s.Close()
	must(t, s.Pack(ctx, t0.Add(1500*time.Millisecond), true))
	if b, _ := os.ReadFile(path); !bytes.Equal(b, orig) {
		t.Fatalf("pack between T1 and T2 changed the file")
	}
	must(t, s.Pack(ctx, t0.Add(3*time.Second), true))
	b, _ := os.ReadFile(path)
	want := append(unhex(packed145), emptyRoot...)
	want = append(want, unhex("0000000000000085")...)
	if !bytes.Equal(b, want) {
		t.Fatalf("packed file\n got % x\nwant % x", b, want)
	}
	if old, _ := os.ReadFile(path + ".old"); !bytes.Equal(old, orig) {
		t.Errorf("Data.fs.old is not the original")
	}
	r, err := s.LoadBefore(ctx, 0, stack.MaxTid)
	must(t, err)
	if r.Serial != tid3 || !bytes.Equal(r.Data, emptyRoot) {
		t.Errorf("load after pack %+v", r)
	}
	if _, err := s.LoadBefore(ctx, 1, stack.MaxTid); !isNotFound(err) {
		t.Errorf("oid 1 after pack: %v", err)
	}
	if ix, _ := os.ReadFile(path + ".index"); !bytes.Equal(ix, encodeIndex(145, indexOf(map[stack.Oid]int64{0: 31}))) {
		t.Errorf("index after pack % x", ix)
	}
	// A commit after the pack appends to the packed file.
	commit(t, s, stack.TxnMeta{}, func(tx stack.Txn) { must(t, tx.Store(ctx, 0, tid3, rootWith1)) })
	ul, err := s.UndoLog(ctx, 0, 20, nil)
	must(t, err)
	if len(ul) != 1 {
		t.Errorf("undoLog after pack shows %d entries, want 1 (stops at 'p')", len(ul))
	}
}

// TestPackDanglingReference: a root that references an oid never stored
// makes Python's GC pack raise KeyError; ours packs, keeping what the
// root reaches and dropping the rest.
func TestPackDanglingReference(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "Data.fs"), Options{PackGC: true}, nil)
	must(t, err)
	defer s.Close()
	t1 := commit(t, s, stack.TxnMeta{}, func(tx stack.Txn) {
		must(t, tx.Store(ctx, 0, 0, statePickle("root", 1, 5)))
		must(t, tx.Store(ctx, 1, 0, statePickle("one")))
		must(t, tx.Store(ctx, 2, 0, statePickle("unreachable")))
	})
	commit(t, s, stack.TxnMeta{}, func(tx stack.Txn) {
		must(t, tx.Store(ctx, 1, t1, statePickle("one, again")))
	})
	time.Sleep(2 * time.Millisecond)
	must(t, s.Pack(ctx, time.Now(), true))
	for oid, want := range map[stack.Oid][]byte{0: statePickle("root", 1, 5), 1: statePickle("one, again")} {
		r, err := s.LoadBefore(ctx, oid, stack.MaxTid)
		if err != nil || !bytes.Equal(r.Data, want) {
			t.Errorf("oid %d after pack: %v", oid, err)
		}
	}
	if _, err := s.LoadSerial(ctx, 1, t1); !isNotFound(err) {
		t.Errorf("oid 1's old revision survived the pack: %v", err)
	}
	if _, err := s.LoadBefore(ctx, 2, stack.MaxTid); !isNotFound(err) {
		t.Errorf("unreachable oid 2 survived the pack: %v", err)
	}
}

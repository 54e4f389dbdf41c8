package filestorage

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/zeoraid/zeoraid/stack"
)

// TestBulkRestore: transactions restored in bulk are visible when their
// Finish returns, durable after SyncBulk, and the same as those restored
// one by one; stack.RestoreTransactions uses the bulk path.
func TestBulkRestore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src, err := Open(filepath.Join(dir, "src.fs"), Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var serial stack.Tid
	for i := range 10 {
		tx, err := src.Begin(ctx, stack.TxnMeta{Description: []byte(fmt.Sprint(i))})
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Store(ctx, 1, serial, []byte(fmt.Sprint("rev ", i))); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Vote(ctx); err != nil {
			t.Fatal(err)
		}
		if serial, err = tx.Finish(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var recs []stack.TxnRecord
	ti, err := src.Iterate(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for {
		rec, ok, err := ti.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		recs = append(recs, rec)
	}
	ti.Close()
	path := filepath.Join(dir, "dst.fs")
	dst, err := Open(path, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := stack.AsBulkRestorer(dst); !ok {
		t.Fatal("a filestorage is no BulkRestorer")
	}
	n, _, err := stack.RestoreTransactions(ctx, src, dst, recs[:6], nil)
	if err != nil || n != 6 {
		t.Fatalf("RestoreTransactions = %d, %v", n, err)
	}
	if last, _ := dst.LastTransaction(ctx); last != recs[5].Tid {
		t.Fatalf("last after the bulk = %s, want %s", last, recs[5].Tid)
	}
	// One by one through the bulk interface, then reopened.
	for _, rec := range recs[6:] {
		tx, err := dst.BeginBulk(ctx, rec.TxnMeta)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range rec.Records {
			if err := tx.(stack.RestoreTxn).Restore(ctx, d.Oid, d.Data, d.DataTxn); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tx.Vote(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Finish(ctx); err != nil {
			t.Fatal(err)
		}
		if rev, err := dst.LoadBefore(ctx, 1, stack.MaxTid); err != nil || rev.Serial != rec.Tid {
			t.Fatalf("load after a bulk finish = %+v, %v; want the revision of %s", rev, err, rec.Tid)
		}
	}
	if err := dst.SyncBulk(ctx); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	if err := dst.SyncBulk(ctx); err == nil {
		t.Fatal("SyncBulk on a closed storage succeeded")
	}
	dst, err = Open(path, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	res, err := stack.CompareHistories(ctx, src, dst, 0, 0, 0)
	if err != nil || res.Diff != nil || res.Transactions != len(recs) {
		t.Fatalf("compare after reopening: %+v %v", res, err)
	}
}

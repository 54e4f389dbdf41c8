package raidstorage_test

import (
	"context"
	"strings"
	"testing"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/stack"
)

// liar reports every capability of its mappingstorage, but its
// transactions are bare stack.Txns: deleteObject, restore, undo are
// missing behind the capabilities it claims.
type liar struct{ *mappingstorage.Storage }

func (l liar) Begin(ctx context.Context, meta stack.TxnMeta) (stack.Txn, error) {
	t, err := l.Storage.Begin(ctx, meta)
	if err != nil {
		return nil, err
	}
	return struct{ stack.Txn }{t}, nil
}

// deleteThrough deletes oid through the RAID r.
func deleteThrough(t *testing.T, r stack.Storage, oid stack.Oid) (stack.Tid, error) {
	t.Helper()
	ctx := ctxT(t)
	rev, err := r.LoadBefore(ctx, oid, stack.MaxTid)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := r.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.(stack.DeleteTxn).Delete(ctx, oid, rev.Serial); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Vote(ctx); err != nil {
		tx.Abort(ctx)
		return 0, err
	}
	return tx.Finish(ctx)
}

// A child whose transaction lacks a capability it reports is degraded as
// a failure naming it; the commit goes on with the others.
func TestChildMisreportingATxnCapability(t *testing.T) {
	good, bad := mapping(), mapping()
	r, _ := newRAID(t, opts(), good, liar{bad})
	commit(t, r, "x", 1)
	if _, err := deleteThrough(t, r, 1); err != nil {
		t.Fatalf("the commit failed with the good child optimal: %v", err)
	}
	wantState(t, r, "2", raidstorage.Degraded, `deleteObject failed: child "2" reports a capability it does not implement: no stack.DeleteTxn`)
	wantState(t, r, "1", raidstorage.Optimal, "")
}

// Alone, such a child fails the commit cleanly: the error says which
// child lacks what.
func TestOnlyChildMisreportingATxnCapability(t *testing.T) {
	r, _ := newRAID(t, opts(), liar{mapping()})
	commit(t, r, "x", 1)
	_, err := deleteThrough(t, r, 1)
	if err == nil || !stack.IsBackendFailure(err) || !strings.Contains(err.Error(), `child "1" reports a capability it does not implement: no stack.DeleteTxn`) {
		t.Fatalf("vote: %v", err)
	}
	if st := r.Status(); st != raidstorage.StatusFailed {
		t.Fatalf("status %s", st)
	}
}

// A storage that reports capabilities its type lacks is refused at Open.
func TestChildMisreportingAStorageCapability(t *testing.T) {
	bare := struct{ stack.Storage }{mapping()} // no Iterator, Undoer, ...
	_, err := raidstorage.Open(context.Background(), raidstorage.Config{Path: "main", Names: []string{"1", "2"},
		Children: []stack.Storage{mapping(), bare}, Options: opts()})
	want := `child "2" reports a capability it does not implement: no stack.Iterator, stack.RecordIterator, stack.Undoer, stack.Packer`
	if err == nil || err.Error() != want {
		t.Fatalf("open: %v", err)
	}
}

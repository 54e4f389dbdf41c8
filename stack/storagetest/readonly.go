package storagetest

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/stack"
)

// errNoInterface says that a read-only storage's Txn lacks the interface
// of a write path, so there is nothing to refuse on that path.
var errNoInterface = errors.New("the Txn lacks the interface")

// tryWrite runs one whole transaction whose writes are do, and returns its
// tid, or the first error (after aborting).
func tryWrite(t *testing.T, s stack.Storage, meta stack.TxnMeta, do func(stack.Txn) error) (stack.Tid, error) {
	t.Helper()
	ctx := ctxOf(t)
	txn, err := s.Begin(ctx, meta)
	if err != nil {
		return 0, err
	}
	fail := func(err error) (stack.Tid, error) {
		_ = txn.Abort(ctx)
		return 0, err
	}
	if err := do(txn); err != nil {
		return fail(err)
	}
	if _, err := txn.Vote(ctx); err != nil {
		return fail(err)
	}
	tid, err := txn.Finish(ctx)
	if err != nil {
		return fail(err)
	}
	return tid, nil
}

// testReadOnly writes a small history (a root, two revisions of an
// object, a blob when the backend has blobs), closes the storage, reopens
// its data read-only through Harness.ReadOnly and checks that every read
// sees that history and every write path fails with ErrReadOnly, leaving
// it unchanged.
func testReadOnly(t *testing.T, h Harness) {
	if h.ReadOnly == nil {
		t.Skip("no Harness.ReadOnly: the backend cannot reopen its data read-only")
	}
	w := h.Open(t)
	t.Cleanup(func() { _ = w.Close() })
	t1 := commit(t, w, op{oid: 0, data: record("root", 1)}, st(1, 0, "a1"))
	t2 := commit(t, w, st(1, t1, "a2"))
	tids := []stack.Tid{t1, t2}
	withBlobs := w.Capabilities().Blobs
	var tb stack.Tid
	if withBlobs {
		var err error
		if tb, err = commitBlob(t, w, 2, 0, "read-only blob"); err != nil {
			t.Fatal(err)
		}
		tids = append(tids, tb)
	}
	last := tids[len(tids)-1]
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s := h.ReadOnly(t, w)
	t.Cleanup(func() { _ = s.Close() })
	ctx := ctxOf(t)
	caps := s.Capabilities()
	if !caps.ReadOnly {
		t.Errorf("a storage reopened read-only does not report the ReadOnly capability")
	}

	// Everything written is there.
	unchanged := func() {
		t.Helper()
		wantData(t, s, 1, "a2", t2)
		wantNotFound(t, s, 3)
		if got, err := s.LastTransaction(ctx); err != nil || got != last {
			t.Fatalf("read-only LastTransaction = %s, %v; want %s", got, err, last)
		}
	}
	unchanged()
	wantData(t, s, 0, string(record("root", 1)), t1)
	if r, err := s.LoadBefore(ctx, 1, t2); err != nil || string(r.Data) != "a1" || r.Serial != t1 || r.NextSerial != t2 {
		t.Errorf("read-only LoadBefore(1, t2) = %+v, %v; want a1 from t1 up to t2", r, err)
	}
	if d, err := s.LoadSerial(ctx, 1, t1); err != nil || string(d) != "a1" {
		t.Errorf("read-only LoadSerial(1, t1) = %q, %v", d, err)
	}
	if hist, err := s.History(ctx, 1, 10); err != nil || len(hist) != 2 || hist[0].Tid != t2 || hist[1].Tid != t1 {
		t.Errorf("read-only History(1) = %+v, %v; want t2 then t1", hist, err)
	}
	if _, ok := stack.AsIterator(s); ok {
		var got []stack.Tid
		for _, rec := range iterateAll(t, s, 0, 0) {
			got = append(got, rec.Tid)
		}
		if !slices.Equal(got, tids) {
			t.Errorf("read-only Iterate = %v, want %v", got, tids)
		}
	}
	if ri, ok := stack.AsRecordIterator(s); ok {
		if rec, _, _, err := ri.RecordIterNext(ctx, 1); err != nil || rec.Oid != 1 || string(rec.Data) != "a2" || rec.Tid != t2 {
			t.Errorf("read-only RecordIterNext(1) = %+v, %v; want a2 of t2", rec, err)
		}
	}
	var undoID []byte
	if u, ok := stack.AsUndoer(s); ok {
		log, err := u.UndoLog(ctx, 0, -10, nil)
		if err != nil || len(log) != len(tids) || log[0].Tid != last {
			t.Errorf("read-only UndoLog = %+v, %v; want %d entries, %s first", log, err, len(tids), last)
		} else {
			undoID = log[0].ID
		}
	}
	if withBlobs {
		if _, ok := stack.AsBlobber(s); !ok {
			t.Errorf("reopened read-only, the storage lost its Blobs capability")
		} else {
			wantBlob(t, s, 2, tb, "read-only blob")
		}
	}

	// Every write path is refused with ErrReadOnly and changes nothing.
	refused := func(what string, err error) {
		t.Helper()
		switch {
		case errors.Is(err, errNoInterface):
		case err == nil:
			t.Errorf("%s committed on a read-only storage", what)
		case !errors.Is(err, stack.ErrReadOnly):
			t.Errorf("%s on a read-only storage: %v, want ErrReadOnly", what, err)
		}
	}
	write := func(what string, meta stack.TxnMeta, do func(stack.Txn) error) {
		t.Helper()
		_, err := tryWrite(t, s, meta, do)
		refused(what, err)
	}
	store := func(oid stack.Oid, serial stack.Tid, data string) func(stack.Txn) error {
		return func(txn stack.Txn) error { return txn.Store(ctx, oid, serial, []byte(data)) }
	}
	// explicit is a tid after the last one, as a copy or a restore gives.
	explicit := func() stack.TxnMeta {
		t.Helper()
		now, err := s.LastTransaction(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return stack.TxnMeta{Tid: now + 1000}
	}
	write("an empty transaction", stack.TxnMeta{}, func(stack.Txn) error { return nil })
	write("Store of a new revision", stack.TxnMeta{}, store(1, t2, "written"))
	write("Store of a new object", stack.TxnMeta{}, store(3, 0, "written"))
	write("Store with an explicit tid", explicit(), store(1, t2, "written"))
	write("Delete", stack.TxnMeta{}, func(txn stack.Txn) error {
		if dt, ok := txn.(stack.DeleteTxn); ok {
			return dt.Delete(ctx, 1, t2)
		}
		return errNoInterface
	})
	write("Restore", explicit(), func(txn stack.Txn) error {
		if rt, ok := txn.(stack.RestoreTxn); ok {
			return rt.Restore(ctx, 3, []byte("restored"), 0)
		}
		return errNoInterface
	})
	if undoID != nil {
		write("Undo", stack.TxnMeta{}, func(txn stack.Txn) error {
			if ut, ok := txn.(stack.UndoTxn); ok {
				_, err := ut.Undo(ctx, undoID)
				return err
			}
			return errNoInterface
		})
	}
	blobFile := func() string {
		p := filepath.Join(t.TempDir(), "upload.tmp")
		if err := os.WriteFile(p, []byte("written"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("StoreBlob", stack.TxnMeta{}, func(txn stack.Txn) error {
		if bt, ok := txn.(stack.BlobTxn); ok {
			return bt.StoreBlob(ctx, 3, 0, blobRecord, blobFile())
		}
		return errNoInterface
	})
	write("RestoreBlob", explicit(), func(txn stack.Txn) error {
		if bt, ok := txn.(stack.BlobTxn); ok {
			return bt.RestoreBlob(ctx, 3, blobRecord, blobFile(), 0)
		}
		return errNoInterface
	})
	if p, ok := stack.AsPacker(s); ok {
		refused("Pack", p.Pack(ctx, t2.Time().Add(time.Millisecond), true))
	}
	// ZODB's read-only storages refuse new_oid; handing oids out changes
	// no data, so a storage may also allow it.
	if oids, err := s.NewOIDs(ctx, 5); err != nil && !errors.Is(err, stack.ErrReadOnly) {
		t.Errorf("NewOIDs on a read-only storage: %v, want oids or ErrReadOnly", err)
	} else if err == nil && len(oids) != 5 {
		t.Errorf("NewOIDs(5) on a read-only storage = %v", oids)
	}
	unchanged()
	if d, err := s.LoadSerial(ctx, 1, t1); err != nil || string(d) != "a1" {
		t.Errorf("after the refused writes, LoadSerial(1, t1) = %q, %v", d, err)
	}
}

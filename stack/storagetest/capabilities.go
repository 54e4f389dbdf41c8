package storagetest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/stack"
)

// testCapabilities checks that Capabilities tells the truth both ways. A
// reported capability comes with its interface. An interface that the
// storage or its Txn implements without reporting the capability must
// refuse a valid call, one a storage with the capability would carry out,
// so that the groups skipped for a missing capability are skipped only
// when it is really missing.
func testCapabilities(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxOf(t)
	caps := s.Capabilities()
	if caps.ReadOnly {
		t.Fatal("Harness.Open returned a read-only storage; the ReadOnly group gets one from Harness.ReadOnly")
	}
	works := func(what string) {
		t.Helper()
		t.Errorf("%s works although its capability is not reported", what)
	}
	_, isIterator := s.(stack.Iterator)
	_, isRecordIterator := s.(stack.RecordIterator)
	_, isUndoer := s.(stack.Undoer)
	_, isPacker := s.(stack.Packer)
	_, isBlobber := s.(stack.Blobber)
	for _, c := range []struct {
		name          string
		reported, has bool
		interfaceN    string
	}{
		{"Iterate", caps.Iterate, isIterator, "Iterator"},
		{"RecordIter", caps.RecordIter, isRecordIterator, "RecordIterator"},
		{"Undo", caps.Undo, isUndoer, "Undoer"},
		{"Pack", caps.Pack, isPacker, "Packer"},
		{"Blobs", caps.Blobs, isBlobber, "Blobber"},
	} {
		if c.reported && !c.has {
			t.Errorf("%s reported but the storage is no %s", c.name, c.interfaceN)
		}
	}
	txn, err := s.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		t.Fatal(err)
	}
	_, isRestoreTxn := txn.(stack.RestoreTxn)
	_, isUndoTxn := txn.(stack.UndoTxn)
	_, isDeleteTxn := txn.(stack.DeleteTxn)
	_, isBlobTxn := txn.(stack.BlobTxn)
	if err := txn.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name          string
		reported, has bool
		interfaceN    string
	}{
		{"Restore", caps.Restore, isRestoreTxn, "RestoreTxn"},
		{"Undo", caps.Undo, isUndoTxn, "UndoTxn"},
		{"Delete", caps.Delete, isDeleteTxn, "DeleteTxn"},
		{"Blobs", caps.Blobs, isBlobTxn, "BlobTxn"},
	} {
		if c.reported && !c.has {
			t.Errorf("%s reported but the Txn is no %s", c.name, c.interfaceN)
		}
	}

	// A history for the valid calls: oid 1 has two revisions and is
	// reachable from the root (for pack), oid 4 was created last (for
	// undo).
	t1 := commit(t, s, op{oid: 0, data: record("root", 1)}, op{oid: 1, data: record("a1")})
	t2 := commit(t, s, op{oid: 1, serial: t1, data: record("a2")})
	t3 := commit(t, s, op{oid: 4, data: record("undo me")})
	if it, ok := s.(stack.Iterator); ok && !caps.Iterate {
		if ti, err := it.Iterate(ctx, 0, 0); err == nil {
			rec, ok, err := ti.Next(ctx)
			_ = ti.Close()
			if err == nil && ok && rec.Tid == t1 {
				works("Iterate")
			}
		}
	}
	if ri, ok := s.(stack.RecordIterator); ok && !caps.RecordIter {
		if rec, _, _, err := ri.RecordIterNext(ctx, 1); err == nil && rec.Oid == 1 && rec.Tid == t2 {
			works("RecordIterNext")
		}
	}
	// An undo id only comes from UndoLog; without one (the honest answer of
	// a storage without undo) there is no transaction to name.
	var undoID []byte
	if u, ok := s.(stack.Undoer); ok && !caps.Undo {
		if log, err := u.UndoLog(ctx, 0, -10, nil); err == nil && len(log) > 0 {
			works("UndoLog")
			if log[0].Tid == t3 {
				undoID = log[0].ID
			}
		}
	}
	if ut := isUndoTxn && !caps.Undo; ut && undoID != nil {
		if _, err := tryWrite(t, s, stack.TxnMeta{}, func(txn stack.Txn) error {
			_, err := txn.(stack.UndoTxn).Undo(ctx, undoID)
			return err
		}); err == nil {
			works("Undo")
		}
	} else if ut {
		t.Log("no UndoLog entry names a transaction: the Undo of a Txn without the capability is not tried")
	}
	if isRestoreTxn && !caps.Restore {
		last, err := s.LastTransaction(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tryWrite(t, s, stack.TxnMeta{Tid: last + 1}, func(txn stack.Txn) error {
			return txn.(stack.RestoreTxn).Restore(ctx, 6, record("restored"), 0)
		}); err == nil {
			works("Restore")
		}
	}
	if isDeleteTxn && !caps.Delete {
		t7 := commit(t, s, op{oid: 7, data: record("delete me")})
		if _, err := tryWrite(t, s, stack.TxnMeta{}, func(txn stack.Txn) error {
			return txn.(stack.DeleteTxn).Delete(ctx, 7, t7)
		}); err == nil {
			works("Delete")
		}
	}
	if isBlobTxn && !caps.Blobs {
		dir := t.TempDir()
		if b, ok := s.(stack.Blobber); ok && b.BlobTempDir() != "" {
			dir = b.BlobTempDir()
		}
		path := filepath.Join(dir, "capabilities-upload.tmp")
		if err := os.WriteFile(path, []byte("blob"), 0o644); err != nil {
			t.Fatal(err)
		}
		tb, err := tryWrite(t, s, stack.TxnMeta{}, func(txn stack.Txn) error {
			return txn.(stack.BlobTxn).StoreBlob(ctx, 8, 0, blobRecord, path)
		})
		switch b, ok := s.(stack.Blobber); {
		case err != nil:
			_ = os.Remove(path)
			if ok {
				t.Log("no blob could be stored: the LoadBlob of a storage without the capability is not tried")
			}
		case !ok:
			works("StoreBlob")
		default:
			works("StoreBlob")
			if p, err := b.LoadBlob(ctx, 8, tb); err == nil {
				if got, err := os.ReadFile(p); err == nil && string(got) == "blob" {
					works("LoadBlob")
				}
			}
		}
	}
	if p, ok := s.(stack.Packer); ok && !caps.Pack {
		// Packed at t2, oid 1 needs its t2 revision only.
		if err := p.Pack(ctx, t2.Time().Add(time.Millisecond), true); err == nil {
			if _, err := s.LoadSerial(ctx, 1, t1); isNotFound(err) {
				works("Pack")
			}
		}
	}

	if caps.Delete {
		t5 := commit(t, s, st(5, 0, "x"))
		commit(t, s, op{oid: 5, serial: t5, del: true})
		wantNotFound(t, s, 5)
		if _, err := tryCommit(ctx, s, stack.TxnMeta{}, op{oid: 5, serial: t5, del: true}); len(conflictOids(err)) == 0 {
			t.Errorf("delete with a stale serial: %v, want a conflict", err)
		}
	}
}

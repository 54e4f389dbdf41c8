package badgerstorage

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/zeoraid/zeoraid/stack"
)

// Undo is ZODB's transactional undo without conflict resolution: every
// object the undone transaction wrote goes back to its revision before
// it; an object changed since (to other bytes) cannot be undone.
func (t *txn) Undo(ctx context.Context, id []byte) ([]stack.Oid, error) {
	if err := t.usable(ctx); err != nil {
		return nil, err
	}
	if t.s.packing.Load() {
		return nil, errPacking
	}
	tid, ok := parseUndoID(id)
	if !ok {
		return nil, &stack.UndoError{Reason: "Invalid transaction id"}
	}
	var plan []*write
	var blobFrom []string // parallel to plan: the blob file the old revision had
	err := t.s.view(ctx, func(txn *badger.Txn, _ stack.Tid) error {
		rec, found, err := getTxn(txn, tid)
		if err != nil {
			return err
		}
		if !found {
			return &stack.UndoError{Reason: fmt.Sprintf("transaction %s not found", tid)}
		}
		if rec.meta.Status != ' ' {
			return &stack.UndoError{Reason: "non-undoable transaction"}
		}
		records, err := txnRecords(txn, tid)
		if err != nil {
			return err
		}
		for _, r := range records {
			cur, _, err := newest(txn, r.Oid)
			if err != nil {
				return err
			}
			if w, ok := t.byOid[r.Oid]; ok {
				cur = revision{data: w.data}
			}
			if cur.tid != tid && !bytes.Equal(cur.data, r.Data) {
				return &stack.UndoError{Oid: r.Oid, Reason: "Some data were modified by a later transaction"}
			}
			w := &write{oid: r.Oid}
			from := ""
			if prev, found, err := revisionBefore(txn, r.Oid, tid); err != nil {
				return err
			} else if found && prev.data != nil {
				w.data, w.dataTxn = prev.data, prev.tid
				if t.s.blobs != nil && isBlobRecord(prev.data) {
					from = t.s.blobs.File(r.Oid, prev.tid)
				}
			}
			plan = append(plan, w)
			blobFrom = append(blobFrom, from)
		}
		return nil
	})
	if err != nil {
		return nil, t.s.fail("undo", nil, &tid, err)
	}
	oids := make([]stack.Oid, len(plan))
	for i, w := range plan {
		if blobFrom[i] != "" {
			if _, err := os.Stat(blobFrom[i]); err == nil {
				if err := t.placeBlob(blobFrom[i], w.oid, true); err != nil {
					return nil, t.s.fail("undo", &w.oid, &tid, err)
				}
			}
		}
		t.put(w)
		oids[i] = w.oid
		t.resolved = append(t.resolved, w.oid)
	}
	return oids, nil
}

// revisionBefore returns oid's newest revision older than tid.
func revisionBefore(txn *badger.Txn, oid stack.Oid, tid stack.Tid) (revision, bool, error) {
	if tid <= 1 {
		return revision{}, false, nil
	}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: objectPrefix(oid)})
	defer it.Close()
	it.Seek(objectKey(oid, tid-1))
	if !it.Valid() {
		return revision{}, false, nil
	}
	return itemRevision(it.Item())
}

// isBlobRecord tells a blob object's record by its class.
func isBlobRecord(data []byte) bool {
	return strings.Contains(string(data), "ZODB.blob")
}

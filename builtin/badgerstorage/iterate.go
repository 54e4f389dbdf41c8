package badgerstorage

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"

	"github.com/dgraph-io/badger/v4"

	"github.com/zeoraid/zeoraid/stack"
)

// Iterate is ZODB's iterator: the transactions with start <= tid <= stop,
// oldest first, as committed when Iterate was called (a pack running
// meanwhile may still remove records).
func (s *Storage) Iterate(ctx context.Context, start, stop stack.Tid) (stack.TxnIterator, error) {
	var readTs stack.Tid
	err := s.view(ctx, func(_ *badger.Txn, last stack.Tid) error {
		readTs = last
		return nil
	})
	if err != nil {
		return nil, s.fail("iterator", nil, nil, err)
	}
	if stop == 0 || stop > readTs {
		stop = readTs
	}
	return &txnIterator{s: s, readTs: readTs, next: start, stop: stop}, nil
}

// txnIterator reads one transaction per Next, each in its own Badger
// read transaction at the same version.
type txnIterator struct {
	s      *Storage
	readTs stack.Tid
	next   stack.Tid // the smallest tid not yet returned
	stop   stack.Tid
	done   bool
}

func (it *txnIterator) Next(ctx context.Context) (stack.TxnRecord, bool, error) {
	if it.done || it.readTs == 0 || it.next > it.stop {
		return stack.TxnRecord{}, false, nil
	}
	var rec stack.TxnRecord
	found := false
	err := it.s.at(ctx, it.readTs, func(txn *badger.Txn, _ stack.Tid) error {
		ti := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{famTxn}})
		defer ti.Close()
		ti.Seek(txnKey(it.next))
		if !ti.Valid() {
			return nil
		}
		tid, err := parseTxnKey(ti.Item().Key())
		if err != nil || tid > it.stop {
			return err
		}
		var tr txnRecord
		if err := ti.Item().Value(func(v []byte) error {
			tr, err = parseTxn(tid, v)
			return err
		}); err != nil {
			return err
		}
		records, err := txnRecords(txn, tid)
		if err != nil {
			return err
		}
		rec = stack.TxnRecord{TxnMeta: tr.meta, Records: records}
		found = true
		return nil
	})
	if err != nil {
		return stack.TxnRecord{}, false, it.s.fail("iterator", nil, &it.next, err)
	}
	if !found {
		it.done = true
		return stack.TxnRecord{}, false, nil
	}
	it.next = rec.Tid + 1
	return rec, true, nil
}

func (it *txnIterator) Close() error { it.done = true; return nil }

// txnRecords reads the records of transaction tid in oid order. An oid
// entry whose revision is gone (a pack interrupted between the two
// deletions) is skipped.
func txnRecords(txn *badger.Txn, tid stack.Tid) ([]stack.DataRecord, error) {
	xi := txn.NewIterator(badger.IteratorOptions{Prefix: txnOidPrefix(tid)})
	defer xi.Close()
	var out []stack.DataRecord
	for xi.Rewind(); xi.Valid(); xi.Next() {
		_, oid, err := parseTxnOidKey(xi.Item().Key())
		if err != nil {
			return nil, err
		}
		r, found, err := getRevision(txn, oid, tid)
		if err != nil {
			return nil, err
		}
		if found {
			out = append(out, stack.DataRecord{Oid: oid, Tid: tid, Data: r.data, DataTxn: r.dataTxn})
		}
	}
	return out, nil
}

// RecordIterNext is record_iternext: the current revision of the
// smallest live oid >= from and the live oid after it; *NotFoundError
// when there is none.
func (s *Storage) RecordIterNext(ctx context.Context, from stack.Oid) (stack.DataRecord, stack.Oid, bool, error) {
	var rec stack.DataRecord
	var next stack.Oid
	var more bool
	err := s.view(ctx, func(txn *badger.Txn, _ stack.Tid) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{famObject}})
		defer it.Close()
		// live returns the current revision of the first oid >= oid
		// whose current revision is not a deletion.
		live := func(seek []byte) (revision, stack.Oid, bool, error) {
			for it.Seek(seek); it.Valid(); {
				oid, _, err := parseObjectKey(it.Item().Key())
				if err != nil {
					return revision{}, 0, false, err
				}
				r, _, err := itemRevision(it.Item())
				if err != nil {
					return revision{}, 0, false, err
				}
				if r.data != nil {
					return r, oid, true, nil
				}
				if oid == ^stack.Oid(0) {
					break
				}
				it.Seek(objectPrefix(oid + 1))
			}
			return revision{}, 0, false, nil
		}
		r, oid, ok, err := live(objectPrefix(from))
		if err != nil {
			return err
		}
		if !ok {
			return &stack.NotFoundError{Oid: from}
		}
		rec = stack.DataRecord{Oid: oid, Tid: r.tid, Data: r.data, DataTxn: r.dataTxn}
		if oid == ^stack.Oid(0) {
			return nil
		}
		_, next, more, err = live(objectPrefix(oid + 1))
		return err
	})
	if err != nil {
		return stack.DataRecord{}, 0, false, s.fail("record_iternext", &from, nil, err)
	}
	return rec, next, more, nil
}

// UndoID is the undo id of a transaction: base64 of the tid, as
// FileStorage's.
func UndoID(tid stack.Tid) []byte {
	return []byte(base64.StdEncoding.EncodeToString(tid.Bytes()))
}

// parseUndoID reads an UndoID.
func parseUndoID(id []byte) (stack.Tid, bool) {
	raw, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(id)))
	if err != nil || len(raw) != 8 {
		return 0, false
	}
	return stack.Tid(binary.BigEndian.Uint64(raw)), true
}

// errPacking refuses undo while a pack removes history.
var errPacking = &stack.UndoError{Reason: "Undo is currently disabled for database maintenance.<p>"}

// UndoLog is ZODB's undoLog: undoable transactions newest first, stopping
// at the first packed one.
func (s *Storage) UndoLog(ctx context.Context, first, last int, match func(stack.UndoInfo) bool) ([]stack.UndoInfo, error) {
	if s.packing.Load() {
		return nil, errPacking
	}
	if last < 0 {
		last = first - last
	}
	var out []stack.UndoInfo
	err := s.view(ctx, func(txn *badger.Txn, lastTid stack.Tid) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{famTxn}, Reverse: true})
		defer it.Close()
		i := 0
		for it.Seek(txnKey(lastTid)); it.Valid() && i < last; it.Next() {
			tid, err := parseTxnKey(it.Item().Key())
			if err != nil {
				return err
			}
			var tr txnRecord
			if err := it.Item().Value(func(v []byte) error {
				tr, err = parseTxn(tid, v)
				return err
			}); err != nil {
				return err
			}
			if tr.meta.Status == 'p' {
				break
			}
			if tr.meta.Status != ' ' {
				continue
			}
			info := stack.UndoInfo{ID: UndoID(tid), Tid: tid, User: tr.meta.User, Description: tr.meta.Description, Extension: tr.meta.Extension, Size: int(tr.size)}
			if match == nil || match(info) {
				if i >= first {
					out = append(out, info)
				}
				i++
			}
		}
		return nil
	})
	return out, s.fail("undoLog", nil, nil, err)
}

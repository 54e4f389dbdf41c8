package sqlitestorage

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"

	"github.com/zeoraid/zeoraid/stack"
)

// Iterate is ZODB's iterator: the transactions with start <= tid <= stop,
// oldest first, up to the last one committed when Iterate was called (a
// pack running meanwhile may still remove records).
func (s *Storage) Iterate(ctx context.Context, start, stop stack.Tid) (_ stack.TxnIterator, err error) {
	defer stack.WrapOp(&err, s.node, "iterator_start", nil, nil)
	err = s.use(ctx, func() error { return nil })
	if err != nil {
		return nil, err
	}
	last := stack.Tid(s.last.Load())
	if stop == 0 || stop > last {
		stop = last
	}
	return &txnIterator{s: s, next: start, stop: stop}, nil
}

// txnIterator reads one transaction per Next, in a read transaction of
// its own (one snapshot for the transaction and its records).
type txnIterator struct {
	s    *Storage
	next stack.Tid // the smallest tid not yet returned
	stop stack.Tid
	done bool
}

func (it *txnIterator) Next(ctx context.Context) (rec stack.TxnRecord, ok bool, err error) {
	defer stack.WrapOp(&err, it.s.node, "iterator_next", nil, &it.next)
	if it.done || it.stop == 0 || it.next > it.stop {
		return stack.TxnRecord{}, false, nil
	}
	err = it.s.use(ctx, func() error {
		tx, err := it.s.rd.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			return err
		}
		defer tx.Rollback()
		var tid []byte
		var status string
		err = tx.QueryRowContext(ctx, `SELECT tid, status, user, description, extension FROM transactions
			WHERE tid >= ? AND tid <= ? ORDER BY tid LIMIT 1`, p64(it.next), p64(it.stop)).
			Scan(&tid, &status, &rec.User, &rec.Description, &rec.Extension)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if rec.Tid, err = u64[stack.Tid](tid); err != nil {
			return err
		}
		if len(status) == 1 {
			rec.Status = status[0]
		}
		if rec.Records, err = txnRecords(ctx, tx, rec.Tid); err != nil {
			return err
		}
		ok = true
		return nil
	})
	if err != nil {
		return stack.TxnRecord{}, false, err
	}
	if !ok {
		it.done = true
		return stack.TxnRecord{}, false, nil
	}
	it.next = rec.Tid + 1
	return rec, true, nil
}

func (it *txnIterator) Close() error { it.done = true; return nil }

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// txnRecords reads the records of transaction tid in oid order.
func txnRecords(ctx context.Context, q querier, tid stack.Tid) ([]stack.DataRecord, error) {
	rows, err := q.QueryContext(ctx, `SELECT oid, data, data_txn FROM object_state WHERE tid = ? ORDER BY oid`, p64(tid))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []stack.DataRecord
	for rows.Next() {
		var oid, dataTxn []byte
		r := stack.DataRecord{Tid: tid}
		if err := rows.Scan(&oid, &r.Data, &dataTxn); err != nil {
			return nil, err
		}
		if r.Oid, err = u64[stack.Oid](oid); err != nil {
			return nil, err
		}
		if r.DataTxn, err = u64[stack.Tid](dataTxn); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// RecordIterNext is record_iternext: the current revision of the smallest
// live oid >= from and the live oid after it; *NotFoundError when there is
// none.
func (s *Storage) RecordIterNext(ctx context.Context, from stack.Oid) (rec stack.DataRecord, next stack.Oid, more bool, err error) {
	defer stack.WrapOp(&err, s.node, "record_iternext", &from, nil)
	err = s.use(ctx, func() error {
		rows, err := s.rd.QueryContext(ctx, `SELECT o.oid, o.tid, o.data, o.data_txn FROM object_state o
			WHERE o.oid >= ? AND o.tid = (SELECT max(tid) FROM object_state WHERE oid = o.oid) AND o.data IS NOT NULL
			ORDER BY o.oid LIMIT 2`, p64(from))
		if err != nil {
			return err
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			var oid, tid, dataTxn, data []byte
			if err := rows.Scan(&oid, &tid, &data, &dataTxn); err != nil {
				return err
			}
			o, err := u64[stack.Oid](oid)
			if err != nil {
				return err
			}
			if n == 1 {
				next, more = o, true
				break
			}
			rec = stack.DataRecord{Oid: o, Data: data}
			if rec.Tid, err = u64[stack.Tid](tid); err != nil {
				return err
			}
			if rec.DataTxn, err = u64[stack.Tid](dataTxn); err != nil {
				return err
			}
			n++
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if n == 0 {
			return &stack.NotFoundError{Oid: from}
		}
		return nil
	})
	if err != nil {
		return stack.DataRecord{}, 0, false, err
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
	raw, err := base64.StdEncoding.DecodeString(string(id))
	if err != nil || len(raw) != 8 {
		return 0, false
	}
	tid, err := stack.TidFromBytes(raw)
	return tid, err == nil
}

// UndoLog is ZODB's undoLog: undoable transactions newest first, stopping
// at the first packed one.
func (s *Storage) UndoLog(ctx context.Context, first, last int, match func(stack.UndoInfo) bool) (out []stack.UndoInfo, err error) {
	defer stack.WrapOp(&err, s.node, "undoLog", nil, nil)
	if last < 0 {
		last = first - last
	}
	err = s.use(ctx, func() error {
		rows, err := s.rd.QueryContext(ctx, `SELECT tid, status, user, description, extension, size FROM transactions ORDER BY tid DESC`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for i := 0; i < last && rows.Next(); {
			var tid []byte
			var status string
			var info stack.UndoInfo
			if err := rows.Scan(&tid, &status, &info.User, &info.Description, &info.Extension, &info.Size); err != nil {
				return err
			}
			if status == "p" {
				break
			}
			if status != " " {
				continue
			}
			if info.Tid, err = u64[stack.Tid](tid); err != nil {
				return err
			}
			info.ID = UndoID(info.Tid)
			if match == nil || match(info) {
				if i >= first {
					out = append(out, info)
				}
				i++
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

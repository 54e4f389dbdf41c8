package sqlitestorage

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"

	"github.com/zeoraid/zeoraid/stack"
)

var _ stack.UndoTxn = (*txn)(nil)

// Undo is ZODB's transactional undo without conflict resolution: every
// object the undone transaction wrote goes back to its revision before
// it; an object changed since (to other bytes) cannot be undone. The
// transaction holds the commit lock, so what Undo reads stays current
// until Vote.
func (t *txn) Undo(ctx context.Context, id []byte) (_ []stack.Oid, err error) {
	defer stack.WrapOp(&err, t.s.node, "undo", nil, &t.tid)
	if err := t.usable(ctx); err != nil {
		return nil, err
	}
	undone, ok := parseUndoID(id)
	if !ok {
		return nil, &stack.UndoError{Reason: "Invalid transaction id"}
	}
	s := t.s
	var plan []*write
	err = s.use(ctx, func() error {
		tx, err := s.rd.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			return err
		}
		defer tx.Rollback()
		var status string
		err = tx.QueryRowContext(ctx, `SELECT status FROM transactions WHERE tid = ?`, p64(undone)).Scan(&status)
		if errors.Is(err, sql.ErrNoRows) {
			return &stack.UndoError{Reason: fmt.Sprintf("transaction %s not found", undone)}
		}
		if err != nil {
			return err
		}
		if status != " " {
			return &stack.UndoError{Reason: "non-undoable transaction"}
		}
		records, err := txnRecords(ctx, tx, undone)
		if err != nil {
			return err
		}
		for _, r := range records {
			cur, err := revisionBefore(ctx, tx, r.Oid, stack.MaxTid)
			if err != nil {
				return err
			}
			if w, ok := t.byOid[r.Oid]; ok {
				cur = revision{data: w.data}
			}
			if cur.tid != undone && !bytes.Equal(cur.data, r.Data) {
				return &stack.UndoError{Oid: r.Oid, Reason: "Some data were modified by a later transaction"}
			}
			prev, err := revisionBefore(ctx, tx, r.Oid, undone)
			if err != nil {
				return err
			}
			w := &write{oid: r.Oid}
			if prev.data != nil {
				w.data, w.dataTxn = prev.data, prev.tid
				if s.blobs != nil {
					if f := s.blobs.File(r.Oid, prev.tid); exists(f) {
						w.blob, w.copyBlob = f, true
					}
				}
			}
			plan = append(plan, w)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	oids := make([]stack.Oid, len(plan))
	for i, w := range plan {
		t.put(w)
		oids[i] = w.oid
		t.resolved = append(t.resolved, w.oid)
	}
	return oids, nil
}

// revision is one stored revision; data nil is a deletion (or none).
type revision struct {
	tid  stack.Tid
	data []byte
}

// revisionBefore returns oid's newest revision older than before (tid 0
// when there is none).
func revisionBefore(ctx context.Context, tx *sql.Tx, oid stack.Oid, before stack.Tid) (revision, error) {
	var tid, data []byte
	err := tx.QueryRowContext(ctx, `SELECT tid, data FROM object_state WHERE oid = ? AND tid < ? ORDER BY tid DESC LIMIT 1`,
		p64(oid), p64(before)).Scan(&tid, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return revision{}, nil
	}
	if err != nil {
		return revision{}, err
	}
	t, err := u64[stack.Tid](tid)
	return revision{tid: t, data: data}, err
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

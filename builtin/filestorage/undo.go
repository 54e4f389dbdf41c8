package filestorage

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"maps"
	"slices"

	"github.com/zeoraid/zeoraid/stack"
)

// UndoID is the undo id Python gives a transaction: base64 of the tid
// without the newline (docs/filestorage.md §3.5).
func UndoID(tid stack.Tid) []byte {
	return []byte(base64.StdEncoding.EncodeToString(tid.Bytes()))
}

// UndoLog is ZODB's undoLog: undoable transactions newest first, stopping
// at the first packed one.
func (s *Storage) UndoLog(ctx context.Context, first, last int, match func(stack.UndoInfo) bool) (_ []stack.UndoInfo, err error) {
	defer stack.WrapOp(&err, s.node, "undoLog", nil, nil)
	if s.packing.Load() {
		return nil, &stack.UndoError{Reason: "Undo is currently disabled for database maintenance.<p>"}
	}
	if err := s.readable(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if last < 0 {
		last = first - last
	}
	var out []stack.UndoInfo
	i := 0
	for p := s.pos; p >= 39 && i < last; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := s.rd.prevTxn(p)
		if err != nil {
			return nil, err
		}
		p = h.pos
		if h.status == statusPacked {
			break
		}
		if h.status != statusCommitted {
			continue
		}
		meta, err := s.rd.txnMeta(&h)
		if err != nil {
			return nil, err
		}
		info := stack.UndoInfo{ID: UndoID(h.tid), Tid: h.tid, User: meta.User, Description: meta.Description, Extension: meta.Extension, Size: int(h.tlen)}
		if match == nil || match(info) {
			if i >= first {
				out = append(out, info)
			}
			i++
		}
	}
	return out, nil
}

// Undo is ZODB's transactional undo (docs/filestorage.md §4.4) without conflict resolution: a
// record whose data changed later cannot be undone.
func (t *txn) Undo(ctx context.Context, id []byte) (_ []stack.Oid, err error) {
	defer stack.WrapOp(&err, t.s.node, "undo", nil, &t.tid)
	if err := t.usable(); err != nil {
		return nil, err
	}
	raw, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(id)))
	if err != nil || len(raw) != 8 {
		return nil, &stack.UndoError{Reason: "Invalid transaction id"}
	}
	tid := stack.Tid(binary.BigEndian.Uint64(raw))
	s := t.s
	s.mu.RLock()
	h, found, err := s.findTxn(tid)
	if err != nil || !found {
		s.mu.RUnlock()
		if err != nil {
			return nil, err
		}
		return nil, &stack.UndoError{Reason: "Invalid transaction id"}
	}
	if h.status != statusCommitted {
		s.mu.RUnlock()
		return nil, &stack.UndoError{Reason: "non-undoable transaction"}
	}
	type undoRec struct {
		oid       stack.Oid
		pre, prev int64
		blobFrom  string
	}
	var plan []undoRec
	failed := map[stack.Oid]error{}
	for p := h.firstRecord(); p < h.end(); {
		d, err := s.rd.dataHeader(p)
		if err != nil {
			s.mu.RUnlock()
			return nil, err
		}
		p += d.recordLen()
		cur, inTxn := t.tindex[d.oid]
		if !inTxn {
			cur = s.ix.pos(d.oid)
		}
		if cur != d.pos {
			if uerr := t.checkUndoable(d, cur); uerr != nil {
				failed[d.oid] = uerr
				continue
			}
		}
		delete(failed, d.oid)
		r := undoRec{oid: d.oid, pre: d.prev, prev: s.ix.pos(d.oid)}
		if d.prev != 0 && s.blobs != nil {
			ph, err := s.rd.dataHeader(d.prev)
			if err == nil {
				if data, rerr := s.rd.resolve(ph); rerr == nil && isBlobRecord(data) {
					r.blobFrom = s.blobs.File(d.oid, ph.tid)
				}
			}
		}
		plan = append(plan, r)
	}
	s.mu.RUnlock()
	if len(failed) > 0 {
		oids := slices.Sorted(maps.Keys(failed))
		return nil, failed[oids[0]]
	}
	var oids []stack.Oid
	for _, r := range plan {
		if err := t.add(r.oid, t.tid, r.prev, nil, r.pre); err != nil {
			return nil, err
		}
		if r.blobFrom != "" {
			if err := t.placeBlob(r.blobFrom, r.oid, true); err != nil {
				return nil, err
			}
		}
		oids = append(oids, r.oid)
	}
	return oids, nil
}

// checkUndoable decides whether record d, no longer current (cur is the
// current position, possibly in this transaction), can still be undone:
// only when the current data equals d's. The caller holds the read lock.
func (t *txn) checkUndoable(d dataHeader, cur int64) error {
	s := t.s
	curData, curErr := t.resolveAt(cur)
	mine, myErr := s.rd.resolve(d)
	if curErr != nil && curErr != errNoData {
		return curErr
	}
	if myErr != nil && myErr != errNoData {
		return myErr
	}
	if (curErr == errNoData) == (myErr == errNoData) && bytes.Equal(curData, mine) {
		return nil
	}
	if d.prev == 0 {
		return &stack.UndoError{Oid: d.oid, Reason: "Can't undo an add transaction followed by conflicting transactions."}
	}
	return &stack.UndoError{Oid: d.oid, Reason: "Some data were modified by a later transaction"}
}

// resolveAt resolves the record at pos, which may still be in this
// transaction's buffer.
func (t *txn) resolveAt(pos int64) ([]byte, error) {
	base := t.tpos + t.thl
	if pos < base {
		h, err := t.s.rd.dataHeader(pos)
		if err != nil {
			return nil, err
		}
		return t.s.rd.resolve(h)
	}
	off := pos - base
	h := decodeDataHeader(pos, t.body[off:])
	if h.plen > 0 {
		return bytes.Clone(t.body[off+dataHeaderLen : off+dataHeaderLen+h.plen]), nil
	}
	h.back = int64(binary.BigEndian.Uint64(t.body[off+dataHeaderLen:]))
	if h.back == 0 {
		return nil, errNoData
	}
	bh, err := t.s.rd.dataHeader(h.back)
	if err != nil {
		return nil, err
	}
	return t.s.rd.resolve(bh)
}

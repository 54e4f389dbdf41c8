package filestorage

import (
	"context"
	"os"

	"github.com/zeoraid/zeoraid/stack"
)

// Iterate is ZODB's iterator(start, stop): committed transactions with
// start <= tid <= stop, oldest first. It reads through its own handle and
// stops at the end committed when it was created, so it is unaffected by
// later commits and by a pack replacing the file.
func (s *Storage) Iterate(ctx context.Context, start, stop stack.Tid) (stack.TxnIterator, error) {
	if err := s.readable(); err != nil {
		return nil, err
	}
	end := s.pos
	s.mu.RUnlock()
	f, err := os.Open(s.path)
	if err != nil {
		return nil, err
	}
	return &txnIter{f: f, rd: reader{r: f, path: s.path}, pos: int64(len(magicFS30)), end: end, start: start, stop: stop}, nil
}

type txnIter struct {
	f           *os.File
	rd          reader
	pos, end    int64
	start, stop stack.Tid
	finished    bool
}

// Next returns the next transaction with its records, data resolved.
func (it *txnIter) Next(ctx context.Context) (stack.TxnRecord, bool, error) {
	for !it.finished && it.pos < it.end {
		if err := ctx.Err(); err != nil {
			return stack.TxnRecord{}, false, err
		}
		h, err := it.rd.txnHeader(it.pos)
		if err != nil {
			return stack.TxnRecord{}, false, err
		}
		if h.next() > it.end || h.status == statusCheckpoint {
			break
		}
		it.pos = h.next()
		if h.status == statusUndone || (it.start != 0 && h.tid < it.start) {
			continue
		}
		if it.stop != 0 && h.tid > it.stop {
			break
		}
		rec, err := readTxn(it.rd, &h)
		return rec, err == nil, err
	}
	it.finished = true
	return stack.TxnRecord{}, false, nil
}

// Close releases the iterator's file handle.
func (it *txnIter) Close() error {
	it.finished = true
	return it.f.Close()
}

// readTxn reads one transaction: metadata and records, data resolved
// through backpointers and DataTxn set to the tid one hop away.
func readTxn(rd reader, h *txnHeader) (stack.TxnRecord, error) {
	meta, err := rd.txnMeta(h)
	if err != nil {
		return stack.TxnRecord{}, err
	}
	rec := stack.TxnRecord{TxnMeta: meta}
	for p := h.firstRecord(); p < h.end(); {
		d, err := rd.dataHeader(p)
		if err != nil {
			return rec, err
		}
		if d.tloc != h.pos || p+d.recordLen() > h.end() {
			return rec, rd.corrupt(p, "data record does not belong to or exceeds transaction at %d", h.pos)
		}
		dr := stack.DataRecord{Oid: d.oid, Tid: d.tid}
		if d.plen > 0 || d.back != 0 {
			dr.Data, err = rd.resolve(d)
			if err == errNoData {
				dr.Data, err = nil, nil
			}
			if err != nil {
				return rec, err
			}
			if d.back != 0 {
				if dr.DataTxn, err = rd.backTid(d.back); err != nil {
					return rec, err
				}
			}
		}
		rec.Records = append(rec.Records, dr)
		p += d.recordLen()
	}
	if err := checkTrailer(rd, h); err != nil {
		return rec, err
	}
	return rec, nil
}

// RecordIterNext is record_iternext: the current revision of the smallest
// oid >= from (deleted objects are skipped) and the next oid.
func (s *Storage) RecordIterNext(ctx context.Context, from stack.Oid) (stack.DataRecord, stack.Oid, bool, error) {
	if err := s.readable(); err != nil {
		return stack.DataRecord{}, 0, false, err
	}
	defer s.mu.RUnlock()
	// One pass finds the smallest live oid >= from; a second the oid after
	// it. Deleted objects (markers) are skipped.
	var skip map[stack.Oid]bool
	for {
		oid, found := nextOid(s.ix, from, skip)
		if !found {
			break
		}
		h, err := s.rd.dataHeader(s.ix[oid])
		if err != nil {
			return stack.DataRecord{}, 0, false, err
		}
		data, err := s.rd.resolve(h)
		if err == errNoData {
			if skip == nil {
				skip = map[stack.Oid]bool{}
			}
			skip[oid] = true
			continue
		}
		if err != nil {
			return stack.DataRecord{}, 0, false, err
		}
		rec := stack.DataRecord{Oid: oid, Tid: h.tid, Data: data}
		if oid == ^stack.Oid(0) {
			return rec, 0, false, nil
		}
		next, more := nextOid(s.ix, oid+1, nil)
		return rec, next, more, nil
	}
	return stack.DataRecord{}, 0, false, &stack.NotFoundError{Oid: from}
}

// nextOid is the smallest oid >= from in ix that is not in skip.
func nextOid(ix index, from stack.Oid, skip map[stack.Oid]bool) (stack.Oid, bool) {
	var best stack.Oid
	found := false
	for oid := range ix {
		if oid >= from && (!found || oid < best) && !skip[oid] {
			best, found = oid, true
		}
	}
	return best, found
}

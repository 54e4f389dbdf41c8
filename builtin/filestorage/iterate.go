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
func (s *Storage) Iterate(ctx context.Context, start, stop stack.Tid) (_ stack.TxnIterator, err error) {
	defer stack.WrapOp(&err, s.node, "iterator_start", nil, nil)
	if err := s.readable(); err != nil {
		return nil, err
	}
	end := s.pos
	s.mu.RUnlock()
	f, err := os.Open(s.path)
	if err != nil {
		return nil, err
	}
	return &txnIter{node: s.node, f: f, rd: reader{r: &windowReader{f: f}, path: s.path}, pos: int64(len(magicFS30)), end: end, start: start, stop: stop}, nil
}

// iterWindow is how much of the file an iterator reads at once.
const iterWindow = 1 << 20

// windowReader is an iterator's io.ReaderAt: it reads the file forward
// iterWindow bytes at a time and answers the small reads of headers,
// metadata and records from that window, instead of one system call
// each. A read before the window (a backpointer) or larger than half of
// it goes to the file directly. It is used by one goroutine.
type windowReader struct {
	f   *os.File
	buf []byte
	off int64 // file position of buf[0]
}

func (w *windowReader) ReadAt(p []byte, pos int64) (int, error) {
	if pos >= w.off && pos+int64(len(p)) <= w.off+int64(len(w.buf)) {
		return copy(p, w.buf[pos-w.off:]), nil
	}
	if pos < w.off || len(p) > iterWindow/2 {
		return w.f.ReadAt(p, pos)
	}
	if cap(w.buf) < iterWindow {
		w.buf = make([]byte, iterWindow)
	}
	n, err := w.f.ReadAt(w.buf[:iterWindow], pos)
	w.buf, w.off = w.buf[:n], pos
	if n >= len(p) {
		return copy(p, w.buf), nil
	}
	return copy(p, w.buf), err
}

type txnIter struct {
	node        string // the storage's, for errors
	f           *os.File
	rd          reader
	pos, end    int64
	start, stop stack.Tid
	finished    bool
}

// Next returns the next transaction with its records, data resolved.
func (it *txnIter) Next(ctx context.Context) (_ stack.TxnRecord, _ bool, err error) {
	defer stack.WrapOp(&err, it.node, "iterator_next", nil, nil)
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

// maxTxnRead is the largest transaction readTxn reads in one go; the
// records of a larger one are read one by one.
const maxTxnRead = 16 << 20

// readTxn reads one transaction: metadata and records, data resolved
// through backpointers and DataTxn set to the tid one hop away. A
// transaction of up to maxTxnRead bytes is read with one read, and its
// records' data are slices of that buffer.
func readTxn(rd reader, h *txnHeader) (stack.TxnRecord, error) {
	meta, err := rd.txnMeta(h)
	if err != nil {
		return stack.TxnRecord{}, err
	}
	rec := stack.TxnRecord{TxnMeta: meta}
	first, end := h.firstRecord(), h.end()
	var body []byte
	if n := end - first; n > 0 && n <= maxTxnRead {
		body = make([]byte, n)
		if err := rd.readFull(first, body); err != nil {
			return rec, err
		}
	}
	for p := first; p < end; {
		var d dataHeader
		var data []byte
		if body != nil {
			d, data, err = rd.recordIn(body, first, p)
		} else {
			d, err = rd.dataHeader(p)
		}
		if err != nil {
			return rec, err
		}
		if d.tloc != h.pos || p+d.recordLen() > end {
			return rec, rd.corrupt(p, "data record does not belong to or exceeds transaction at %d", h.pos)
		}
		dr := stack.DataRecord{Oid: d.oid, Tid: d.tid, Data: data}
		if data == nil && (d.plen > 0 || d.back != 0) {
			dr.Data, err = rd.resolve(d)
			if err == errNoData {
				dr.Data, err = nil, nil
			}
			if err != nil {
				return rec, err
			}
		}
		if d.back != 0 {
			if dr.DataTxn, err = rd.backTid(d.back); err != nil {
				return rec, err
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
// oid >= from (deleted objects are skipped) and the next oid, found by
// binary search in the index, whose oids are ordered.
func (s *Storage) RecordIterNext(ctx context.Context, from stack.Oid) (_ stack.DataRecord, _ stack.Oid, _ bool, err error) {
	defer stack.WrapOp(&err, s.node, "record_iternext", &from, nil)
	if err := s.readable(); err != nil {
		return stack.DataRecord{}, 0, false, err
	}
	defer s.mu.RUnlock()
	oid, pos, ok := s.ix.ceil(from)
	for ok {
		h, err := s.rd.dataHeader(pos)
		if err != nil {
			return stack.DataRecord{}, 0, false, err
		}
		data, err := s.rd.resolve(h)
		if err != nil && err != errNoData {
			return stack.DataRecord{}, 0, false, err
		}
		var next stack.Oid
		var nextPos int64
		more := false
		if oid != ^stack.Oid(0) {
			next, nextPos, more = s.ix.ceil(oid + 1)
		}
		if err == nil {
			return stack.DataRecord{Oid: oid, Tid: h.tid, Data: data}, next, more, nil
		}
		oid, pos, ok = next, nextPos, more // a deleted object: skip it
	}
	return stack.DataRecord{}, 0, false, &stack.NotFoundError{Oid: from}
}

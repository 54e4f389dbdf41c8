package filestorage

import (
	"errors"
	"fmt"
	"io"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
)

// scanResult is what scanning a Data.fs found (docs/filestorage.md §2.2).
type scanResult struct {
	pos  int64     // end of the last complete committed transaction
	ltid stack.Tid // tid of that transaction (or the ltid given)
	// tail is set when bytes after pos are an incomplete or uncommitted
	// transaction; copyTail tells whether Python would save them to .trN
	// (a short header is dropped without a copy).
	tail     bool
	copyTail bool
	reason   string
}

// scan reads transactions from start to the end of the file (size),
// adding their records to ix. It stops at tail damage and reports it; it
// fails on corruption inside a complete transaction.
func scan(r reader, size, start int64, ltid stack.Tid, ix *index, log logrus.FieldLogger) (scanResult, error) {
	pos := start
	for {
		if pos == size {
			return scanResult{pos: pos, ltid: ltid}, nil
		}
		if size-pos < txnHeaderLen {
			return scanResult{pos: pos, ltid: ltid, tail: true, reason: "partial transaction header"}, nil
		}
		var hb [txnHeaderLen]byte
		if err := r.readFull(pos, hb[:]); err != nil {
			return scanResult{}, err
		}
		h := decodeTxnHeader(pos, hb[:])
		if h.tid <= ltid {
			log.WithFields(logrus.Fields{"pos": pos, "tid": h.tid.String(), "last_tid": ltid.String()}).
				Warn("time-stamp reduction")
		}
		if h.next() > size || h.tlen < 0 || h.status == statusCheckpoint {
			reason := "transaction runs past end of file"
			if h.status == statusCheckpoint {
				reason = "transaction voted but never finished (status 'c')"
			}
			return scanResult{pos: pos, ltid: ltid, tail: true, copyTail: true, reason: reason}, nil
		}
		if h.tlen < h.headerLen() {
			rtl, err := r.trailer(size)
			if err != nil {
				return scanResult{}, err
			}
			if size-rtl < pos || rtl < txnHeaderLen {
				return scanResult{pos: pos, ltid: ltid, tail: true, copyTail: true, reason: "garbage after last transaction"}, nil
			}
			return scanResult{}, r.corrupt(pos, "invalid transaction header: length %d shorter than header %d", h.tlen, h.headerLen())
		}
		switch h.status {
		case statusCommitted, statusPacked, statusUndone:
		default:
			log.WithFields(logrus.Fields{"pos": pos, "status": fmt.Sprintf("%q", h.status)}).Warn("invalid transaction status")
		}
		ltid = h.tid
		if h.status == statusUndone {
			if err := checkTrailer(r, &h); err != nil {
				return scanResult{}, err
			}
			pos = h.next()
			continue
		}
		if err := scanRecords(r, &h, ix, log, nil); err != nil {
			return scanResult{}, err
		}
		pos = h.next()
	}
}

// checkTrailer verifies consistency rule 6.
func checkTrailer(r reader, h *txnHeader) error {
	tl, err := r.trailer(h.next())
	if err != nil {
		return err
	}
	if tl != h.tlen {
		return r.corrupt(h.end(), "redundant transaction length check failed (%d != %d)", tl, h.tlen)
	}
	return nil
}

// scanRecords walks the data records of a complete transaction, checking
// rules 4-7, and then adds them to ix (if not nil; rule 7 is checked and
// logged only then). each, if not nil, sees every record.
func scanRecords(r reader, h *txnHeader, ix *index, log logrus.FieldLogger, each func(dataHeader) error) error {
	tindex := map[stack.Oid]int64{}
	end := h.end()
	for p := h.firstRecord(); p < end; {
		d, err := r.dataHeader(p)
		if err != nil {
			return err
		}
		if d.tloc != h.pos {
			return r.corrupt(p, "data record points at transaction %d, not %d", d.tloc, h.pos)
		}
		if d.plen > end || p+d.recordLen() > end {
			return r.corrupt(p, "data record exceeds transaction record (ends at %d)", end)
		}
		if ix != nil {
			if old := ix.pos(d.oid); d.prev != old {
				if _, seen := tindex[d.oid]; !seen {
					f := log.WithFields(logrus.Fields{"pos": p, "oid": d.oid.String(), "prev": d.prev, "index": old})
					if d.prev != 0 {
						f.Error("data record's previous position does not match the index")
					} else {
						f.Debug("data record without previous position (packed)")
					}
				}
			}
		}
		if each != nil {
			if err := each(d); err != nil {
				return err
			}
		}
		tindex[d.oid] = p
		p += d.recordLen()
		if p > end {
			return r.corrupt(h.pos, "data records don't add up")
		}
	}
	if err := checkTrailer(r, h); err != nil {
		return err
	}
	if ix != nil {
		for oid, p := range tindex {
			ix.set(oid, p)
		}
	}
	return nil
}

// checkIndex decides whether an index loaded from .index can be trusted for
// a file of the given size (Python's _check_sanity) and returns the tid of
// the last transaction before pos.
func checkIndex(r reader, size, pos int64, ix *index) (stack.Tid, error) {
	if pos < 100 || pos > size {
		return 0, fmt.Errorf("index position %d does not fit the file (size %d)", pos, size)
	}
	var ltid stack.Tid
	for p := pos; p > int64(len(magicFS30)); {
		h, err := r.prevTxn(p)
		if err != nil {
			return 0, err
		}
		if ltid == 0 {
			ltid = h.tid
		}
		p = h.pos
		if h.status == statusUndone {
			continue
		}
		if h.status != statusCommitted && h.status != statusPacked {
			return 0, fmt.Errorf("transaction at %d has status %q", h.pos, h.status)
		}
		if h.tlen == h.headerLen() {
			continue
		}
		rp := h.firstRecord()
		for k := 0; k < 5 && rp < h.end(); k++ {
			d, err := r.dataHeader(rp)
			if err != nil {
				return 0, err
			}
			if d.tloc != h.pos || rp+d.recordLen() > h.end() || ix.pos(d.oid) != rp {
				return 0, fmt.Errorf("index does not match the record at %d", rp)
			}
			rp += d.recordLen()
		}
		return ltid, nil
	}
	return 0, errors.New("no transaction with records to check the index against")
}

// copyRange copies size bytes at off from r to w.
func copyRange(w io.Writer, r io.ReaderAt, off, size int64) error {
	_, err := io.Copy(w, io.NewSectionReader(r, off, size))
	return err
}

package filestorage

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/zeoraid/zeoraid/stack"
)

// walkFile calls txn for every complete transaction of the Data.fs at
// path and rec for each of its data records, checking the magic, the
// headers and the trailers. A 'c' or incomplete tail is an error: tools
// look at files at rest.
func walkFile(path string, txn func(h txnHeader, meta stack.TxnMeta) error, rec func(h txnHeader, d dataHeader) error) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	rd := reader{r: f, path: path}
	size := fi.Size()
	var m [4]byte
	if err := rd.readFull(0, m[:]); err != nil {
		return 0, err
	}
	switch string(m[:]) {
	case magicFS30:
	case magicFS21:
		return 0, fmt.Errorf("%s: %w", path, errFS21)
	default:
		return 0, rd.corrupt(0, "not a FileStorage: magic %q", m[:])
	}
	n := 0
	var last stack.Tid
	for pos := int64(len(magicFS30)); pos < size; {
		h, err := rd.txnHeader(pos)
		if err != nil {
			return n, err
		}
		if h.tid <= last {
			return n, rd.corrupt(pos, "transaction id %s does not follow %s", h.tid, last)
		}
		last = h.tid
		if h.next() > size {
			return n, rd.corrupt(pos, "transaction (length %d) runs past end of file %d", h.tlen, size)
		}
		switch h.status {
		case statusCommitted, statusPacked, statusUndone:
		case statusCheckpoint:
			return n, rd.corrupt(pos, "transaction with checkpoint flag set (voted, never finished)")
		default:
			return n, rd.corrupt(pos, "invalid transaction status %q", h.status)
		}
		meta, err := rd.txnMeta(&h)
		if err != nil {
			return n, err
		}
		if err := txn(h, meta); err != nil {
			return n, err
		}
		err = scanRecords(rd, &h, nil, nil, func(d dataHeader) error {
			if d.prev >= d.pos || d.back >= d.pos {
				return rd.corrupt(d.pos, "record points forward (prev %d, back %d)", d.prev, d.back)
			}
			if d.tid == 0 {
				return rd.corrupt(d.pos, "record with tid 0")
			}
			if d.prev != 0 {
				ph, err := rd.dataHeader(d.prev)
				if err != nil {
					return err
				}
				if ph.oid != d.oid {
					return rd.corrupt(d.pos, "previous record pointer %d names oid %s, not %s", d.prev, ph.oid, d.oid)
				}
			}
			if d.plen == 0 && d.back != 0 {
				if _, err := rd.resolve(d); err != nil && err != errNoData {
					return err
				}
			}
			return rec(h, d)
		})
		if err != nil {
			return n, err
		}
		n++
		pos = h.next()
	}
	return n, nil
}

// Check verifies the Data.fs at path as ZODB's fstest.py does, and also
// that every backpointer resolves, through records of the same oid, to
// data or a "no data" marker, and that every previous-record pointer
// names a record of the same oid. It writes a
// summary to w and returns the first problem found, with its offset.
func Check(path string, w io.Writer) error {
	recs := 0
	n, err := walkFile(path,
		func(txnHeader, stack.TxnMeta) error { return nil },
		func(txnHeader, dataHeader) error { recs++; return nil })
	if err != nil {
		fmt.Fprintf(w, "%s: error after %d transactions: %v\n", path, n, err)
		return err
	}
	fmt.Fprintf(w, "%s: %d transactions, %d data records, no errors detected\n", path, n, recs)
	return nil
}

// Dump writes one line per transaction and one per data record of the
// Data.fs at path: offsets, tids, status, metadata, and for each record
// its previous revision and data or backpointer.
func Dump(path string, w io.Writer) error {
	_, err := walkFile(path,
		func(h txnHeader, m stack.TxnMeta) error {
			_, err := fmt.Fprintf(w, "txn pos=%d tid=%s time=%s status=%q len=%d user=%q description=%q extension=%d bytes\n",
				h.pos, h.tid, h.tid.Time().Round(time.Microsecond).Format("2006-01-02 15:04:05.000000"), h.status, h.tlen, m.User, m.Description, len(m.Extension))
			return err
		},
		func(h txnHeader, d dataHeader) error {
			var what string
			switch {
			case d.plen > 0:
				what = fmt.Sprintf("size=%d", d.plen)
			case d.back != 0:
				what = fmt.Sprintf("back=%d", d.back)
			default:
				what = "no data (deleted or undone creation)"
			}
			_, err := fmt.Fprintf(w, "  rec pos=%d oid=%s tid=%s prev=%d %s\n", d.pos, d.oid, d.tid, d.prev, what)
			return err
		})
	return err
}

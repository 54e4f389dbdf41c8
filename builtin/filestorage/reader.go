package filestorage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/zeoraid/zeoraid/stack"
)

// reader reads records of one Data.fs through pread, so any number of
// goroutines can use it at once.
type reader struct {
	r    io.ReaderAt
	path string
}

func (r reader) corrupt(pos int64, format string, args ...any) error {
	return &FormatError{Path: r.path, Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// readFull reads exactly len(b) bytes at pos; a short read is corruption.
func (r reader) readFull(pos int64, b []byte) error {
	n, err := r.r.ReadAt(b, pos)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return r.corrupt(pos, "unexpected end of file (wanted %d bytes, got %d)", len(b), n)
	}
	return fmt.Errorf("%s: read at %d: %w", r.path, pos, err)
}

// txnHeader reads the transaction header at pos.
func (r reader) txnHeader(pos int64) (txnHeader, error) {
	var b [txnHeaderLen]byte
	if err := r.readFull(pos, b[:]); err != nil {
		return txnHeader{}, err
	}
	h := decodeTxnHeader(pos, b[:])
	if h.tlen < h.headerLen() {
		return h, r.corrupt(pos, "transaction length %d shorter than its header %d", h.tlen, h.headerLen())
	}
	return h, nil
}

// txnMeta reads user, description and extension of a transaction.
func (r reader) txnMeta(h *txnHeader) (stack.TxnMeta, error) {
	b := make([]byte, h.ulen+h.dlen+h.elen)
	if err := r.readFull(h.pos+txnHeaderLen, b); err != nil {
		return stack.TxnMeta{}, err
	}
	m := stack.TxnMeta{Tid: h.tid, Status: h.status}
	m.User = b[:h.ulen:h.ulen]
	m.Description = b[h.ulen : h.ulen+h.dlen : h.ulen+h.dlen]
	if h.elen > 0 {
		m.Extension = b[h.ulen+h.dlen:]
	}
	return m, nil
}

// trailer reads the redundant length before pos (the end of a transaction).
func (r reader) trailer(pos int64) (int64, error) {
	var b [8]byte
	if err := r.readFull(pos-8, b[:]); err != nil {
		return 0, err
	}
	return int64(binary.BigEndian.Uint64(b[:])), nil
}

// prevTxn returns the header of the transaction that ends at pos, checking
// that header and trailer agree.
func (r reader) prevTxn(pos int64) (txnHeader, error) {
	tl, err := r.trailer(pos)
	if err != nil {
		return txnHeader{}, err
	}
	tpos := pos - 8 - tl
	if tl < txnHeaderLen || tpos < int64(len(magicFS30)) {
		return txnHeader{}, r.corrupt(pos-8, "implausible transaction length %d in trailer", tl)
	}
	h, err := r.txnHeader(tpos)
	if err != nil {
		return h, err
	}
	if h.tlen != tl {
		return h, r.corrupt(tpos, "redundant transaction length check failed (%d != %d)", h.tlen, tl)
	}
	return h, nil
}

// checkDataHeader refuses what no reader can follow: a version, or a
// data length that is negative as an int64 or beyond any file.
func (r reader) checkDataHeader(h *dataHeader) error {
	if h.vlen != 0 {
		return r.corrupt(h.pos, "data record has a version (vlen %d); versions are not supported", h.vlen)
	}
	if h.plen < 0 || h.plen > maxFilePos {
		return r.corrupt(h.pos, "implausible data length %d", uint64(h.plen))
	}
	return nil
}

// recordIn decodes the data record at pos from body, the bytes of its
// transaction from base on: the header, its backpointer, and its data
// (a capped slice of body) when all of it is in body. What does not fit
// is for the caller to find out from the lengths.
func (r reader) recordIn(body []byte, base, pos int64) (dataHeader, []byte, error) {
	off := pos - base
	if off+dataHeaderLen > int64(len(body)) {
		return dataHeader{}, nil, r.corrupt(pos, "data record header runs past the end of its transaction")
	}
	h := decodeDataHeader(pos, body[off:])
	if err := r.checkDataHeader(&h); err != nil {
		return h, nil, err
	}
	if h.plen == 0 {
		if off+dataHeaderLen+8 > int64(len(body)) {
			return h, nil, r.corrupt(pos, "backpointer runs past the end of its transaction")
		}
		h.back = int64(binary.BigEndian.Uint64(body[off+dataHeaderLen:]))
		return h, nil, nil
	}
	if end := off + dataHeaderLen + h.plen; end <= int64(len(body)) {
		return h, body[off+dataHeaderLen : end : end], nil
	}
	return h, nil, nil
}

// dataHeader reads the data record header at pos, with its backpointer.
func (r reader) dataHeader(pos int64) (dataHeader, error) {
	var b [dataHeaderLen + 8]byte
	n, err := r.r.ReadAt(b[:], pos)
	if n < dataHeaderLen {
		if err == nil || errors.Is(err, io.EOF) {
			return dataHeader{}, r.corrupt(pos, "data record header runs past end of file")
		}
		return dataHeader{}, fmt.Errorf("%s: read at %d: %w", r.path, pos, err)
	}
	h := decodeDataHeader(pos, b[:])
	if err := r.checkDataHeader(&h); err != nil {
		return h, err
	}
	if h.plen == 0 {
		if n < dataHeaderLen+8 {
			return h, r.corrupt(pos, "backpointer runs past end of file")
		}
		h.back = int64(binary.BigEndian.Uint64(b[dataHeaderLen:]))
	}
	return h, nil
}

// bigRecord is the data length above which data first checks that the
// record ends inside the file, so a corrupt length cannot make it
// allocate gigabytes; smaller records are read in one go.
const bigRecord = 1 << 20

// data reads the pickle of a record with inline data.
func (r reader) data(h *dataHeader) ([]byte, error) {
	if h.plen > maxFilePos {
		return nil, r.corrupt(h.pos, "implausible data length %d", h.plen)
	}
	if h.plen > bigRecord {
		var last [1]byte
		if err := r.readFull(h.pos+dataHeaderLen+h.plen-1, last[:]); err != nil {
			return nil, err
		}
	}
	b := make([]byte, h.plen)
	if err := r.readFull(h.pos+dataHeaderLen, b); err != nil {
		return nil, err
	}
	return b, nil
}

// readAhead is how many bytes dataRecord reads at once: the header and,
// for most ZODB records, all of the data.
const readAhead = 1024

// readBuffers recycles dataRecord's read buffers.
var readBuffers = sync.Pool{New: func() any { return new([readAhead]byte) }}

// dataRecord reads the data record header at pos like dataHeader, in a
// single read that also fetches the data when it fits in readAhead
// bytes; data is then a copy of it, else nil (read it with data or
// resolve).
func (r reader) dataRecord(pos int64) (dataHeader, []byte, error) {
	b := readBuffers.Get().(*[readAhead]byte)
	defer readBuffers.Put(b)
	n, err := r.r.ReadAt(b[:], pos)
	if n < dataHeaderLen+8 {
		// Near the end of the file, or an error: the careful path.
		h, err := r.dataHeader(pos)
		return h, nil, err
	}
	h := decodeDataHeader(pos, b[:])
	if err := r.checkDataHeader(&h); err != nil {
		return h, nil, err
	}
	if h.plen == 0 {
		h.back = int64(binary.BigEndian.Uint64(b[dataHeaderLen:]))
		return h, nil, nil
	}
	if h.plen <= int64(n-dataHeaderLen) {
		return h, append([]byte(nil), b[dataHeaderLen:dataHeaderLen+h.plen]...), nil
	}
	_ = err // a short read only means the data is read separately
	return h, nil, nil
}

// errNoData means a backpointer chain ends in a "no data" marker.
var errNoData = errors.New("no data")

// resolve returns the bytes a record stands for, following backpointers
// (checking that each hop belongs to the same oid). It returns errNoData
// for a marker.
func (r reader) resolve(h dataHeader) ([]byte, error) {
	for {
		if h.plen > 0 {
			return r.data(&h)
		}
		if h.back == 0 {
			return nil, errNoData
		}
		if h.back >= h.pos {
			return nil, r.corrupt(h.pos, "backpointer %d does not point back", h.back)
		}
		next, err := r.dataHeader(h.back)
		if err != nil {
			return nil, err
		}
		if next.oid != h.oid {
			return nil, r.corrupt(h.pos, "backpointer to %d names oid %s, not %s", h.back, next.oid, h.oid)
		}
		h = next
	}
}

// backTid returns the tid of the record a backpointer points at directly
// (the iterator's data_txn).
func (r reader) backTid(back int64) (stack.Tid, error) {
	h, err := r.dataHeader(back)
	if err != nil {
		return 0, err
	}
	return h.tid, nil
}

// Package filestorage is the <filestorage> section: a storage kept in a
// Data.fs file that Python ZODB's FileStorage reads and writes too. The
// layout, the .index cache, the lock file, the blob directory and the pack
// follow docs/filestorage.md byte for byte, so an operator can move a
// Data.fs between a Python ZEO server and zeoraid in either direction.
package filestorage

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/zeoraid/zeoraid/stack"
)

// On-disk constants of the FileStorage format (docs/filestorage.md §1).
const (
	magicFS30 = "FS30" // written by every Python 3 ZODB
	magicFS21 = "FS21" // Python 2 ZODB: same layout, py2 pickles

	txnHeaderLen  = 23 // tid, tlen, status, ulen, dlen, elen
	dataHeaderLen = 42 // oid, tid, prev, tloc, vlen, plen
	trailerLen    = 8  // the redundant tlen after every transaction

	maxMetaLen = 65535   // each of user, description, extension
	maxFilePos = 1 << 48 // the .index keeps 6-byte positions
)

// Transaction status bytes (docs/filestorage.md §1.3).
const (
	statusCommitted  = ' '
	statusPacked     = 'p'
	statusCheckpoint = 'c'
	statusUndone     = 'u'
)

// txnHeader is the 23-byte header of a transaction record plus where it is.
type txnHeader struct {
	pos    int64
	tid    stack.Tid
	tlen   int64
	status byte
	ulen   int
	dlen   int
	elen   int
}

// headerLen is the length of the header with its metadata fields.
func (h *txnHeader) headerLen() int64 {
	return txnHeaderLen + int64(h.ulen+h.dlen+h.elen)
}

// firstRecord is the position of the transaction's first data record.
func (h *txnHeader) firstRecord() int64 { return h.pos + h.headerLen() }

// end is the end of the data records (the position of the trailer).
func (h *txnHeader) end() int64 { return h.pos + h.tlen }

// next is the position of the following transaction.
func (h *txnHeader) next() int64 { return h.pos + h.tlen + trailerLen }

func decodeTxnHeader(pos int64, b []byte) txnHeader {
	return txnHeader{
		pos:    pos,
		tid:    stack.Tid(binary.BigEndian.Uint64(b[0:8])),
		tlen:   int64(binary.BigEndian.Uint64(b[8:16])),
		status: b[16],
		ulen:   int(binary.BigEndian.Uint16(b[17:19])),
		dlen:   int(binary.BigEndian.Uint16(b[19:21])),
		elen:   int(binary.BigEndian.Uint16(b[21:23])),
	}
}

// appendTxnHeader appends the 23-byte header followed by the metadata.
func appendTxnHeader(b []byte, tid stack.Tid, tlen int64, status byte, user, desc, ext []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(tid))
	b = binary.BigEndian.AppendUint64(b, uint64(tlen))
	b = append(b, status)
	b = binary.BigEndian.AppendUint16(b, uint16(len(user)))
	b = binary.BigEndian.AppendUint16(b, uint16(len(desc)))
	b = binary.BigEndian.AppendUint16(b, uint16(len(ext)))
	b = append(b, user...)
	b = append(b, desc...)
	return append(b, ext...)
}

// dataHeader is the 42-byte header of a data record plus where it is.
type dataHeader struct {
	pos  int64
	oid  stack.Oid
	tid  stack.Tid
	prev int64
	tloc int64
	vlen int
	plen int64
	back int64 // only when plen == 0
}

// recordLen is the full length of the record on disk.
func (h *dataHeader) recordLen() int64 {
	if h.plen > 0 {
		return dataHeaderLen + h.plen
	}
	return dataHeaderLen + 8
}

func decodeDataHeader(pos int64, b []byte) dataHeader {
	return dataHeader{
		pos:  pos,
		oid:  stack.Oid(binary.BigEndian.Uint64(b[0:8])),
		tid:  stack.Tid(binary.BigEndian.Uint64(b[8:16])),
		prev: int64(binary.BigEndian.Uint64(b[16:24])),
		tloc: int64(binary.BigEndian.Uint64(b[24:32])),
		vlen: int(binary.BigEndian.Uint16(b[32:34])),
		plen: int64(binary.BigEndian.Uint64(b[34:42])),
	}
}

// appendDataRecord appends a data record: the pickle inline when data is
// not empty, otherwise the 8-byte backpointer back (0 for a "no data"
// marker).
func appendDataRecord(b []byte, oid stack.Oid, tid stack.Tid, prev, tloc int64, data []byte, back int64) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(oid))
	b = binary.BigEndian.AppendUint64(b, uint64(tid))
	b = binary.BigEndian.AppendUint64(b, uint64(prev))
	b = binary.BigEndian.AppendUint64(b, uint64(tloc))
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(len(data)))
	if len(data) > 0 {
		return append(b, data...)
	}
	return binary.BigEndian.AppendUint64(b, uint64(back))
}

// FormatError reports a Data.fs that does not follow the format: a bad
// magic, a corrupted record. Pos is the byte offset of the damage.
type FormatError struct {
	Path string
	Pos  int64
	Msg  string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("%s: offset %d: %s", e.Path, e.Pos, e.Msg)
}

// errFS21 explains what to do with a Python 2 file.
var errFS21 = errors.New("file has the Python 2 magic FS21 (py2 pickles); convert it with `zodbupdate --convert-py3` before serving it")

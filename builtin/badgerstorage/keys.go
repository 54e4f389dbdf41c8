package badgerstorage

import (
	"encoding/binary"
	"fmt"

	"github.com/zeoraid/zeoraid/stack"
)

// The key layout (docs/badgerstorage.md). Every key starts with one
// family byte; oids and tids are 8 bytes big-endian, so byte order is
// numeric order. Every entry a transaction writes carries the
// transaction's tid as its Badger version, and readers read at the last
// committed tid, so nothing of a transaction in progress is ever seen.
const (
	// famObject + oid + ^tid → a revision (revisionValue). The tid is
	// inverted so that an object's newest revision comes first.
	famObject = 'o'
	// famTxnOid + tid + oid → empty: the oids a transaction wrote, for
	// iteration, undo, pack and the removal of half-written transactions.
	famTxnOid = 'x'
	// famTxn + tid → the transaction record (txnValue), written by the
	// final, atomic commit of the transaction: its presence is what makes
	// the transaction committed.
	famTxn = 't'
	// famMeta + name → storage metadata. A commit writes it at its tid,
	// other writers at the version of the last metadata write, so the
	// newest version is always the current value.
	famMeta = 'm'
)

// Metadata keys.
var (
	keyFormat = []byte{famMeta, 'f'} // format version (formatVersion)
	keyLast   = []byte{famMeta, 'l'} // last committed tid
	keyNewOid = []byte{famMeta, 'n'} // the next oid NewOIDs hands out
	keyCount  = []byte{famMeta, 'c'} // number of objects with a revision
)

// formatVersion is stamped in keyFormat; Open refuses any other.
const formatVersion = 1

func objectPrefix(oid stack.Oid) []byte {
	return binary.BigEndian.AppendUint64([]byte{famObject}, uint64(oid))
}

func objectKey(oid stack.Oid, tid stack.Tid) []byte {
	return binary.BigEndian.AppendUint64(objectPrefix(oid), ^uint64(tid))
}

// parseObjectKey splits an object key into its oid and tid.
func parseObjectKey(k []byte) (stack.Oid, stack.Tid, error) {
	if len(k) != 17 || k[0] != famObject {
		return 0, 0, fmt.Errorf("malformed object key %x", k)
	}
	return stack.Oid(binary.BigEndian.Uint64(k[1:9])), stack.Tid(^binary.BigEndian.Uint64(k[9:])), nil
}

func txnOidPrefix(tid stack.Tid) []byte {
	return binary.BigEndian.AppendUint64([]byte{famTxnOid}, uint64(tid))
}

func txnOidKey(tid stack.Tid, oid stack.Oid) []byte {
	return binary.BigEndian.AppendUint64(txnOidPrefix(tid), uint64(oid))
}

func parseTxnOidKey(k []byte) (stack.Tid, stack.Oid, error) {
	if len(k) != 17 || k[0] != famTxnOid {
		return 0, 0, fmt.Errorf("malformed transaction oid key %x", k)
	}
	return stack.Tid(binary.BigEndian.Uint64(k[1:9])), stack.Oid(binary.BigEndian.Uint64(k[9:])), nil
}

func txnKey(tid stack.Tid) []byte {
	return binary.BigEndian.AppendUint64([]byte{famTxn}, uint64(tid))
}

func parseTxnKey(k []byte) (stack.Tid, error) {
	if len(k) != 9 || k[0] != famTxn {
		return 0, fmt.Errorf("malformed transaction key %x", k)
	}
	return stack.Tid(binary.BigEndian.Uint64(k[1:])), nil
}

// Revision tags: the first byte of a revision value. A tag byte, never
// an empty value, tells "no data", because Badger may read a stored empty
// value back as nil or as empty.
const (
	tagData   = 'd' // data follows
	tagNoData = 'z' // a deletion or an undone creation
)

// revisionValue is the value of an object key: tag, the tid of the
// transaction whose data this revision repeats (undo, restore; 0 if
// none), then the pickle.
func revisionValue(data []byte, dataTxn stack.Tid) []byte {
	tag := byte(tagData)
	if data == nil {
		tag = tagNoData
	}
	v := make([]byte, 0, 9+len(data))
	v = append(v, tag)
	v = binary.BigEndian.AppendUint64(v, uint64(dataTxn))
	return append(v, data...)
}

// revision is a decoded revision value; data is nil for tagNoData.
type revision struct {
	tid     stack.Tid
	data    []byte
	dataTxn stack.Tid
}

func parseRevision(tid stack.Tid, v []byte) (revision, error) {
	if len(v) < 9 {
		return revision{}, fmt.Errorf("revision %s: value of %d bytes is too short", tid, len(v))
	}
	r := revision{tid: tid, dataTxn: stack.Tid(binary.BigEndian.Uint64(v[1:9]))}
	switch v[0] {
	case tagData:
		r.data = append([]byte{}, v[9:]...)
	case tagNoData:
	default:
		return revision{}, fmt.Errorf("revision %s: unknown tag %q", tid, v[0])
	}
	return r, nil
}

// txnRecord is a decoded transaction record.
type txnRecord struct {
	meta    stack.TxnMeta // Tid and Status set
	records int           // number of object records
	size    int64         // bytes of data in them
}

// txnValue encodes a transaction record: status, user and description
// (each length-prefixed), the record count and data size, then the
// extension bytes.
func txnValue(r txnRecord) []byte {
	m := r.meta
	v := make([]byte, 0, 1+len(m.User)+len(m.Description)+len(m.Extension)+4*binary.MaxVarintLen64)
	v = append(v, m.Status)
	v = binary.AppendUvarint(v, uint64(len(m.User)))
	v = append(v, m.User...)
	v = binary.AppendUvarint(v, uint64(len(m.Description)))
	v = append(v, m.Description...)
	v = binary.AppendUvarint(v, uint64(r.records))
	v = binary.AppendUvarint(v, uint64(r.size))
	return append(v, m.Extension...)
}

func parseTxn(tid stack.Tid, v []byte) (txnRecord, error) {
	bad := func(what string) (txnRecord, error) {
		return txnRecord{}, fmt.Errorf("transaction record %s: %s", tid, what)
	}
	if len(v) < 1 {
		return bad("empty")
	}
	r := txnRecord{meta: stack.TxnMeta{Tid: tid, Status: v[0]}}
	rest := v[1:]
	field := func() ([]byte, bool) {
		n, k := binary.Uvarint(rest)
		if k <= 0 || uint64(len(rest)-k) < n {
			return nil, false
		}
		b := append([]byte{}, rest[k:k+int(n)]...)
		rest = rest[k+int(n):]
		return b, true
	}
	number := func() (uint64, bool) {
		n, k := binary.Uvarint(rest)
		if k <= 0 {
			return 0, false
		}
		rest = rest[k:]
		return n, true
	}
	var ok bool
	if r.meta.User, ok = field(); !ok {
		return bad("truncated user")
	}
	if r.meta.Description, ok = field(); !ok {
		return bad("truncated description")
	}
	n, ok := number()
	if !ok {
		return bad("truncated record count")
	}
	size, ok := number()
	if !ok {
		return bad("truncated size")
	}
	r.records, r.size = int(n), int64(size)
	r.meta.Extension = append([]byte{}, rest...)
	return r, nil
}

func uint64Value(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func parseUint64(what string, v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("metadata %s: %d bytes, want 8", what, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

package stack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"

	ogórek "github.com/kisielk/og-rek"
)

// Refs returns the oids a ZODB data record references, in pickle order
// (ZODB's referencesf), for pack's garbage collection. A record is two
// pickles back to back (class, then state) sharing one memo. Persistent ids
// that are bytes or str (an oid) or a tuple (oid, class) count; list forms
// (['w', ...] weak references, ['m', ...]/['n', ...] cross-database
// references) are ignored, as referencesf ignores them. Empty data (a
// deletion) references nothing.
//
// It runs a small pickle machine for protocols 0 to 5 that keeps only what
// persistent ids are made of (bytes, str, tuples) and treats every other
// object (globals, instances, dicts, lists) as an opaque placeholder, so it
// never needs the classes: og-rek's full decoder cannot replay BUILD, which
// ZODB state pickles use for non-persistent sub-objects.
func Refs(data []byte) ([]Oid, error) {
	if len(data) == 0 {
		return nil, nil
	}
	m := &refScanner{data: data, memo: map[uint64]any{}}
	if err := m.run(); err != nil {
		return nil, fmt.Errorf("references: %w", err)
	}
	return m.refs, nil
}

// opaque stands for any object whose content Refs does not need.
type opaque struct{}

// pyBytes is a bytes or py2 str value; pyStr a unicode value; pyTuple a tuple.
type (
	pyBytes string
	pyStr   string
	pyTuple []any
)

type refScanner struct {
	data  []byte
	pos   int
	stack []any
	marks []int
	memo  map[uint64]any
	refs  []Oid
}

var errTruncated = errors.New("truncated pickle")

func (m *refScanner) take(n uint64) ([]byte, error) {
	if n > uint64(len(m.data)-m.pos) {
		return nil, errTruncated
	}
	b := m.data[m.pos : m.pos+int(n)]
	m.pos += int(n)
	return b, nil
}

func (m *refScanner) uint(size int) (uint64, error) {
	b, err := m.take(uint64(size))
	if err != nil {
		return 0, err
	}
	var v uint64
	for i := size - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, nil
}

func (m *refScanner) line() ([]byte, error) {
	i := bytes.IndexByte(m.data[m.pos:], '\n')
	if i < 0 {
		return nil, errTruncated
	}
	b := m.data[m.pos : m.pos+i]
	m.pos += i + 1
	return b, nil
}

// counted reads a length of size bytes, then that many bytes.
func (m *refScanner) counted(size int) ([]byte, error) {
	n, err := m.uint(size)
	if err != nil {
		return nil, err
	}
	return m.take(n)
}

func (m *refScanner) push(v any) { m.stack = append(m.stack, v) }

func (m *refScanner) pop(n int) ([]any, error) {
	base := 0
	if len(m.marks) > 0 {
		base = m.marks[len(m.marks)-1]
	}
	if len(m.stack)-n < base {
		return nil, errors.New("pickle stack underflow")
	}
	v := m.stack[len(m.stack)-n:]
	m.stack = m.stack[:len(m.stack)-n]
	return v, nil
}

func (m *refScanner) popMark() ([]any, error) {
	if len(m.marks) == 0 {
		return nil, errors.New("pickle mark missing")
	}
	k := m.marks[len(m.marks)-1]
	m.marks = m.marks[:len(m.marks)-1]
	v := append([]any(nil), m.stack[k:]...)
	m.stack = m.stack[:k]
	return v, nil
}

// replace pops n items and pushes v.
func (m *refScanner) replace(n int, v any) error {
	if _, err := m.pop(n); err != nil {
		return err
	}
	m.push(v)
	return nil
}

func (m *refScanner) put(idx uint64) error {
	if len(m.stack) == 0 {
		return errors.New("memo put on empty stack")
	}
	m.memo[idx] = m.stack[len(m.stack)-1]
	return nil
}

func (m *refScanner) get(idx uint64) error {
	v, ok := m.memo[idx]
	if !ok {
		return fmt.Errorf("memo key %d missing", idx)
	}
	m.push(v)
	return nil
}

func (m *refScanner) persistentID(pid any) error {
	if t, ok := pid.(pyTuple); ok {
		if len(t) == 0 {
			return errors.New("empty persistent id tuple")
		}
		pid = t[0]
	}
	var oid []byte
	switch v := pid.(type) {
	case pyBytes:
		oid = []byte(v)
	case pyStr:
		oid = []byte(v)
	default:
		return nil // list forms: weak and cross-database references
	}
	o, err := OidFromBytes(oid)
	if err != nil {
		return fmt.Errorf("persistent id: %w", err)
	}
	m.refs = append(m.refs, o)
	return nil
}

// run scans pickles until the data ends after a STOP.
func (m *refScanner) run() error {
	for m.pos < len(m.data) {
		if err := m.pickle(); err != nil {
			return fmt.Errorf("at byte %d: %w", m.pos, err)
		}
	}
	return nil
}

// pickle scans one pickle up to its STOP.
func (m *refScanner) pickle() error {
	m.stack, m.marks = m.stack[:0], m.marks[:0]
	for {
		b, err := m.take(1)
		if err != nil {
			return err
		}
		op := b[0]
		var v []byte
		var n uint64
		switch op {
		case '.': // STOP
			return nil
		case '(': // MARK
			m.marks = append(m.marks, len(m.stack))
		case '0': // POP
			_, err = m.pop(1)
		case '1': // POP_MARK
			_, err = m.popMark()
		case '2': // DUP
			if len(m.stack) == 0 {
				return errors.New("DUP on empty stack")
			}
			m.push(m.stack[len(m.stack)-1])
		case 'F', 'I', 'L': // FLOAT, INT, LONG
			_, err = m.line()
			m.push(opaque{})
		case 'J': // BININT
			_, err = m.take(4)
			m.push(opaque{})
		case 'K': // BININT1
			_, err = m.take(1)
			m.push(opaque{})
		case 'M': // BININT2
			_, err = m.take(2)
			m.push(opaque{})
		case 'G': // BINFLOAT
			_, err = m.take(8)
			m.push(opaque{})
		case 0x8a: // LONG1
			_, err = m.counted(1)
			m.push(opaque{})
		case 0x8b: // LONG4
			_, err = m.counted(4)
			m.push(opaque{})
		case 'N', 0x88, 0x89, ']', '}', 0x8f, 0x97: // NONE NEWTRUE NEWFALSE EMPTY_LIST EMPTY_DICT EMPTY_SET NEXT_BUFFER
			m.push(opaque{})
		case ')': // EMPTY_TUPLE
			m.push(pyTuple{})
		case 'P': // PERSID: a text line
			if v, err = m.line(); err == nil {
				err = m.persistentID(pyStr(v))
				m.push(opaque{})
			}
		case 'Q': // BINPERSID
			var pid []any
			if pid, err = m.pop(1); err == nil {
				err = m.persistentID(pid[0])
				m.push(opaque{})
			}
		case 'R', 0x81, 0x93: // REDUCE, NEWOBJ, STACK_GLOBAL
			err = m.replace(2, opaque{})
		case 0x92: // NEWOBJ_EX
			err = m.replace(3, opaque{})
		case 'a', 'b': // APPEND, BUILD
			_, err = m.pop(1)
		case 's': // SETITEM
			_, err = m.pop(2)
		case 'e', 'u', 0x90: // APPENDS, SETITEMS, ADDITEMS
			_, err = m.popMark()
		case 'd', 'l', 'o', 0x91: // DICT, LIST, OBJ, FROZENSET
			if _, err = m.popMark(); err == nil {
				m.push(opaque{})
			}
		case 't': // TUPLE
			var items []any
			if items, err = m.popMark(); err == nil {
				m.push(pyTuple(items))
			}
		case 0x85, 0x86, 0x87: // TUPLE1..3
			var items []any
			if items, err = m.pop(int(op - 0x84)); err == nil {
				m.push(append(pyTuple(nil), items...))
			}
		case 'c': // GLOBAL
			if _, err = m.line(); err == nil {
				_, err = m.line()
			}
			m.push(opaque{})
		case 'i': // INST
			if _, err = m.line(); err == nil {
				if _, err = m.line(); err == nil {
					if _, err = m.popMark(); err == nil {
						m.push(opaque{})
					}
				}
			}
		case 'S': // STRING: a quoted py2 str
			if v, err = m.line(); err == nil {
				var s string
				if s, err = unquotePyString(v); err == nil {
					m.push(pyBytes(s))
				}
			}
		case 'V': // UNICODE, raw-unicode-escape; oids in it are ASCII
			if v, err = m.line(); err == nil {
				m.push(pyStr(v))
			}
		case 'T', 'B': // BINSTRING, BINBYTES
			if v, err = m.counted(4); err == nil {
				m.push(pyBytes(v))
			}
		case 'U', 'C': // SHORT_BINSTRING, SHORT_BINBYTES
			if v, err = m.counted(1); err == nil {
				m.push(pyBytes(v))
			}
		case 0x8e: // BINBYTES8
			if v, err = m.counted(8); err == nil {
				m.push(pyBytes(v))
			}
		case 'X': // BINUNICODE
			if v, err = m.counted(4); err == nil {
				m.push(pyStr(v))
			}
		case 0x8c: // SHORT_BINUNICODE
			if v, err = m.counted(1); err == nil {
				m.push(pyStr(v))
			}
		case 0x8d: // BINUNICODE8
			if v, err = m.counted(8); err == nil {
				m.push(pyStr(v))
			}
		case 0x96: // BYTEARRAY8
			_, err = m.counted(8)
			m.push(opaque{})
		case 0x98: // READONLY_BUFFER
		case 0x80: // PROTO
			_, err = m.take(1)
		case 0x95: // FRAME
			_, err = m.take(8)
		case 0x82, 0x83, 0x84: // EXT1, EXT2, EXT4
			_, err = m.take(map[byte]uint64{0x82: 1, 0x83: 2, 0x84: 4}[op])
			m.push(opaque{})
		case 'g', 'p': // GET, PUT: decimal line
			if v, err = m.line(); err == nil {
				if n, err = strconv.ParseUint(string(v), 10, 64); err == nil {
					if op == 'g' {
						err = m.get(n)
					} else {
						err = m.put(n)
					}
				}
			}
		case 'h', 'q': // BINGET, BINPUT
			if n, err = m.uint(1); err == nil {
				if op == 'h' {
					err = m.get(n)
				} else {
					err = m.put(n)
				}
			}
		case 'j', 'r': // LONG_BINGET, LONG_BINPUT
			if n, err = m.uint(4); err == nil {
				if op == 'j' {
					err = m.get(n)
				} else {
					err = m.put(n)
				}
			}
		case 0x94: // MEMOIZE
			err = m.put(uint64(len(m.memo)))
		default:
			return fmt.Errorf("unknown pickle opcode 0x%02x", op)
		}
		if err != nil {
			return err
		}
	}
}

// unquotePyString decodes the repr of a py2 str as the STRING opcode holds it.
func unquotePyString(q []byte) (string, error) {
	if len(q) < 2 || q[0] != q[len(q)-1] || (q[0] != '\'' && q[0] != '"') {
		return "", fmt.Errorf("STRING argument %q is not quoted", q)
	}
	q = q[1 : len(q)-1]
	var out []byte
	for i := 0; i < len(q); i++ {
		if q[i] != '\\' || i+1 == len(q) {
			out = append(out, q[i])
			continue
		}
		i++
		switch c := q[i]; c {
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'x':
			if i+2 >= len(q) {
				return "", fmt.Errorf("bad \\x escape in STRING %q", q)
			}
			b, err := strconv.ParseUint(string(q[i+1:i+3]), 16, 8)
			if err != nil {
				return "", fmt.Errorf("bad \\x escape in STRING %q", q)
			}
			out = append(out, byte(b))
			i += 2
		default:
			out = append(out, c) // \\ \' \"
		}
	}
	return string(out), nil
}

// DecodeExtension unpickles a transaction's extension dict as FileStorage
// stores it (any protocol 0–5). Empty bytes mean an empty dict. Values come
// back as Go values: str as string, bytes as []byte, a py2 str as string
// when ASCII and []byte otherwise (ZODB reads with errors='bytes'), int as
// int64 or *big.Int, float64, bool, None as nil, list as []any, tuple as
// ogórek.Tuple, dict as map[string]any (map[any]any for other keys).
// Other objects stay as og-rek represents them (ogórek.Call, ogórek.Class).
func DecodeExtension(b []byte) (map[string]any, error) {
	if len(b) == 0 {
		return map[string]any{}, nil
	}
	d := ogórek.NewDecoderWithConfig(bytes.NewReader(b), &ogórek.DecoderConfig{
		StrictUnicode: true,
		PersistentLoad: func(ogórek.Ref) (any, error) {
			return nil, errors.New("persistent reference in a transaction extension")
		},
	})
	v, err := d.Decode()
	if err != nil {
		return nil, fmt.Errorf("extension: %w", err)
	}
	m, ok := fromPickle(v).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("extension: pickle holds %T, want a dict with str keys", v)
	}
	return m, nil
}

func fromPickle(v any) any {
	switch v := v.(type) {
	case ogórek.None:
		return nil
	case ogórek.Bytes:
		return []byte(v)
	case ogórek.ByteString:
		for i := 0; i < len(v); i++ {
			if v[i] >= 0x80 {
				return []byte(v)
			}
		}
		return string(v)
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = fromPickle(x)
		}
		return out
	case ogórek.Tuple:
		out := make(ogórek.Tuple, len(v))
		for i, x := range v {
			out[i] = fromPickle(x)
		}
		return out
	case map[any]any:
		strKeys := map[string]any{}
		for k, x := range v {
			switch k := fromPickle(k).(type) {
			case string:
				strKeys[k] = fromPickle(x)
			default:
				out := map[any]any{}
				for k, x := range v {
					out[fromPickle(k)] = fromPickle(x)
				}
				return out
			}
		}
		return strKeys
	}
	return v
}

// EncodeExtension pickles an extension dict the way ZODB 5+ stores it in
// Data.fs: protocol 3 with the memo, as CPython's pickle.dumps(d, 3) does
// (byte-identical for dicts whose strings are distinct objects). An empty
// or nil dict encodes as no bytes. Keys are written in sorted order, since
// Go maps have none. Accepted values: string, []byte, bool, nil, Go
// integers, *big.Int, float32/64, []any, ogórek.Tuple and map[string]any.
func EncodeExtension(ext map[string]any) ([]byte, error) {
	if len(ext) == 0 {
		return nil, nil
	}
	e := &extEncoder{}
	e.buf.Write([]byte{0x80, 3})
	if err := e.value(ext); err != nil {
		return nil, fmt.Errorf("extension: %w", err)
	}
	e.buf.WriteByte('.')
	return e.buf.Bytes(), nil
}

// pickleBatch is CPython's _BATCHSIZE for APPENDS and SETITEMS.
const pickleBatch = 1000

type extEncoder struct {
	buf  bytes.Buffer
	memo uint32
}

func (e *extEncoder) memoize() {
	if e.memo < 256 {
		e.buf.Write([]byte{'q', byte(e.memo)})
	} else {
		e.buf.WriteByte('r')
		e.buf.Write(binary.LittleEndian.AppendUint32(nil, e.memo))
	}
	e.memo++
}

func (e *extEncoder) int(i *big.Int) {
	switch {
	case i.Sign() >= 0 && i.Cmp(big.NewInt(0xff)) <= 0:
		e.buf.Write([]byte{'K', byte(i.Int64())})
	case i.Sign() >= 0 && i.Cmp(big.NewInt(0xffff)) <= 0:
		e.buf.WriteByte('M')
		e.buf.Write(binary.LittleEndian.AppendUint16(nil, uint16(i.Int64())))
	case i.IsInt64() && i.Int64() >= math.MinInt32 && i.Int64() <= math.MaxInt32:
		e.buf.WriteByte('J')
		e.buf.Write(binary.LittleEndian.AppendUint32(nil, uint32(int32(i.Int64()))))
	default:
		// LONG1: little-endian two's complement, as short as possible.
		n := (i.BitLen() + 8) / 8 // room for the sign bit
		mod := new(big.Int).Lsh(big.NewInt(1), uint(8*n))
		u := new(big.Int).Set(i)
		if u.Sign() < 0 {
			u.Add(u, mod)
		}
		be := u.FillBytes(make([]byte, n))
		le := make([]byte, n)
		for k := range be {
			le[n-1-k] = be[k]
		}
		// drop a redundant sign byte, as CPython's encode_long does
		if n > 1 && ((le[n-1] == 0 && le[n-2]&0x80 == 0) || (le[n-1] == 0xff && le[n-2]&0x80 != 0)) {
			le = le[:n-1]
		}
		e.buf.Write([]byte{0x8a, byte(len(le))})
		e.buf.Write(le)
	}
}

func (e *extEncoder) value(v any) error {
	switch v := v.(type) {
	case nil:
		e.buf.WriteByte('N')
	case bool:
		if v {
			e.buf.WriteByte(0x88)
		} else {
			e.buf.WriteByte(0x89)
		}
	case int:
		e.int(big.NewInt(int64(v)))
	case int8:
		e.int(big.NewInt(int64(v)))
	case int16:
		e.int(big.NewInt(int64(v)))
	case int32:
		e.int(big.NewInt(int64(v)))
	case int64:
		e.int(big.NewInt(v))
	case uint:
		e.int(new(big.Int).SetUint64(uint64(v)))
	case uint8:
		e.int(big.NewInt(int64(v)))
	case uint16:
		e.int(big.NewInt(int64(v)))
	case uint32:
		e.int(big.NewInt(int64(v)))
	case uint64:
		e.int(new(big.Int).SetUint64(v))
	case *big.Int:
		e.int(v)
	case float32:
		return e.value(float64(v))
	case float64:
		e.buf.WriteByte('G')
		e.buf.Write(binary.BigEndian.AppendUint64(nil, math.Float64bits(v)))
	case string:
		e.buf.WriteByte('X')
		e.buf.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(v))))
		e.buf.WriteString(v)
		e.memoize()
	case []byte:
		if len(v) < 256 {
			e.buf.Write([]byte{'C', byte(len(v))})
		} else {
			e.buf.WriteByte('B')
			e.buf.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(v))))
		}
		e.buf.Write(v)
		e.memoize()
	case ogórek.Tuple:
		if len(v) == 0 {
			e.buf.WriteByte(')')
			return nil
		}
		if len(v) > 3 {
			e.buf.WriteByte('(')
		}
		for _, x := range v {
			if err := e.value(x); err != nil {
				return err
			}
		}
		if len(v) > 3 {
			e.buf.WriteByte('t')
		} else {
			e.buf.WriteByte(0x84 + byte(len(v)))
		}
		e.memoize()
	case []any:
		e.buf.WriteByte(']')
		e.memoize()
		if len(v) == 1 {
			if err := e.value(v[0]); err != nil {
				return err
			}
			e.buf.WriteByte('a')
			return nil
		}
		for start := 0; start < len(v); start += pickleBatch {
			e.buf.WriteByte('(')
			for _, x := range v[start:min(start+pickleBatch, len(v))] {
				if err := e.value(x); err != nil {
					return err
				}
			}
			e.buf.WriteByte('e')
		}
	case map[string]any:
		e.buf.WriteByte('}')
		e.memoize()
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if len(keys) == 1 {
			if err := e.item(keys[0], v[keys[0]]); err != nil {
				return err
			}
			e.buf.WriteByte('s')
			return nil
		}
		if len(keys) == 0 {
			return nil
		}
		// CPython writes MARK..SETITEMS batches and, when the last batch
		// was full, one more (empty) batch.
		for start := 0; ; start += pickleBatch {
			e.buf.WriteByte('(')
			end := min(start+pickleBatch, len(keys))
			for _, k := range keys[start:end] {
				if err := e.item(k, v[k]); err != nil {
					return err
				}
			}
			e.buf.WriteByte('u')
			if end-start < pickleBatch {
				break
			}
		}
	default:
		return fmt.Errorf("cannot pickle a %T", v)
	}
	return nil
}

func (e *extEncoder) item(k string, v any) error {
	if err := e.value(k); err != nil {
		return err
	}
	if err := e.value(v); err != nil {
		return fmt.Errorf("key %q: %w", k, err)
	}
	return nil
}

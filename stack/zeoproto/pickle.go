package zeoproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"sync"

	"github.com/zeoraid/zeoraid/stack"
)

// Pickle opcodes used by ZEO (protocol 0 to 4).
const (
	opMark           = '('
	opStop           = '.'
	opPop            = '0'
	opPopMark        = '1'
	opDup            = '2'
	opFloat          = 'F'
	opInt            = 'I'
	opBinInt         = 'J'
	opBinInt1        = 'K'
	opLong           = 'L'
	opBinInt2        = 'M'
	opNone           = 'N'
	opPersID         = 'P'
	opBinPersID      = 'Q'
	opReduce         = 'R'
	opString         = 'S'
	opBinString      = 'T'
	opShortBinString = 'U'
	opUnicode        = 'V'
	opBinUnicode     = 'X'
	opAppend         = 'a'
	opBuild          = 'b'
	opGlobal         = 'c'
	opDict           = 'd'
	opEmptyDict      = '}'
	opAppends        = 'e'
	opGet            = 'g'
	opBinGet         = 'h'
	opInst           = 'i'
	opLongBinGet     = 'j'
	opList           = 'l'
	opEmptyList      = ']'
	opObj            = 'o'
	opPut            = 'p'
	opBinPut         = 'q'
	opLongBinPut     = 'r'
	opSetItem        = 's'
	opTuple          = 't'
	opEmptyTuple     = ')'
	opSetItems       = 'u'
	opBinFloat       = 'G'
	opProto          = 0x80
	opNewObj         = 0x81
	opTuple1         = 0x85
	opTuple2         = 0x86
	opTuple3         = 0x87
	opNewTrue        = 0x88
	opNewFalse       = 0x89
	opLong1          = 0x8a
	opLong4          = 0x8b
	opBinBytes       = 'B'
	opShortBinBytes  = 'C'
	// protocol 4, accepted when decoding only
	opShortBinUnicode = 0x8c
	opBinUnicode8     = 0x8d
	opBinBytes8       = 0x8e
	opEmptySet        = 0x8f
	opAddItems        = 0x90
	opFrozenSet       = 0x91
	opNewObjEx        = 0x92
	opStackGlobal     = 0x93
	opMemoize         = 0x94
	opFrame           = 0x95
	opByteArray8      = 0x96
)

// safeGlobalModules are the modules a Python ZEO server (5.2.2 and later)
// lets a request pickle name in a GLOBAL (ZEO's server_find_global). A
// global from any other module is refused, as Python refuses it.
var safeGlobalModules = map[string]bool{
	"ZopeUndo.Prefix": true,
	"zodbpickle":      true,
	"builtins":        true,
	"copy_reg":        true,
	"__builtin__":     true,
}

// GlobalError is a pickle naming a class or function outside the modules
// a Python ZEO server accepts (docs/protocol.md §3.6). Python closes the
// connection on such a request; so should the caller.
type GlobalError struct {
	Module, Name string
}

func (e *GlobalError) Error() string {
	return fmt.Sprintf("pickle: global %s.%s not allowed (module not in the ZEO whitelist)", e.Module, e.Name)
}

// appendPickle appends the protocol-3 pickle of v, exactly as Python's
// pickler in fast mode writes it, without PROTO and STOP.
func appendPickle(b []byte, v any) ([]byte, error) {
	return appendPickleDepth(b, v, 0)
}

func appendPickleDepth(b []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return b, fmt.Errorf("pickle: value nested deeper than %d", maxDepth)
	}
	switch v := v.(type) {
	case nil:
		return append(b, opNone), nil
	case bool:
		if v {
			return append(b, opNewTrue), nil
		}
		return append(b, opNewFalse), nil
	case int64:
		return appendPickleInt(b, v), nil
	case int:
		return appendPickleInt(b, int64(v)), nil
	case int32:
		return appendPickleInt(b, int64(v)), nil
	case uint32:
		return appendPickleInt(b, int64(v)), nil
	case uint64:
		if v > math.MaxInt64 {
			return appendPickleBig(b, new(big.Int).SetUint64(v)), nil
		}
		return appendPickleInt(b, int64(v)), nil
	case *big.Int:
		if v.IsInt64() {
			return appendPickleInt(b, v.Int64()), nil
		}
		return appendPickleBig(b, v), nil
	case float64:
		b = append(b, opBinFloat)
		return binary.BigEndian.AppendUint64(b, math.Float64bits(v)), nil
	case string:
		return appendPickleString(b, v), nil
	case []byte:
		return appendPickleBytes(b, v), nil
	case stack.Oid:
		return appendPickleBytes(b, v.Bytes()), nil
	case stack.Tid:
		return appendPickleBytes(b, v.Bytes()), nil
	case Tuple:
		return appendPickleTuple(b, v, depth)
	case []any:
		return appendPickleList(b, v, depth)
	case []stack.Oid:
		l := make([]any, len(v))
		for i, o := range v {
			l[i] = o
		}
		return appendPickleList(b, l, depth)
	case Dict:
		return appendPickleDict(b, v, depth)
	case map[string]any:
		return appendPickleDict(b, sortedDict(v), depth)
	case Global:
		return appendPickleGlobal(b, v), nil
	case *Object:
		return appendPickleObject(b, v, depth)
	}
	return b, fmt.Errorf("pickle: cannot encode Go %T", v)
}

func appendPickleString(b []byte, v string) []byte {
	b = append(b, opBinUnicode)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

func appendPickleBytes(b []byte, v []byte) []byte {
	if len(v) < 256 {
		b = append(b, opShortBinBytes, byte(len(v)))
	} else {
		b = append(b, opBinBytes)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	}
	return append(b, v...)
}

func appendPickleInt(b []byte, n int64) []byte {
	switch {
	case n >= 0 && n <= 0xff:
		return append(b, opBinInt1, byte(n))
	case n >= 0 && n <= 0xffff:
		return append(b, opBinInt2, byte(n), byte(n>>8))
	case n >= math.MinInt32 && n <= math.MaxInt32:
		b = append(b, opBinInt)
		return binary.LittleEndian.AppendUint32(b, uint32(int32(n)))
	}
	return appendPickleBig(b, big.NewInt(n))
}

// appendPickleBig writes LONG1/LONG4 with the minimal little-endian two's
// complement bytes, as Python's encode_long does.
func appendPickleBig(b []byte, n *big.Int) []byte {
	enc := encodeLong(n)
	if len(enc) < 256 {
		b = append(b, opLong1, byte(len(enc)))
	} else {
		b = append(b, opLong4)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(enc)))
	}
	return append(b, enc...)
}

// encodeLong is Python's pickle.encode_long: (bit_length>>3)+1 bytes of
// little-endian two's complement, dropping a redundant 0xff sign byte of a
// negative number.
func encodeLong(n *big.Int) []byte {
	if n.Sign() == 0 {
		return nil
	}
	nbytes := n.BitLen()>>3 + 1
	var mag *big.Int
	if n.Sign() < 0 {
		mag = new(big.Int).Lsh(big.NewInt(1), uint(nbytes*8))
		mag.Add(mag, n)
	} else {
		mag = n
	}
	be := mag.FillBytes(make([]byte, nbytes))
	le := make([]byte, nbytes)
	for i := range be {
		le[i] = be[nbytes-1-i]
	}
	if n.Sign() < 0 && nbytes > 1 && le[nbytes-1] == 0xff && le[nbytes-2]&0x80 != 0 {
		le = le[:nbytes-1]
	}
	return le
}

// decodeLong is the inverse of encodeLong.
func decodeLong(le []byte) any {
	if len(le) == 0 {
		return int64(0)
	}
	be := make([]byte, len(le))
	for i := range le {
		be[i] = le[len(le)-1-i]
	}
	n := new(big.Int).SetBytes(be)
	if le[len(le)-1]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(len(le)*8)))
	}
	if n.IsInt64() {
		return n.Int64()
	}
	return n
}

func appendPickleTuple(b []byte, t Tuple, depth int) ([]byte, error) {
	var err error
	switch len(t) {
	case 0:
		return append(b, opEmptyTuple), nil
	case 1, 2, 3:
		for _, it := range t {
			if b, err = appendPickleDepth(b, it, depth+1); err != nil {
				return b, err
			}
		}
		return append(b, opTuple1+byte(len(t)-1)), nil
	}
	b = append(b, opMark)
	for _, it := range t {
		if b, err = appendPickleDepth(b, it, depth+1); err != nil {
			return b, err
		}
	}
	return append(b, opTuple), nil
}

// batchSize is Python's pickler batch for APPENDS and SETITEMS.
const batchSize = 1000

func appendPickleList(b []byte, l []any, depth int) ([]byte, error) {
	b = append(b, opEmptyList)
	var err error
	for len(l) > 0 {
		n := min(len(l), batchSize)
		if n == 1 {
			if b, err = appendPickleDepth(b, l[0], depth+1); err != nil {
				return b, err
			}
			b = append(b, opAppend)
		} else {
			b = append(b, opMark)
			for _, it := range l[:n] {
				if b, err = appendPickleDepth(b, it, depth+1); err != nil {
					return b, err
				}
			}
			b = append(b, opAppends)
		}
		l = l[n:]
	}
	return b, nil
}

func appendPickleDict(b []byte, d Dict, depth int) ([]byte, error) {
	b = append(b, opEmptyDict)
	var err error
	for len(d) > 0 {
		n := min(len(d), batchSize)
		if n > 1 {
			b = append(b, opMark)
		}
		for _, it := range d[:n] {
			if b, err = appendPickleDepth(b, it.Key, depth+1); err != nil {
				return b, err
			}
			if b, err = appendPickleDepth(b, it.Value, depth+1); err != nil {
				return b, err
			}
		}
		if n > 1 {
			b = append(b, opSetItems)
		} else {
			b = append(b, opSetItem)
		}
		d = d[n:]
	}
	return b, nil
}

func appendPickleGlobal(b []byte, g Global) []byte {
	b = append(b, opGlobal)
	b = append(b, g.Module...)
	b = append(b, '\n')
	b = append(b, g.Name...)
	return append(b, '\n')
}

func appendPickleObject(b []byte, o *Object, depth int) ([]byte, error) {
	b = appendPickleGlobal(b, o.Callable)
	b, err := appendPickleTuple(b, o.Args, depth+1)
	if err != nil {
		return b, err
	}
	if o.NewObj {
		b = append(b, opNewObj)
	} else {
		b = append(b, opReduce)
	}
	if o.State != nil {
		if b, err = appendPickleDepth(b, o.State, depth+1); err != nil {
			return b, err
		}
		b = append(b, opBuild)
	}
	return b, nil
}

func sortedDict(m map[string]any) Dict {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	d := make(Dict, len(keys))
	for i, k := range keys {
		d[i] = DictItem{k, m[k]}
	}
	return d
}

// EncodePickle returns v as a complete protocol-3 pickle (PROTO 3 … STOP),
// byte for byte what ZEO's Python pickler in fast mode produces.
func EncodePickle(v any) ([]byte, error) {
	b, err := appendPickle([]byte{opProto, 3}, v)
	if err != nil {
		return nil, err
	}
	return append(b, opStop), nil
}

// maxPickleDepth bounds nesting (MARKs and containers) so a hostile pickle
// cannot make the decoder build absurd structures.
const maxPickleDepth = 10000

// DecodePickle decodes one pickle (protocols 0 to 4, the subset ZEO peers
// produce) into the value model. It never imports or calls anything:
// GLOBAL and STACK_GLOBAL yield a Global if its module is on ZEO's request
// whitelist and a *GlobalError otherwise; REDUCE, NEWOBJ and BUILD on a
// Global yield an *Object. Persistent ids are refused. The Python 2 string
// opcodes (STRING, BINSTRING, SHORT_BINSTRING) decode as bytes. Memo
// opcodes are honoured (see freeze for the one difference from Python),
// within a work budget proportional to the input. Trailing bytes after STOP
// are an error.
func DecodePickle(p []byte) (any, error) {
	return decodePickle(p, false)
}

// DecodeReplyPickle is DecodePickle for what a server sends: every global
// is kept as an opaque Global or *Object (docs/protocol.md §3.5), so odd
// values such as an extension dict holding a datetime survive. Nothing is
// resolved or called either way.
func DecodeReplyPickle(p []byte) (any, error) {
	return decodePickle(p, true)
}

func decodePickle(p []byte, anyGlobal bool) (any, error) {
	d := decoders.Get().(*pickleDecoder)
	*d = pickleDecoder{buf: p, anyGlobal: anyGlobal, budget: 8*len(p) + 4096, stack: d.stack[:0], marks: d.marks[:0]}
	v, err := d.run()
	pos := d.pos
	d.recycle()
	if err != nil {
		return nil, fmt.Errorf("pickle: at byte %d: %w", pos, err)
	}
	return v, nil
}

// decoders keeps the stacks of finished decodes for the next ones: a
// message then decodes without growing them again.
var decoders = sync.Pool{New: func() any {
	return &pickleDecoder{stack: make([]any, 0, 16), marks: make([]int, 0, 4)}
}}

// maxPooledStack bounds the stack a pooled decoder keeps.
const maxPooledStack = 256

// recycle drops what d refers to and returns it to the pool.
func (d *pickleDecoder) recycle() {
	clear(d.stack[:cap(d.stack)])
	st, marks := d.stack[:0], d.marks[:0]
	*d = pickleDecoder{stack: st, marks: marks}
	if cap(st) <= maxPooledStack && cap(marks) <= maxPooledStack {
		decoders.Put(d)
	}
}

// sharedCopyMax is the largest pickle whose bytes values share one copy
// of the input. A value kept alive keeps that copy alive too, so the
// waste is bounded by this size; larger pickles copy each value alone.
const sharedCopyMax = 4096

// bytesValue returns a copy of b, the bytes just read (b ends at d.pos).
// In a small pickle every bytes value (the oids and tids of a request) is
// cut from one copy of the input, made at the first, with its capacity
// capped so that appending to one never writes into another.
func (d *pickleDecoder) bytesValue(b []byte) []byte {
	if len(d.buf) > sharedCopyMax {
		return append([]byte{}, b...)
	}
	if d.own == nil {
		d.own = append([]byte(nil), d.buf...)
	}
	start := d.pos - len(b)
	return d.own[start:d.pos:d.pos]
}

type pickleDecoder struct {
	anyGlobal bool // keep globals of any module (decoding replies)
	buf       []byte
	pos       int
	stack     []any // values, and *listBuilder/*dictBuilder still being filled
	marks     []int
	memo      map[uint64]any
	own       []byte // the copy of buf bytes values are cut from (bytesValue)
	// budget bounds the work memo GET, DUP and copy-on-write add beyond
	// the input's own size, so shared references cannot expand a small
	// pickle into a huge value (Python never sends memo opcodes to ZEO).
	budget int
}

// listBuilder is a list still being filled by APPEND(S).
type listBuilder struct{ items []any }

// freeze turns a builder into its value; the builder may go on growing
// without the frozen value seeing it. A memo GET thus sees a container as
// it is at the GET: right for what Python's (non-fast) pickler writes,
// which references a container again only once it is complete; a pickle
// that mutates a container after taking a second reference to it decodes
// with copy semantics instead of Python's sharing.
func freeze(v any) any {
	switch b := v.(type) {
	case *listBuilder:
		return b.items[:len(b.items):len(b.items)]
	case *dictBuilder:
		return b.freeze()
	}
	return v
}

func (d *pickleDecoder) charge(n int) error {
	d.budget -= n
	if d.budget < 0 {
		return errors.New("pickle expands too much through memo or DUP references")
	}
	return nil
}

// nodeCount counts the nodes of v, stopping once it exceeds limit (or
// nests deeper than maxDepth, which counts as exceeding it).
func nodeCount(v any, limit int) int {
	return countNodes(v, limit, 0)
}

func countNodes(v any, limit, depth int) int {
	if limit < 0 || depth > maxDepth {
		return max(limit, 0) + 1
	}
	n := 1
	var items []any
	switch v := v.(type) {
	case Tuple:
		items = v
	case []any:
		items = v
	case Dict:
		for _, it := range v {
			if n > limit {
				break
			}
			n += countNodes(it.Key, limit-n, depth+1)
			n += countNodes(it.Value, limit-n, depth+1)
		}
	case *Object:
		n += countNodes(v.Args, limit-n, depth+1)
		n += countNodes(v.State, limit-n, depth+1)
	}
	for _, it := range items {
		if n > limit {
			break
		}
		n += countNodes(it, limit-n, depth+1)
	}
	return n
}

var errTruncated = errors.New("truncated pickle")

func (d *pickleDecoder) next(n int) ([]byte, error) {
	if n < 0 || n > len(d.buf)-d.pos {
		return nil, errTruncated
	}
	b := d.buf[d.pos : d.pos+n]
	d.pos += n
	return b, nil
}

func (d *pickleDecoder) line() ([]byte, error) {
	i := bytes.IndexByte(d.buf[d.pos:], '\n')
	if i < 0 {
		return nil, errTruncated
	}
	b := d.buf[d.pos : d.pos+i]
	d.pos += i + 1
	return b, nil
}

func (d *pickleDecoder) u8() (int, error) {
	b, err := d.next(1)
	if err != nil {
		return 0, err
	}
	return int(b[0]), nil
}

func (d *pickleDecoder) u32() (uint32, error) {
	b, err := d.next(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

// memoKey reads the memo index of a PUT or GET opcode: a decimal line
// (PUT, GET), one byte (BINPUT, BINGET) or four (LONG_BINPUT, LONG_BINGET).
func (d *pickleDecoder) memoKey(op int) (uint64, error) {
	switch op {
	case opBinPut, opBinGet:
		k, err := d.u8()
		return uint64(k), err
	case opLongBinPut, opLongBinGet:
		k, err := d.u32()
		return uint64(k), err
	}
	l, err := d.line()
	if err != nil {
		return 0, err
	}
	k, err := strconv.ParseUint(string(l), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%c: bad memo key %q", op, l)
	}
	return k, nil
}

func (d *pickleDecoder) u64len() (int, error) {
	b, err := d.next(8)
	if err != nil {
		return 0, err
	}
	n := binary.LittleEndian.Uint64(b)
	if n > uint64(len(d.buf)) {
		return 0, errTruncated
	}
	return int(n), nil
}

func (d *pickleDecoder) push(v any) { d.stack = append(d.stack, v) }

func (d *pickleDecoder) pop() (any, error) {
	if len(d.stack) == 0 || len(d.marks) > 0 && len(d.stack) <= d.marks[len(d.marks)-1] {
		return nil, errors.New("stack underflow")
	}
	v := d.stack[len(d.stack)-1]
	d.stack = d.stack[:len(d.stack)-1]
	return freeze(v), nil
}

func (d *pickleDecoder) top() (*any, error) {
	if len(d.stack) == 0 || len(d.marks) > 0 && len(d.stack) <= d.marks[len(d.marks)-1] {
		return nil, errors.New("stack underflow")
	}
	return &d.stack[len(d.stack)-1], nil
}

// popMark returns the items pushed since the last MARK, removing them.
func (d *pickleDecoder) popMark() ([]any, error) {
	if len(d.marks) == 0 {
		return nil, errors.New("no MARK on the stack")
	}
	k := d.marks[len(d.marks)-1]
	d.marks = d.marks[:len(d.marks)-1]
	items := make([]any, len(d.stack)-k)
	for i, v := range d.stack[k:] {
		items[i] = freeze(v)
	}
	d.stack = d.stack[:k]
	return items, nil
}

func (d *pickleDecoder) global(module, name string) (any, error) {
	if !safeGlobalModules[module] && !d.anyGlobal {
		return nil, &GlobalError{Module: module, Name: name}
	}
	return Global{Module: module, Name: name}, nil
}

func (d *pickleDecoder) setMemo(k uint64) error {
	t, err := d.top()
	if err != nil {
		return err
	}
	if d.memo == nil {
		d.memo = make(map[uint64]any)
	}
	d.memo[k] = *t // a builder stays shared: GET sees it as it is then
	return nil
}

func (d *pickleDecoder) getMemo(k uint64) error {
	v, ok := d.memo[k]
	if !ok {
		return fmt.Errorf("memo key %d not found", k)
	}
	v = freeze(v)
	if err := d.charge(nodeCount(v, d.budget)); err != nil {
		return err
	}
	d.push(v)
	return nil
}

func (d *pickleDecoder) run() (any, error) {
	for {
		op, err := d.u8()
		if err != nil {
			return nil, err
		}
		if len(d.marks) > maxPickleDepth {
			return nil, errors.New("pickle nested too deeply")
		}
		switch op {
		case opProto:
			v, err := d.u8()
			if err != nil {
				return nil, err
			}
			if v > 5 {
				return nil, fmt.Errorf("unsupported pickle protocol %d", v)
			}
		case opFrame:
			if _, err := d.next(8); err != nil {
				return nil, err
			}
		case opStop:
			if len(d.stack) != 1 || len(d.marks) != 0 {
				return nil, fmt.Errorf("STOP with %d values and %d marks on the stack", len(d.stack), len(d.marks))
			}
			if d.pos != len(d.buf) {
				return nil, fmt.Errorf("%d bytes after STOP", len(d.buf)-d.pos)
			}
			v := freeze(d.stack[0])
			// Refuse what Python's pickler could never have written (its
			// recursion limit) and what consumers could not walk.
			if limit := 16*len(d.buf) + 8192; nodeCount(v, limit) > limit {
				return nil, fmt.Errorf("value nested deeper than %d", maxDepth)
			}
			return v, nil
		case opMark:
			d.marks = append(d.marks, len(d.stack))
		case opPop:
			if len(d.marks) > 0 && d.marks[len(d.marks)-1] == len(d.stack) {
				d.marks = d.marks[:len(d.marks)-1]
			} else if _, err := d.pop(); err != nil {
				return nil, err
			}
		case opPopMark:
			if _, err := d.popMark(); err != nil {
				return nil, err
			}
		case opDup:
			t, err := d.top()
			if err != nil {
				return nil, err
			}
			v := freeze(*t)
			if err := d.charge(nodeCount(v, d.budget)); err != nil {
				return nil, err
			}
			d.push(v)
		case opNone:
			d.push(nil)
		case opNewTrue:
			d.push(true)
		case opNewFalse:
			d.push(false)
		case opBinInt1:
			v, err := d.u8()
			if err != nil {
				return nil, err
			}
			d.push(int64(v))
		case opBinInt2:
			b, err := d.next(2)
			if err != nil {
				return nil, err
			}
			d.push(int64(binary.LittleEndian.Uint16(b)))
		case opBinInt:
			v, err := d.u32()
			if err != nil {
				return nil, err
			}
			d.push(int64(int32(v)))
		case opLong1:
			n, err := d.u8()
			if err != nil {
				return nil, err
			}
			b, err := d.next(n)
			if err != nil {
				return nil, err
			}
			d.push(decodeLong(b))
		case opLong4:
			n, err := d.u32()
			if err != nil {
				return nil, err
			}
			if int32(n) < 0 {
				return nil, errors.New("LONG4 with negative length")
			}
			b, err := d.next(int(n))
			if err != nil {
				return nil, err
			}
			d.push(decodeLong(b))
		case opInt:
			l, err := d.line()
			if err != nil {
				return nil, err
			}
			switch string(l) {
			case "00":
				d.push(false)
			case "01":
				d.push(true)
			default:
				v, err := parsePyInt(string(l))
				if err != nil {
					return nil, err
				}
				d.push(v)
			}
		case opLong:
			l, err := d.line()
			if err != nil {
				return nil, err
			}
			v, err := parsePyInt(string(bytes.TrimSuffix(l, []byte("L"))))
			if err != nil {
				return nil, err
			}
			d.push(v)
		case opBinFloat:
			b, err := d.next(8)
			if err != nil {
				return nil, err
			}
			d.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
		case opFloat:
			l, err := d.line()
			if err != nil {
				return nil, err
			}
			f, err := strconv.ParseFloat(string(l), 64)
			if err != nil {
				return nil, fmt.Errorf("FLOAT: %v", err)
			}
			d.push(f)
		case opBinUnicode, opShortBinUnicode, opBinUnicode8:
			b, err := d.sized(op)
			if err != nil {
				return nil, err
			}
			d.push(internString(b))
		case opUnicode:
			l, err := d.line()
			if err != nil {
				return nil, err
			}
			s, err := rawUnicodeEscape(l)
			if err != nil {
				return nil, err
			}
			d.push(s)
		case opShortBinBytes, opBinBytes, opBinBytes8, opShortBinString, opBinString, opByteArray8:
			b, err := d.sized(op)
			if err != nil {
				return nil, err
			}
			d.push(d.bytesValue(b))
		case opString:
			l, err := d.line()
			if err != nil {
				return nil, err
			}
			s, err := strconv.Unquote(pyToGoQuote(l))
			if err != nil {
				return nil, fmt.Errorf("STRING: bad literal %q", l)
			}
			d.push([]byte(s))
		case opEmptyTuple:
			d.push(Tuple{})
		case opTuple1, opTuple2, opTuple3:
			n := int(op-opTuple1) + 1
			t := make(Tuple, n)
			for i := n - 1; i >= 0; i-- {
				if t[i], err = d.pop(); err != nil {
					return nil, err
				}
			}
			d.push(t)
		case opTuple:
			items, err := d.popMark()
			if err != nil {
				return nil, err
			}
			d.push(Tuple(items))
		case opEmptyList:
			d.push(&listBuilder{items: []any{}})
		case opList:
			items, err := d.popMark()
			if err != nil {
				return nil, err
			}
			d.push(&listBuilder{items: items})
		case opAppend:
			v, err := d.pop()
			if err != nil {
				return nil, err
			}
			if err := d.extend([]any{v}); err != nil {
				return nil, err
			}
		case opAppends:
			items, err := d.popMark()
			if err != nil {
				return nil, err
			}
			if err := d.extend(items); err != nil {
				return nil, err
			}
		case opEmptyDict:
			d.push(&dictBuilder{items: Dict{}, index: map[string]int{}})
		case opDict:
			items, err := d.popMark()
			if err != nil {
				return nil, err
			}
			b := &dictBuilder{items: Dict{}, index: map[string]int{}}
			if err := b.setPairs(items); err != nil {
				return nil, err
			}
			d.push(b)
		case opSetItem, opSetItems:
			var items []any
			if op == opSetItem {
				v, err := d.pop()
				if err != nil {
					return nil, err
				}
				k, err := d.pop()
				if err != nil {
					return nil, err
				}
				items = []any{k, v}
			} else if items, err = d.popMark(); err != nil {
				return nil, err
			}
			t, err := d.top()
			if err != nil {
				return nil, err
			}
			if frozen, ok := (*t).(Dict); ok { // from GET or DUP: copy on write
				if err := d.charge(len(frozen)); err != nil {
					return nil, err
				}
				if *t, err = newDictBuilder(frozen); err != nil {
					return nil, err
				}
			}
			b, ok := (*t).(*dictBuilder)
			if !ok {
				return nil, fmt.Errorf("SETITEM on %s", TypeName(*t))
			}
			if err := b.setPairs(items); err != nil {
				return nil, err
			}
		case opEmptySet:
			d.push(&Object{Callable: Global{"builtins", "set"}, Args: Tuple{[]any{}}})
		case opAddItems:
			items, err := d.popMark()
			if err != nil {
				return nil, err
			}
			t, err := d.top()
			if err != nil {
				return nil, err
			}
			o, ok := (*t).(*Object)
			if !ok || o.Callable != (Global{"builtins", "set"}) || len(o.Args) != 1 {
				return nil, fmt.Errorf("ADDITEMS on %s", TypeName(*t))
			}
			l, _ := o.Args[0].([]any)
			if err := d.charge(len(l)); err != nil {
				return nil, err
			}
			grown := *o // a copy, as for BUILD: no cycles
			grown.Args = Tuple{append(l[:len(l):len(l)], items...)}
			*t = &grown
		case opFrozenSet:
			items, err := d.popMark()
			if err != nil {
				return nil, err
			}
			d.push(&Object{Callable: Global{"builtins", "frozenset"}, Args: Tuple{items}})
		case opGlobal:
			mod, err := d.line()
			if err != nil {
				return nil, err
			}
			name, err := d.line()
			if err != nil {
				return nil, err
			}
			g, err := d.global(string(mod), string(name))
			if err != nil {
				return nil, err
			}
			d.push(g)
		case opStackGlobal:
			nv, err := d.pop()
			if err != nil {
				return nil, err
			}
			mv, err := d.pop()
			if err != nil {
				return nil, err
			}
			mod, ok1 := mv.(string)
			name, ok2 := nv.(string)
			if !ok1 || !ok2 {
				return nil, errors.New("STACK_GLOBAL needs two str")
			}
			g, err := d.global(mod, name)
			if err != nil {
				return nil, err
			}
			d.push(g)
		case opReduce, opNewObj:
			av, err := d.pop()
			if err != nil {
				return nil, err
			}
			cv, err := d.pop()
			if err != nil {
				return nil, err
			}
			if err := d.object(cv, av, op == opNewObj); err != nil {
				return nil, err
			}
		case opNewObjEx:
			kw, err := d.pop()
			if err != nil {
				return nil, err
			}
			if kwd, ok := kw.(Dict); !ok || len(kwd) != 0 {
				return nil, errors.New("NEWOBJ_EX with keyword arguments is not supported")
			}
			av, err := d.pop()
			if err != nil {
				return nil, err
			}
			cv, err := d.pop()
			if err != nil {
				return nil, err
			}
			if err := d.object(cv, av, true); err != nil {
				return nil, err
			}
		case opBuild:
			state, err := d.pop()
			if err != nil {
				return nil, err
			}
			t, err := d.top()
			if err != nil {
				return nil, err
			}
			o, ok := (*t).(*Object)
			if !ok {
				return nil, fmt.Errorf("BUILD on %s", TypeName(*t))
			}
			// A new Object, not a mutation: a state holding the object
			// itself (DUP, BUILD) cannot make a cycle.
			built := *o
			built.State = state
			*t = &built
		case opPut, opBinPut, opLongBinPut:
			k, err := d.memoKey(op)
			if err != nil {
				return nil, err
			}
			if err := d.setMemo(k); err != nil {
				return nil, err
			}
		case opMemoize:
			if err := d.setMemo(uint64(len(d.memo))); err != nil {
				return nil, err
			}
		case opGet, opBinGet, opLongBinGet:
			k, err := d.memoKey(op)
			if err != nil {
				return nil, err
			}
			if err := d.getMemo(k); err != nil {
				return nil, err
			}
		case opPersID, opBinPersID:
			return nil, errors.New("persistent ids are not allowed in ZEO messages")
		case opInst, opObj:
			return nil, fmt.Errorf("opcode %q (INST/OBJ) is not supported", rune(op))
		default:
			return nil, fmt.Errorf("unknown opcode 0x%02x", op)
		}
	}
}

// sized reads the length-prefixed data of a bytes or str opcode.
func (d *pickleDecoder) sized(op int) ([]byte, error) {
	var n int
	switch op {
	case opShortBinBytes, opShortBinString, opShortBinUnicode:
		v, err := d.u8()
		if err != nil {
			return nil, err
		}
		n = v
	case opBinBytes, opBinUnicode:
		v, err := d.u32()
		if err != nil {
			return nil, err
		}
		n = int(v)
	case opBinString:
		v, err := d.u32()
		if err != nil {
			return nil, err
		}
		if int32(v) < 0 {
			return nil, errors.New("BINSTRING with negative length")
		}
		n = int(v)
	default: // the 8-byte length forms of protocol 4
		v, err := d.u64len()
		if err != nil {
			return nil, err
		}
		n = v
	}
	return d.next(n)
}

func (d *pickleDecoder) extend(items []any) error {
	t, err := d.top()
	if err != nil {
		return err
	}
	if frozen, ok := (*t).([]any); ok { // from GET or DUP: copy on write
		if err := d.charge(len(frozen)); err != nil {
			return err
		}
		*t = &listBuilder{items: append([]any(nil), frozen...)}
	}
	b, ok := (*t).(*listBuilder)
	if !ok {
		return fmt.Errorf("APPEND on %s", TypeName(*t))
	}
	b.items = append(b.items, items...)
	return nil
}

func (d *pickleDecoder) object(callable, args any, newObj bool) error {
	g, ok := callable.(Global)
	if !ok {
		return fmt.Errorf("REDUCE/NEWOBJ on %s", TypeName(callable))
	}
	t, ok := args.(Tuple)
	if !ok {
		return fmt.Errorf("REDUCE/NEWOBJ arguments must be a tuple, got %s", TypeName(args))
	}
	d.push(&Object{Callable: g, Args: t, NewObj: newObj})
	return nil
}

func parsePyInt(s string) (any, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return nil, fmt.Errorf("bad int literal %q", s)
	}
	return n, nil
}

// pyToGoQuote turns a Python repr of a byte string ('...' or "...") into a
// Go double-quoted literal for strconv.Unquote.
func pyToGoQuote(l []byte) string {
	if len(l) >= 2 && l[0] == '\'' && l[len(l)-1] == '\'' {
		inner := string(l[1 : len(l)-1])
		var b bytes.Buffer
		b.WriteByte('"')
		for i := 0; i < len(inner); i++ {
			c := inner[i]
			switch {
			case c == '\\' && i+1 < len(inner):
				if inner[i+1] == '\'' {
					b.WriteByte('\'')
				} else {
					b.WriteByte(c)
					b.WriteByte(inner[i+1])
				}
				i++
			case c == '"':
				b.WriteString(`\"`)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('"')
		return b.String()
	}
	return string(l)
}

// rawUnicodeEscape decodes Python's raw-unicode-escape (UNICODE opcode):
// \uXXXX and \UXXXXXXXX escapes, every other byte is a Latin-1 code point.
func rawUnicodeEscape(l []byte) (string, error) {
	var r []rune
	for i := 0; i < len(l); i++ {
		if l[i] == '\\' && i+1 < len(l) && (l[i+1] == 'u' || l[i+1] == 'U') {
			n := 4
			if l[i+1] == 'U' {
				n = 8
			}
			if i+2+n > len(l) {
				return "", errors.New("UNICODE: truncated escape")
			}
			v, err := strconv.ParseUint(string(l[i+2:i+2+n]), 16, 32)
			if err != nil || v > 0x10ffff {
				return "", errors.New("UNICODE: bad escape")
			}
			r = append(r, rune(v))
			i += 1 + n
			continue
		}
		r = append(r, rune(l[i]))
	}
	return string(r), nil
}

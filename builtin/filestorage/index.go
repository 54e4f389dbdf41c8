package filestorage

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math/big"
	"os"
	"slices"

	"github.com/zeoraid/zeoraid/stack"
)

// index maps every oid to the position of its current data record
// (docs/filestorage.md §2.1). Deleted objects stay, pointing at their marker.
//
// Like Python's fsIndex it groups oids by their top 48 bits and keeps,
// per group, the low 16 bits (2 bytes) and the positions (6 bytes) of
// its oids in ascending order, in exactly the layout of a .index bucket:
// 8 bytes per object instead of a Go map's ~50, a .index loads without
// one insertion per oid, and oids come out ordered for record_iternext
// and the .index writer.
type index struct {
	buckets  map[uint64]*ixBucket // by oid >> 16
	prefixes []uint64             // the keys of buckets, ascending
	n        int
}

// ixBucket is one group: lows holds big-endian uint16s, pos big-endian
// 48-bit positions, both ascending by low.
type ixBucket struct {
	lows []byte
	pos  []byte
}

func newIndex() *index { return &index{buckets: map[uint64]*ixBucket{}} }

func (b *ixBucket) len() int { return len(b.lows) / 2 }

func (b *ixBucket) low(i int) uint16 { return binary.BigEndian.Uint16(b.lows[2*i:]) }

func (b *ixBucket) at(i int) int64 {
	p := b.pos[6*i : 6*i+6]
	return int64(p[0])<<40 | int64(p[1])<<32 | int64(binary.BigEndian.Uint32(p[2:]))
}

// search is the first i with low(i) >= low.
func (b *ixBucket) search(low uint16) int {
	i, j := 0, b.len()
	for i < j {
		h := int(uint(i+j) >> 1)
		if b.low(h) < low {
			i = h + 1
		} else {
			j = h
		}
	}
	return i
}

func putPos(p []byte, pos int64) {
	p[0], p[1] = byte(pos>>40), byte(pos>>32)
	binary.BigEndian.PutUint32(p[2:], uint32(pos))
}

// get returns oid's position.
func (ix *index) get(oid stack.Oid) (int64, bool) {
	b := ix.buckets[uint64(oid)>>16]
	if b == nil {
		return 0, false
	}
	i := b.search(uint16(oid))
	if i == b.len() || b.low(i) != uint16(oid) {
		return 0, false
	}
	return b.at(i), true
}

// pos returns oid's position, 0 if it has none.
func (ix *index) pos(oid stack.Oid) int64 {
	p, _ := ix.get(oid)
	return p
}

// set makes pos oid's position (below 2^48, which writers check).
func (ix *index) set(oid stack.Oid, pos int64) {
	prefix := uint64(oid) >> 16
	b := ix.buckets[prefix]
	if b == nil {
		b = &ixBucket{}
		ix.buckets[prefix] = b
		k, _ := slices.BinarySearch(ix.prefixes, prefix)
		ix.prefixes = slices.Insert(ix.prefixes, k, prefix)
	}
	low := uint16(oid)
	i := b.search(low)
	if i < b.len() && b.low(i) == low {
		putPos(b.pos[6*i:], pos)
		return
	}
	var lb [2]byte
	var pb [6]byte
	binary.BigEndian.PutUint16(lb[:], low)
	putPos(pb[:], pos)
	if i == b.len() { // oids mostly grow: append
		b.lows = append(b.lows, lb[:]...)
		b.pos = append(b.pos, pb[:]...)
	} else {
		b.lows = slices.Insert(b.lows, 2*i, lb[:]...)
		b.pos = slices.Insert(b.pos, 6*i, pb[:]...)
	}
	ix.n++
}

// len is the number of oids.
func (ix *index) len() int { return ix.n }

// ceil returns the smallest oid >= from and its position.
func (ix *index) ceil(from stack.Oid) (stack.Oid, int64, bool) {
	prefix := uint64(from) >> 16
	k, _ := slices.BinarySearch(ix.prefixes, prefix)
	for ; k < len(ix.prefixes); k++ {
		p := ix.prefixes[k]
		b := ix.buckets[p]
		i := 0
		if p == prefix {
			i = b.search(uint16(from))
		}
		if i < b.len() {
			return stack.Oid(p<<16 | uint64(b.low(i))), b.at(i), true
		}
	}
	return 0, 0, false
}

// all yields every oid and its position in ascending oid order.
func (ix *index) all() iter.Seq2[stack.Oid, int64] {
	return func(yield func(stack.Oid, int64) bool) {
		for _, p := range ix.prefixes {
			b := ix.buckets[p]
			for i := 0; i < b.len(); i++ {
				if !yield(stack.Oid(p<<16|uint64(b.low(i))), b.at(i)) {
					return
				}
			}
		}
	}
}

// maxOid is the largest oid in the index (0 when empty).
func (ix *index) maxOid() stack.Oid {
	if len(ix.prefixes) == 0 {
		return 0
	}
	p := ix.prefixes[len(ix.prefixes)-1]
	b := ix.buckets[p]
	return stack.Oid(p<<16 | uint64(b.low(b.len()-1)))
}

// writeIndex writes the .index file in ZODB's current format (docs/filestorage.md §2.3): a
// stream of protocol-3 pickles without memo, through path.index_tmp and a
// rename, as Python does.
func writeIndex(path string, pos int64, ix *index) error {
	tmp := path + ".index_tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	_, err = w.Write(encodeIndex(pos, ix))
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// encodeIndex returns the bytes of a .index file.
func encodeIndex(pos int64, ix *index) []byte {
	out := make([]byte, 0, 8*ix.len()+32*len(ix.prefixes)+32)
	out = append(out, 0x80, 3)
	out = appendPickleInt(out, pos)
	out = append(out, '.')
	for _, prefix := range ix.prefixes {
		b := ix.buckets[prefix]
		var pb [8]byte
		binary.BigEndian.PutUint64(pb[:], prefix<<16)
		out = append(out, 0x80, 3)
		out = appendPickleBytes(out, pb[:6])
		// The bucket's bytes: every low, then every position.
		n := len(b.lows) + len(b.pos)
		if n < 256 {
			out = append(out, 'C', byte(n))
		} else {
			out = binary.LittleEndian.AppendUint32(append(out, 'B'), uint32(n))
		}
		out = append(append(out, b.lows...), b.pos...)
		out = append(out, 0x86, '.')
	}
	return append(out, 0x80, 3, 'N', '.')
}

// appendPickleInt encodes a non-negative int as CPython's protocol 3 does.
func appendPickleInt(b []byte, n int64) []byte {
	switch {
	case n < 0x100:
		return append(b, 'K', byte(n))
	case n < 0x10000:
		return binary.LittleEndian.AppendUint16(append(b, 'M'), uint16(n))
	case n < 0x80000000:
		return binary.LittleEndian.AppendUint32(append(b, 'J'), uint32(n))
	}
	var raw []byte
	for v := uint64(n); v > 0; v >>= 8 {
		raw = append(raw, byte(v))
	}
	if raw[len(raw)-1]&0x80 != 0 {
		raw = append(raw, 0)
	}
	return append(append(b, 0x8a, byte(len(raw))), raw...)
}

// appendPickleBytes encodes a bytes object (SHORT_BINBYTES or BINBYTES).
func appendPickleBytes(b, v []byte) []byte {
	if len(v) < 256 {
		b = append(b, 'C', byte(len(v)))
	} else {
		b = binary.LittleEndian.AppendUint32(append(b, 'B'), uint32(len(v)))
	}
	return append(b, v...)
}

// errOldIndex marks an index in a format we do not read; the caller rescans.
var errOldIndex = errors.New("index is not in the current format")

// readIndex loads a .index file. Any error means "rescan": the file is a
// cache (docs/filestorage.md §2.3).
func readIndex(path string) (int64, *index, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, nil, err
	}
	return decodeIndex(b)
}

// decodeIndex parses the bytes of a .index file.
func decodeIndex(b []byte) (int64, *index, error) {
	p := &pickleReader{b: b}
	v, err := p.load()
	if err != nil {
		return 0, nil, err
	}
	posv, ok := v.(*big.Int)
	if !ok {
		return 0, nil, errOldIndex
	}
	if !posv.IsInt64() || posv.Int64() < 0 {
		return 0, nil, fmt.Errorf("index position %s out of range", posv)
	}
	ix := newIndex()
	for {
		v, err := p.load()
		if err != nil {
			return 0, nil, err
		}
		if v == nil {
			break
		}
		t, ok := v.([]any)
		if !ok || len(t) != 2 {
			return 0, nil, fmt.Errorf("index entry at %d is not a pair", p.i)
		}
		prefix, ok1 := t[0].([]byte)
		bucket, ok2 := t[1].([]byte)
		if !ok1 || !ok2 || len(prefix) != 6 || len(bucket)%8 != 0 {
			return 0, nil, fmt.Errorf("malformed index bucket before %d", p.i)
		}
		var full [8]byte
		copy(full[:6], prefix)
		key := binary.BigEndian.Uint64(full[:]) >> 16
		n := len(bucket) / 8
		b := &ixBucket{lows: bucket[: 2*n : 2*n], pos: bucket[2*n : 8*n : 8*n]}
		ordered := n > 0 && ix.buckets[key] == nil && (len(ix.prefixes) == 0 || ix.prefixes[len(ix.prefixes)-1] < key)
		for k := 1; ordered && k < n; k++ {
			ordered = b.low(k-1) < b.low(k)
		}
		if ordered {
			// Python writes buckets in order: take the bytes as they are
			// (capped, so a later insertion copies them).
			ix.buckets[key] = b
			ix.prefixes = append(ix.prefixes, key)
			ix.n += n
			continue
		}
		for k := 0; k < n; k++ {
			ix.set(stack.Oid(key<<16|uint64(b.low(k))), b.at(k))
		}
	}
	if p.i != len(b) {
		return 0, nil, fmt.Errorf("trailing bytes after index at %d", p.i)
	}
	return posv.Int64(), ix, nil
}

// pickleReader decodes the small pickle subset .index files use: ints,
// bytes and strings, None, tuples, memo opcodes. Anything else is an error.
type pickleReader struct {
	b []byte
	i int
}

var errPickleEOF = errors.New("index: unexpected end of pickle")

func (p *pickleReader) take(n int) ([]byte, error) {
	if n < 0 || len(p.b)-p.i < n {
		return nil, errPickleEOF
	}
	v := p.b[p.i : p.i+n]
	p.i += n
	return v, nil
}

// load decodes one pickle up to its STOP. nil stands for None, *big.Int
// for ints, []byte for bytes and strings, []any for tuples.
func (p *pickleReader) load() (any, error) {
	var stack []any
	var marks []int
	memo := map[uint32]any{}
	pop := func() (any, error) {
		if len(stack) == 0 {
			return nil, fmt.Errorf("index: pickle stack underflow at %d", p.i)
		}
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		return v, nil
	}
	for {
		opb, err := p.take(1)
		if err != nil {
			return nil, err
		}
		op := opb[0]
		switch op {
		case 0x80: // PROTO
			if _, err := p.take(1); err != nil {
				return nil, err
			}
		case '.':
			v, err := pop()
			if err != nil {
				return nil, err
			}
			return v, nil
		case 'K':
			v, err := p.take(1)
			if err != nil {
				return nil, err
			}
			stack = append(stack, big.NewInt(int64(v[0])))
		case 'M':
			v, err := p.take(2)
			if err != nil {
				return nil, err
			}
			stack = append(stack, big.NewInt(int64(binary.LittleEndian.Uint16(v))))
		case 'J':
			v, err := p.take(4)
			if err != nil {
				return nil, err
			}
			stack = append(stack, big.NewInt(int64(int32(binary.LittleEndian.Uint32(v)))))
		case 0x8a: // LONG1
			n, err := p.take(1)
			if err != nil {
				return nil, err
			}
			v, err := p.take(int(n[0]))
			if err != nil {
				return nil, err
			}
			stack = append(stack, decodeLong(v))
		case 'C', 'U': // SHORT_BINBYTES, SHORT_BINSTRING
			n, err := p.take(1)
			if err != nil {
				return nil, err
			}
			v, err := p.take(int(n[0]))
			if err != nil {
				return nil, err
			}
			stack = append(stack, v)
		case 'B', 'T', 'X': // BINBYTES, BINSTRING, BINUNICODE
			n, err := p.take(4)
			if err != nil {
				return nil, err
			}
			v, err := p.take(int(binary.LittleEndian.Uint32(n)))
			if err != nil {
				return nil, err
			}
			stack = append(stack, v)
		case 'N':
			stack = append(stack, nil)
		case 0x85, 0x86: // TUPLE1, TUPLE2
			k := int(op-0x85) + 1
			if len(stack) < k {
				return nil, fmt.Errorf("index: pickle stack underflow at %d", p.i)
			}
			t := slices.Clone(stack[len(stack)-k:])
			stack = append(stack[:len(stack)-k], t)
		case '(':
			marks = append(marks, len(stack))
		case 't':
			if len(marks) == 0 {
				return nil, fmt.Errorf("index: TUPLE without MARK at %d", p.i)
			}
			m := marks[len(marks)-1]
			marks = marks[:len(marks)-1]
			t := slices.Clone(stack[m:])
			stack = append(stack[:m], t)
		case 'q', 'r': // BINPUT, LONG_BINPUT
			var key uint32
			if op == 'q' {
				v, err := p.take(1)
				if err != nil {
					return nil, err
				}
				key = uint32(v[0])
			} else {
				v, err := p.take(4)
				if err != nil {
					return nil, err
				}
				key = binary.LittleEndian.Uint32(v)
			}
			if len(stack) == 0 {
				return nil, fmt.Errorf("index: PUT on empty stack at %d", p.i)
			}
			memo[key] = stack[len(stack)-1]
		case 'h', 'j': // BINGET, LONG_BINGET
			var key uint32
			if op == 'h' {
				v, err := p.take(1)
				if err != nil {
					return nil, err
				}
				key = uint32(v[0])
			} else {
				v, err := p.take(4)
				if err != nil {
					return nil, err
				}
				key = binary.LittleEndian.Uint32(v)
			}
			v, ok := memo[key]
			if !ok {
				return nil, fmt.Errorf("index: memo %d missing at %d", key, p.i)
			}
			stack = append(stack, v)
		default:
			return nil, fmt.Errorf("index: unsupported pickle opcode 0x%02x at %d: %w", op, p.i-1, errOldIndex)
		}
	}
}

// decodeLong decodes LONG1's little-endian two's complement bytes.
func decodeLong(v []byte) *big.Int {
	be := make([]byte, len(v))
	for i, c := range v {
		be[len(v)-1-i] = c
	}
	n := new(big.Int).SetBytes(be)
	if len(v) > 0 && v[len(v)-1]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(v))))
	}
	return n
}

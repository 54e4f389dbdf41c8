package filestorage

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"os"
	"slices"

	"github.com/zeoraid/zeoraid/stack"
)

// index maps every oid to the position of its current data record
// (filestorage.md §2.1). Deleted objects stay, pointing at their marker.
type index map[stack.Oid]int64

// maxOid is the largest oid in the index (0 when empty).
func (ix index) maxOid() stack.Oid {
	var m stack.Oid
	for oid := range ix {
		if oid > m {
			m = oid
		}
	}
	return m
}

// writeIndex writes the .index file in ZODB's current format (§2.4): a
// stream of protocol-3 pickles without memo, through path.index_tmp and a
// rename, as Python does.
func writeIndex(path string, pos int64, ix index) error {
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
func encodeIndex(pos int64, ix index) []byte {
	out := []byte{0x80, 3}
	out = appendPickleInt(out, pos)
	out = append(out, '.')
	oids := make([]stack.Oid, 0, len(ix))
	for oid := range ix {
		oids = append(oids, oid)
	}
	slices.Sort(oids)
	for i := 0; i < len(oids); {
		prefix := oids[i] >> 16
		j := i
		for j < len(oids) && oids[j]>>16 == prefix {
			j++
		}
		bucket := make([]byte, 0, 8*(j-i))
		for _, oid := range oids[i:j] {
			bucket = binary.BigEndian.AppendUint16(bucket, uint16(oid))
		}
		for _, oid := range oids[i:j] {
			var p [8]byte
			binary.BigEndian.PutUint64(p[:], uint64(ix[oid]))
			bucket = append(bucket, p[2:]...)
		}
		var pb [8]byte
		binary.BigEndian.PutUint64(pb[:], uint64(prefix)<<16)
		out = append(out, 0x80, 3)
		out = appendPickleBytes(out, pb[:6])
		out = appendPickleBytes(out, bucket)
		out = append(out, 0x86, '.')
		i = j
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
// cache (§2.4).
func readIndex(path string) (int64, index, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, nil, err
	}
	return decodeIndex(b)
}

// decodeIndex parses the bytes of a .index file.
func decodeIndex(b []byte) (int64, index, error) {
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
	ix := index{}
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
		n := len(bucket) / 8
		var full [8]byte
		copy(full[:6], prefix)
		for k := 0; k < n; k++ {
			copy(full[6:], bucket[2*k:2*k+2])
			oid := stack.Oid(binary.BigEndian.Uint64(full[:]))
			var pos [8]byte
			copy(pos[2:], bucket[2*n+6*k:2*n+6*k+6])
			ix[oid] = int64(binary.BigEndian.Uint64(pos[:]))
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

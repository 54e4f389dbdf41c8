package zeoproto

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/big"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
	"github.com/zeoraid/zeoraid/stack"
)

// EncodeMsgpack returns v as one msgpack value, as ZEO's Python packer
// (use_bin_type=True) writes it: bytes as bin, str as str, tuples and lists
// as arrays, dicts as maps, ints in their shortest form, floats as float64.
// Map keys must be str or bytes (Python's unpacker refuses others), and
// Global/*Object values cannot be sent.
func EncodeMsgpack(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	if err := encodeMsgpack(enc, v); err != nil {
		return nil, fmt.Errorf("msgpack: %w", err)
	}
	return buf.Bytes(), nil
}

func encodeMsgpackBytes(enc *msgpack.Encoder, b []byte) error {
	// EncodeBytes writes nil for a nil slice; Python never sends that for bytes.
	if err := enc.EncodeBytesLen(len(b)); err != nil {
		return err
	}
	_, err := enc.Writer().Write(b)
	return err
}

func encodeMsgpack(enc *msgpack.Encoder, v any) error {
	return encodeMsgpackDepth(enc, v, 0)
}

func encodeMsgpackDepth(enc *msgpack.Encoder, v any, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("value nested deeper than %d", maxDepth)
	}
	switch v := v.(type) {
	case nil:
		return enc.EncodeNil()
	case bool:
		return enc.EncodeBool(v)
	case int64:
		return enc.EncodeInt(v)
	case int:
		return enc.EncodeInt(int64(v))
	case int32:
		return enc.EncodeInt(int64(v))
	case uint32:
		return enc.EncodeUint(uint64(v))
	case uint64:
		return enc.EncodeUint(v)
	case *big.Int:
		switch {
		case v.IsInt64():
			return enc.EncodeInt(v.Int64())
		case v.IsUint64():
			return enc.EncodeUint(v.Uint64())
		}
		return fmt.Errorf("int %s does not fit in 64 bits", v)
	case float64:
		return enc.EncodeFloat64(v)
	case string:
		return enc.EncodeString(v)
	case []byte:
		return encodeMsgpackBytes(enc, v)
	case stack.Oid:
		return encodeMsgpackBytes(enc, v.Bytes())
	case stack.Tid:
		return encodeMsgpackBytes(enc, v.Bytes())
	case Tuple:
		return encodeMsgpackArray(enc, v, depth)
	case []any:
		return encodeMsgpackArray(enc, v, depth)
	case []stack.Oid:
		if err := enc.EncodeArrayLen(len(v)); err != nil {
			return err
		}
		for _, o := range v {
			if err := encodeMsgpackBytes(enc, o.Bytes()); err != nil {
				return err
			}
		}
		return nil
	case map[string]any:
		return encodeMsgpackMap(enc, sortedDict(v), depth)
	case Dict:
		return encodeMsgpackMap(enc, v, depth)
	}
	return fmt.Errorf("cannot encode %s", TypeName(v))
}

func encodeMsgpackArray(enc *msgpack.Encoder, s []any, depth int) error {
	if err := enc.EncodeArrayLen(len(s)); err != nil {
		return err
	}
	for _, it := range s {
		if err := encodeMsgpackDepth(enc, it, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func encodeMsgpackMap(enc *msgpack.Encoder, d Dict, depth int) error {
	if err := enc.EncodeMapLen(len(d)); err != nil {
		return err
	}
	for _, it := range d {
		switch it.Key.(type) {
		case string, []byte:
		default:
			return fmt.Errorf("map key %s: Python's unpacker accepts only str or bytes keys", TypeName(it.Key))
		}
		if err := encodeMsgpackDepth(enc, it.Key, depth+1); err != nil {
			return err
		}
		if err := encodeMsgpackDepth(enc, it.Value, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// DecodeMsgpack decodes one msgpack value into the value model, as Python's
// unpacker (raw=False, use_list=False) would: str as string, bin as
// []byte, every array as a Tuple, maps as an ordered Dict, integers of any
// width as int64 (or *big.Int above the int64 range). Ext types are
// refused, and so is anything after the value.
func DecodeMsgpack(p []byte) (any, error) {
	r := bytes.NewReader(p)
	dec := msgpack.NewDecoder(r)
	v, err := decodeMsgpack(dec, r, 0)
	if err != nil {
		return nil, fmt.Errorf("msgpack: at byte %d: %w", len(p)-r.Len(), err)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("msgpack: %d bytes after the value", r.Len())
	}
	return v, nil
}

func decodeMsgpack(dec *msgpack.Decoder, r *bytes.Reader, depth int) (any, error) {
	if depth > maxDepth {
		return nil, errors.New("nested too deeply")
	}
	c, err := dec.PeekCode()
	if err != nil {
		return nil, err
	}
	switch {
	case c == msgpcode.Nil:
		return nil, dec.DecodeNil()
	case c == msgpcode.False || c == msgpcode.True:
		return dec.DecodeBool()
	case msgpcode.IsFixedNum(c), c == msgpcode.Int8, c == msgpcode.Int16, c == msgpcode.Int32, c == msgpcode.Int64,
		c == msgpcode.Uint8, c == msgpcode.Uint16, c == msgpcode.Uint32:
		return dec.DecodeInt64()
	case c == msgpcode.Uint64:
		n, err := dec.DecodeUint64()
		if err != nil {
			return nil, err
		}
		if n > math.MaxInt64 {
			return new(big.Int).SetUint64(n), nil
		}
		return int64(n), nil
	case c == msgpcode.Float:
		f, err := dec.DecodeFloat32()
		return float64(f), err
	case c == msgpcode.Double:
		return dec.DecodeFloat64()
	case msgpcode.IsString(c):
		n, err := dec.DecodeBytesLen()
		if err != nil {
			return nil, err
		}
		if n < 0 || n > r.Len() {
			return nil, fmt.Errorf("declared length %d, %d bytes left", n, r.Len())
		}
		var buf [64]byte
		if n <= len(buf) {
			// Read into the stack buffer (n bytes are there, checked
			// above): a method name is then looked up without allocating.
			k, _ := r.Read(buf[:n])
			return internString(buf[:k]), nil
		}
		b, err := readExactly(r, n)
		return string(b), err
	case msgpcode.IsBin(c):
		n, err := dec.DecodeBytesLen()
		if err != nil {
			return nil, err
		}
		return readExactly(r, n)
	case msgpcode.IsFixedArray(c), c == msgpcode.Array16, c == msgpcode.Array32:
		n, err := dec.DecodeArrayLen()
		if err != nil {
			return nil, err
		}
		if n > r.Len() { // every element takes at least one byte
			return nil, fmt.Errorf("array of %d elements in %d bytes", n, r.Len())
		}
		t := make(Tuple, n)
		for i := range t {
			if t[i], err = decodeMsgpack(dec, r, depth+1); err != nil {
				return nil, err
			}
		}
		return t, nil
	case msgpcode.IsFixedMap(c), c == msgpcode.Map16, c == msgpcode.Map32:
		n, err := dec.DecodeMapLen()
		if err != nil {
			return nil, err
		}
		if n > r.Len()/2 {
			return nil, fmt.Errorf("map of %d pairs in %d bytes", n, r.Len())
		}
		d := &dictBuilder{items: make(Dict, 0, n), index: make(map[string]int, n)}
		for range n {
			k, err := decodeMsgpack(dec, r, depth+1)
			if err != nil {
				return nil, err
			}
			switch k.(type) {
			case string, []byte:
			default: // Python's unpacker (strict_map_key) refuses them too
				return nil, fmt.Errorf("map key %s: only str or bytes keys are allowed", TypeName(k))
			}
			v, err := decodeMsgpack(dec, r, depth+1)
			if err != nil {
				return nil, err
			}
			if err := d.set(k, v); err != nil {
				return nil, err
			}
		}
		return d.items, nil
	}
	return nil, fmt.Errorf("unsupported msgpack code 0x%02x", c)
}

func readExactly(r *bytes.Reader, n int) ([]byte, error) {
	if n < 0 || n > r.Len() {
		return nil, fmt.Errorf("declared length %d, %d bytes left", n, r.Len())
	}
	b := make([]byte, n)
	if n == 0 { // Read of nothing at the end would report io.EOF
		return b, nil
	}
	_, err := r.Read(b)
	return b, err
}

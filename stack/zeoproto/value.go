package zeoproto

import (
	"fmt"
	"math/big"
	"unicode/utf8"

	"github.com/zeoraid/zeoraid/stack"
)

// The value model shared by both codecs. A decoded message contains only
// these Go types:
//
//	Python None            nil
//	bool                   bool
//	int                    int64, or *big.Int when it does not fit in int64
//	float                  float64
//	str                    string
//	bytes                  []byte
//	tuple                  Tuple
//	list                   []any
//	dict                   Dict (ordered)
//	class reference        Global      (pickle only; see DecodePickle)
//	reduced/built object   *Object     (pickle only; see DecodePickle)
//
// msgpack has a single array type: like Python's unpacker (use_list=False)
// the msgpack codec decodes every array as a Tuple. Helpers that expect a
// sequence (Seq) accept both Tuple and []any.
//
// Dict is an ordered slice of pairs rather than a Go map because Python
// dicts keep insertion order and that order reaches bytes that matter: the
// ConflictError payload (docs/protocol.md §3.4), and transaction extension dicts that
// FileStorage pickles into Data.fs. Keys may also be []byte, which cannot
// be Go map keys. Dict.Get is a linear search (the dicts on the wire are
// small); the decoders index keys, so a large dict still decodes in linear
// time, and equal keys (1, True and 1.0; never str and bytes) collapse as
// in Python: the later value wins at the first key's position.
//
// For encoding, the codecs also accept int, int32, uint32, uint64 (when it
// fits), stack.Oid and stack.Tid (as their 8 bytes), []stack.Oid (a list of
// 8-byte strings) and map[string]any (a dict with keys sorted, so output is
// deterministic).

// Tuple is a Python tuple. It is what call arguments are, and what the
// loadBefore msgid is.
type Tuple []any

// DictItem is one key/value pair of a Dict.
type DictItem struct {
	Key   any
	Value any
}

// Dict is a Python dict that keeps insertion order.
type Dict []DictItem

// Get returns the value stored under the str key k. A bytes key equal to k
// also matches (Python 2 peers send dict keys as byte strings).
func (d Dict) Get(k string) (any, bool) {
	for _, it := range d {
		switch key := it.Key.(type) {
		case string:
			if key == k {
				return it.Value, true
			}
		case []byte:
			if string(key) == k {
				return it.Value, true
			}
		}
	}
	return nil, false
}

// Global is a reference to a Python class or function (the pickle GLOBAL
// opcode), kept opaque: the decoder never resolves or calls anything.
type Global struct {
	Module string
	Name   string
}

// String returns module.name.
func (g Global) String() string { return g.Module + "." + g.Name }

// Object is an opaque Python object a pickle built from a whitelisted
// Global: Callable(*Args) for REDUCE, or Callable.__new__(Callable, *Args)
// for NEWOBJ, then State applied by BUILD (nil when there was no BUILD).
// Examples are sets and frozensets (builtins) and ZopeUndo.Prefix filters.
// The decoder never mutates an Object once another value refers to it, so
// decoded values are acyclic.
type Object struct {
	Callable Global
	Args     Tuple
	NewObj   bool
	State    any
}

// Seq returns v as a sequence when it is a Tuple or a list.
func Seq(v any) ([]any, bool) {
	switch s := v.(type) {
	case Tuple:
		return s, true
	case []any:
		return s, true
	}
	return nil, false
}

// ArgError reports a call argument of the wrong type or shape.
type ArgError struct {
	Index int    // position in the argument tuple
	Want  string // what was expected
	Got   any    // what arrived
}

func (e *ArgError) Error() string {
	return fmt.Sprintf("argument %d: want %s, got %s", e.Index, e.Want, TypeName(e.Got))
}

// TypeName names v's Python type, for error messages.
func TypeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64, int, *big.Int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bytes"
	case Tuple:
		return fmt.Sprintf("tuple of %d", len(v))
	case []any:
		return fmt.Sprintf("list of %d", len(v))
	case Dict:
		return "dict"
	case Global:
		return "class " + v.String()
	case *Object:
		return v.Callable.String() + " object"
	}
	return fmt.Sprintf("Go %T", v)
}

// Args gives typed access to the argument tuple of a call, with errors
// that name the argument's position.
type Args []any

// ArgsOf returns the arguments of a call: a Tuple or list as is, None as no
// arguments; anything else is an error.
func ArgsOf(v any) (Args, error) {
	if v == nil {
		return nil, nil
	}
	s, ok := Seq(v)
	if !ok {
		return nil, fmt.Errorf("call arguments must be a tuple, got %s", TypeName(v))
	}
	return Args(s), nil
}

// Len is the number of arguments.
func (a Args) Len() int { return len(a) }

// Need fails unless there are between min and max arguments.
func (a Args) Need(min, max int) error {
	if len(a) < min || len(a) > max {
		if min == max {
			return fmt.Errorf("takes %d arguments, got %d", min, len(a))
		}
		return fmt.Errorf("takes %d to %d arguments, got %d", min, max, len(a))
	}
	return nil
}

func (a Args) at(i int, want string) (any, error) {
	if i < 0 || i >= len(a) {
		return nil, &ArgError{Index: i, Want: want + " (missing)"}
	}
	return a[i], nil
}

// Bytes returns argument i as bytes; a str is accepted as its UTF-8 bytes.
func (a Args) Bytes(i int) ([]byte, error) {
	v, err := a.at(i, "bytes")
	if err != nil {
		return nil, err
	}
	b, ok := AsBytes(v)
	if !ok {
		return nil, &ArgError{Index: i, Want: "bytes", Got: v}
	}
	return b, nil
}

// String returns argument i as str; bytes that are valid UTF-8 are accepted
// (Python 2 peers and lenient decoding of old string opcodes give bytes).
func (a Args) String(i int) (string, error) {
	v, err := a.at(i, "str")
	if err != nil {
		return "", err
	}
	s, ok := AsString(v)
	if !ok {
		return "", &ArgError{Index: i, Want: "str", Got: v}
	}
	return s, nil
}

// Oid returns argument i as an oid: 8 bytes.
func (a Args) Oid(i int) (stack.Oid, error) {
	b, err := a.Bytes(i)
	if err != nil {
		return 0, err
	}
	o, err := stack.OidFromBytes(b)
	if err != nil {
		return 0, &ArgError{Index: i, Want: "an 8-byte oid", Got: a[i]}
	}
	return o, nil
}

// Tid returns argument i as a tid: 8 bytes.
func (a Args) Tid(i int) (stack.Tid, error) {
	b, err := a.Bytes(i)
	if err != nil {
		return 0, err
	}
	t, err := stack.TidFromBytes(b)
	if err != nil {
		return 0, &ArgError{Index: i, Want: "an 8-byte tid", Got: a[i]}
	}
	return t, nil
}

// Int returns argument i as an int64; a bool counts as 0 or 1 as in Python.
func (a Args) Int(i int) (int64, error) {
	v, err := a.at(i, "int")
	if err != nil {
		return 0, err
	}
	n, ok := AsInt(v)
	if !ok {
		return 0, &ArgError{Index: i, Want: "int", Got: v}
	}
	return n, nil
}

// Bool returns the truthiness of argument i, as Python's bool() would.
func (a Args) Bool(i int) (bool, error) {
	v, err := a.at(i, "bool")
	if err != nil {
		return false, err
	}
	return Truth(v), nil
}

// IsNone reports whether argument i is None or absent (an optional argument).
func (a Args) IsNone(i int) bool { return i >= len(a) || a[i] == nil }

// Get returns argument i, or an error when it is missing.
func (a Args) Get(i int) (any, error) { return a.at(i, "a value") }

// AsBytes returns v as bytes: []byte as is, a str as its UTF-8 bytes.
func AsBytes(v any) ([]byte, bool) {
	switch v := v.(type) {
	case []byte:
		return v, true
	case string:
		return []byte(v), true
	}
	return nil, false
}

// AsString returns v as a str: a string as is, or bytes that are valid UTF-8.
func AsString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case []byte:
		if utf8.Valid(v) {
			return string(v), true
		}
	}
	return "", false
}

// AsInt returns v as an int64: ints, and bools as 0/1. A *big.Int outside
// the int64 range is not accepted.
func AsInt(v any) (int64, bool) {
	switch v := v.(type) {
	case int64:
		return v, true
	case int:
		return int64(v), true
	case bool:
		if v {
			return 1, true
		}
		return 0, true
	case *big.Int:
		if v.IsInt64() {
			return v.Int64(), true
		}
	}
	return 0, false
}

// Truth is Python's truthiness: None, False, zero numbers and empty
// strings, bytes and containers are false; everything else is true.
func Truth(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	case int64:
		return v != 0
	case int:
		return v != 0
	case *big.Int:
		return v.Sign() != 0
	case float64:
		return v != 0 // NaN is true, as in Python
	case string:
		return v != ""
	case []byte:
		return len(v) != 0
	case Tuple:
		return len(v) != 0
	case []any:
		return len(v) != 0
	case Dict:
		return len(v) != 0
	}
	return true
}

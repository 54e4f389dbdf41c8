package server

import (
	"fmt"
	"math/big"
	"sort"

	ogórek "github.com/kisielk/og-rek"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// extension turns a transaction's stored extension (a pickled dict) into
// the dict clients see in history, undoLog and iterator_next. An extension
// that cannot be decoded shows as empty rather than failing the request.
func (s *Server) extension(b []byte) zeoproto.Dict {
	if len(b) == 0 {
		return zeoproto.Dict{}
	}
	m, err := stack.DecodeExtension(b)
	if err != nil {
		s.log.WithError(err).Warn("transaction extension cannot be decoded; shown as empty")
		return zeoproto.Dict{}
	}
	d, _ := toWire(m).(zeoproto.Dict)
	return d
}

// extensionBytes is the extension argument of tpc_begin as it is stored: a
// dict is pickled as ZODB stores it; bytes are taken as an already-pickled
// extension (TransactionMetaData accepts both).
func (s *Server) extensionBytes(v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []byte:
		return x, nil
	case zeoproto.Dict:
		m := make(map[string]any, len(x))
		for _, it := range x {
			k, ok := zeoproto.AsString(it.Key)
			if !ok {
				return nil, fmt.Errorf("extension key %v is not a str", it.Key)
			}
			m[k] = fromWire(it.Value)
		}
		return stack.EncodeExtension(m)
	case *zeoproto.Object:
		// A dict subclass pickles as dict(pairs) through __reduce__
		// (ZODB's IteratorStorage test does this); Python servers call
		// dict, so take the pairs.
		if d, ok := dictCall(x); ok {
			return s.extensionBytes(d)
		}
	}
	return nil, &zeoproto.ArgError{Index: 3, Want: "a dict or bytes", Got: v}
}

// dictCall turns the pickled call dict(), dict(mapping) or dict(pairs)
// into a Dict.
func dictCall(o *zeoproto.Object) (zeoproto.Dict, bool) {
	if o.NewObj || o.State != nil || o.Callable.Name != "dict" ||
		(o.Callable.Module != "builtins" && o.Callable.Module != "__builtin__") || len(o.Args) > 1 {
		return nil, false
	}
	if len(o.Args) == 0 {
		return zeoproto.Dict{}, true
	}
	if d, ok := o.Args[0].(zeoproto.Dict); ok {
		return d, true
	}
	pairs, ok := zeoproto.Seq(o.Args[0])
	if !ok {
		return nil, false
	}
	d := make(zeoproto.Dict, 0, len(pairs))
	for _, p := range pairs {
		kv, ok := zeoproto.Seq(p)
		if !ok || len(kv) != 2 {
			return nil, false
		}
		d = append(d, zeoproto.DictItem{Key: kv[0], Value: kv[1]})
	}
	return d, true
}

// toWire converts a decoded extension value to zeoproto's value model.
func toWire(v any) any {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		d := make(zeoproto.Dict, 0, len(x))
		for _, k := range keys {
			d = append(d, zeoproto.DictItem{Key: k, Value: toWire(x[k])})
		}
		return d
	case map[any]any:
		d := make(zeoproto.Dict, 0, len(x))
		for k, val := range x {
			d = append(d, zeoproto.DictItem{Key: toWire(k), Value: toWire(val)})
		}
		sort.Slice(d, func(i, j int) bool { return fmt.Sprint(d[i].Key) < fmt.Sprint(d[j].Key) })
		return d
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = toWire(e)
		}
		return out
	case ogórek.Tuple:
		out := make(zeoproto.Tuple, len(x))
		for i, e := range x {
			out[i] = toWire(e)
		}
		return out
	case nil, bool, int64, float64, string, []byte, *big.Int:
		return x
	}
	return fmt.Sprint(v)
}

// fromWire converts a zeoproto value to what stack.EncodeExtension takes.
func fromWire(v any) any {
	switch x := v.(type) {
	case zeoproto.Dict:
		m := make(map[string]any, len(x))
		for _, it := range x {
			m[fmt.Sprint(it.Key)] = fromWire(it.Value)
		}
		return m
	case zeoproto.Tuple:
		out := make(ogórek.Tuple, len(x))
		for i, e := range x {
			out[i] = fromWire(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = fromWire(e)
		}
		return out
	case nil, bool, int64, float64, string, []byte, *big.Int:
		return x
	}
	return fmt.Sprint(v)
}

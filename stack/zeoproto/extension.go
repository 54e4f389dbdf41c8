package zeoproto

import (
	"fmt"
	"math/big"
	"sort"

	ogórek "github.com/kisielk/og-rek"
	"github.com/zeoraid/zeoraid/stack"
)

// ExtensionToWire decodes a transaction's stored extension (a pickled
// dict, as FileStorage keeps it) into the dict clients see in history,
// undoLog and iterator_next. Empty bytes give an empty dict.
func ExtensionToWire(b []byte) (Dict, error) {
	if len(b) == 0 {
		return Dict{}, nil
	}
	m, err := stack.DecodeExtension(b)
	if err != nil {
		return nil, err
	}
	d, _ := toWire(m).(Dict)
	return d, nil
}

// ExtensionFromWire is the extension argument of tpc_begin (or an
// extension dict from another server) as it is stored: a dict is pickled
// as ZODB stores it; bytes are an already-pickled extension
// (TransactionMetaData accepts both); a pickled dict(...) call, as a dict
// subclass reduces, counts as its dict.
func ExtensionFromWire(v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []byte:
		return x, nil
	case Dict:
		if len(x) == 0 {
			return nil, nil
		}
		m := make(map[string]any, len(x))
		for _, it := range x {
			k, ok := AsString(it.Key)
			if !ok {
				return nil, fmt.Errorf("extension key %v is not a str", it.Key)
			}
			m[k] = fromWire(it.Value)
		}
		return stack.EncodeExtension(m)
	case *Object:
		if d, ok := dictCall(x); ok {
			return ExtensionFromWire(d)
		}
	}
	return nil, &ArgError{Index: 3, Want: "a dict or bytes", Got: v}
}

// dictCall turns the pickled call dict(), dict(mapping) or dict(pairs)
// into a Dict.
func dictCall(o *Object) (Dict, bool) {
	if o.NewObj || o.State != nil || o.Callable.Name != "dict" ||
		(o.Callable.Module != "builtins" && o.Callable.Module != "__builtin__") || len(o.Args) > 1 {
		return nil, false
	}
	if len(o.Args) == 0 {
		return Dict{}, true
	}
	if d, ok := o.Args[0].(Dict); ok {
		return d, true
	}
	pairs, ok := Seq(o.Args[0])
	if !ok {
		return nil, false
	}
	d := make(Dict, 0, len(pairs))
	for _, p := range pairs {
		kv, ok := Seq(p)
		if !ok || len(kv) != 2 {
			return nil, false
		}
		d = append(d, DictItem{Key: kv[0], Value: kv[1]})
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
		d := make(Dict, 0, len(x))
		for _, k := range keys {
			d = append(d, DictItem{Key: k, Value: toWire(x[k])})
		}
		return d
	case map[any]any:
		d := make(Dict, 0, len(x))
		for k, val := range x {
			d = append(d, DictItem{Key: toWire(k), Value: toWire(val)})
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
		out := make(Tuple, len(x))
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
	case Dict:
		m := make(map[string]any, len(x))
		for _, it := range x {
			m[fmt.Sprint(it.Key)] = fromWire(it.Value)
		}
		return m
	case Tuple:
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

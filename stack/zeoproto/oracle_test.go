package zeoproto

import (
	"bytes"
	"math/big"
	"reflect"
	"testing"

	ogorek "github.com/kisielk/og-rek"
)

// og-rek is the independent pickle decoder our own is checked against.
// Ours exists because og-rek loses dict insertion order (which Data.fs
// extension bytes and the ConflictError payload depend on) and resolves globals after the
// fact; og-rek still tells us the structure is right.

func ogrekDecode(p []byte) (any, error) {
	return ogorek.NewDecoderWithConfig(bytes.NewReader(p), &ogorek.DecoderConfig{StrictUnicode: true, PyDict: true}).Decode()
}

// fromOgorek converts og-rek's result to our model, dicts as unordered
// pair lists; ok is false for anything with globals or calls.
func fromOgorek(v any) (any, bool) {
	switch v := v.(type) {
	case ogorek.None:
		return nil, true
	case bool, float64, string:
		return v, true
	case int64:
		return v, true
	case *big.Int:
		if v.IsInt64() {
			return v.Int64(), true
		}
		return v, true
	case ogorek.Bytes:
		return []byte(v), true
	case ogorek.ByteString:
		return []byte(v), true
	case ogorek.Tuple:
		out := make(Tuple, len(v))
		for i := range v {
			var ok bool
			if out[i], ok = fromOgorek(v[i]); !ok {
				return nil, false
			}
		}
		return out, true
	case []any:
		out := make([]any, len(v))
		for i := range v {
			var ok bool
			if out[i], ok = fromOgorek(v[i]); !ok {
				return nil, false
			}
		}
		return out, true
	case ogorek.Dict:
		var out unorderedDict
		ok := true
		v.Iter()(func(k, val any) bool {
			var ck, cv any
			var ok1, ok2 bool
			ck, ok1 = fromOgorek(k)
			cv, ok2 = fromOgorek(val)
			ok = ok && ok1 && ok2
			out = append(out, DictItem{ck, cv})
			return ok
		})
		return out, ok
	}
	return nil, false
}

type unorderedDict []DictItem

// sameValue compares our decoding with og-rek's.
func sameValue(ours, theirs any) bool {
	switch o := ours.(type) {
	case Dict:
		t, ok := theirs.(unorderedDict)
		if !ok || len(t) != len(o) {
			return false
		}
	next:
		for _, it := range o {
			for _, ti := range t {
				if sameValue(it.Key, ti.Key) {
					if !sameValue(it.Value, ti.Value) {
						return false
					}
					continue next
				}
			}
			return false
		}
		return true
	case Tuple:
		t, ok := theirs.(Tuple)
		return ok && sameSeq(o, t)
	case []any:
		t, ok := theirs.([]any)
		return ok && sameSeq(o, t)
	case *big.Int:
		t, ok := theirs.(*big.Int)
		return ok && o.Cmp(t) == 0
	case float64:
		t, ok := theirs.(float64)
		return ok && (o == t || o != o && t != t)
	}
	return reflect.DeepEqual(ours, theirs)
}

func sameSeq(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameValue(a[i], b[i]) {
			return false
		}
	}
	return true
}

func hasObjects(v any) bool {
	switch v := v.(type) {
	case Global, *Object:
		return true
	case Tuple:
		return hasObjects([]any(v))
	case []any:
		for _, it := range v {
			if hasObjects(it) {
				return true
			}
		}
	case Dict:
		for _, it := range v {
			if hasObjects(it.Key) || hasObjects(it.Value) {
				return true
			}
		}
	}
	return false
}

// checkAgainstOgorek fails t when both decoders accept p and disagree.
func checkAgainstOgorek(t *testing.T, p []byte) {
	ours, err := DecodePickle(p)
	if err != nil || hasObjects(ours) {
		return
	}
	if pm, ok := usesPopMark(p); pm || !ok {
		return
	}
	raw, err := ogrekDecode(p)
	if err != nil {
		return
	}
	theirs, ok := fromOgorek(raw)
	if !ok {
		return
	}
	if !sameValue(ours, theirs) {
		t.Fatalf("decoders disagree on %x:\n ours %#v\n og-rek %#v", p, ours, theirs)
	}
}

func TestPickleAgainstOgorek(t *testing.T) {
	n := 0
	for _, v := range vectors {
		if v.codec != Pickle {
			continue
		}
		p := unhex(v.frame)[4:]
		if ours, _ := DecodePickle(p); hasObjects(ours) {
			continue
		}
		raw, err := ogrekDecode(p)
		if err != nil {
			t.Fatalf("%s: og-rek: %v", v.name, err)
		}
		theirs, ok := fromOgorek(raw)
		if !ok {
			t.Fatalf("%s: og-rek result %#v not convertible", v.name, raw)
		}
		ours, _ := DecodePickle(p)
		if !sameValue(ours, theirs) {
			t.Errorf("%s: ours %#v, og-rek %#v", v.name, ours, theirs)
		}
		n++
	}
	if n < 20 {
		t.Fatalf("only %d vectors compared", n)
	}
}

// usesPopMark reports whether pickle p executes POP_MARK, which og-rek
// v1.3.0 gets wrong (it leaves the popped items on the stack; Python and
// our decoder discard them). It walks opcodes by their argument sizes;
// ok is false when p cannot be walked.
func usesPopMark(p []byte) (uses, ok bool) {
	fixed := map[byte]int{
		opProto: 1, opBinInt1: 1, opBinInt2: 2, opBinInt: 4, opBinFloat: 8, opBinGet: 1, opBinPut: 1,
		opLongBinGet: 4, opLongBinPut: 4, opFrame: 8,
	}
	lenPrefixed := map[byte]int{
		opShortBinBytes: 1, opShortBinString: 1, opShortBinUnicode: 1, opLong1: 1,
		opBinBytes: 4, opBinString: 4, opBinUnicode: 4, opLong4: 4,
		opBinBytes8: 8, opBinUnicode8: 8, opByteArray8: 8,
	}
	lines := map[byte]int{opInt: 1, opLong: 1, opFloat: 1, opString: 1, opUnicode: 1, opGet: 1, opPut: 1, opPersID: 1, opGlobal: 2, opInst: 2}
	for i := 0; i < len(p); {
		op := p[i]
		i++
		switch {
		case op == opPopMark:
			return true, true
		case fixed[op] > 0:
			i += fixed[op]
		case lenPrefixed[op] > 0:
			w := lenPrefixed[op]
			if i+w > len(p) {
				return false, false
			}
			var n uint64
			for k := w - 1; k >= 0; k-- {
				n = n<<8 | uint64(p[i+k])
			}
			if n > uint64(len(p)) {
				return false, false
			}
			i += w + int(n)
		case lines[op] > 0:
			for range lines[op] {
				j := bytes.IndexByte(p[min(i, len(p)):], '\n')
				if j < 0 {
					return false, false
				}
				i += j + 1
			}
		}
	}
	return false, true
}

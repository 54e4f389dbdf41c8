package zeoproto

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// maxDepth bounds the nesting of containers the codecs encode and decode.
// Python's own recursion limit (1000) keeps its peers far below it.
const maxDepth = 1000

// dictBuilder builds a Dict while decoding, with Python's key semantics
// (a later equal key replaces the value and keeps the first position) in
// constant time per item, so a hostile message with many keys cannot make
// decoding quadratic.
type dictBuilder struct {
	items  Dict
	index  map[string]int
	shared bool // items' backing array is also referenced by a frozen copy
}

func newDictBuilder(d Dict) (*dictBuilder, error) {
	b := &dictBuilder{index: make(map[string]int, len(d))}
	for _, it := range d {
		if err := b.set(it.Key, it.Value); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// set adds key or replaces the value of an equal key.
func (b *dictBuilder) set(key, value any) error {
	h, err := keyHash(key)
	if err != nil {
		return err
	}
	if i, ok := b.index[h]; ok {
		if b.shared { // copy before writing into an array a frozen Dict sees
			b.items = append(Dict(nil), b.items...)
			b.shared = false
		}
		b.items[i].Value = value
		return nil
	}
	b.index[h] = len(b.items)
	b.items = append(b.items, DictItem{key, value})
	return nil
}

// setPairs sets alternating keys and values.
func (b *dictBuilder) setPairs(items []any) error {
	if len(items)%2 != 0 {
		return errors.New("odd number of items for a dict")
	}
	for i := 0; i < len(items); i += 2 {
		if err := b.set(items[i], items[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// freeze returns the Dict built so far; the builder may go on.
func (b *dictBuilder) freeze() Dict {
	b.shared = true
	return b.items[:len(b.items):len(b.items)]
}

// keyHash returns a string equal for keys Python considers equal
// (1 == True == 1.0, str never equals bytes), or an error for an
// unhashable key.
func keyHash(k any) (string, error) {
	var b strings.Builder
	if err := writeKeyHash(&b, k, 0); err != nil {
		return "", err
	}
	return b.String(), nil
}

func writeKeyHash(b *strings.Builder, k any, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("dict key nested deeper than %d", maxDepth)
	}
	switch k := k.(type) {
	case nil:
		b.WriteString("N")
	case bool:
		if k {
			b.WriteString("n1")
		} else {
			b.WriteString("n0")
		}
	case int64:
		b.WriteString("n" + strconv.FormatInt(k, 10))
	case *big.Int:
		b.WriteString("n" + k.String())
	case float64:
		switch {
		case math.IsNaN(k): // Python compares NaN keys by identity; ours are all equal
			b.WriteString("nan")
		case k == math.Trunc(k) && !math.IsInf(k, 0):
			i, _ := big.NewFloat(k).Int(nil)
			b.WriteString("n" + i.String())
		default:
			b.WriteString("f" + strconv.FormatFloat(k, 'g', -1, 64))
		}
	case string:
		fmt.Fprintf(b, "s%d:%s", len(k), k)
	case []byte:
		fmt.Fprintf(b, "b%d:%s", len(k), k)
	case Global:
		fmt.Fprintf(b, "g%d:%s.%s", len(k.Module), k.Module, k.Name)
	case Tuple:
		fmt.Fprintf(b, "t%d(", len(k))
		for _, it := range k {
			if err := writeKeyHash(b, it, depth+1); err != nil {
				return err
			}
			b.WriteByte(',')
		}
		b.WriteByte(')')
	default:
		return fmt.Errorf("unhashable dict key %s", TypeName(k))
	}
	return nil
}

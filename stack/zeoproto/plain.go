package zeoproto

import (
	"fmt"
	"math/big"
)

// Plain turns decoded ZEO values into JSON-friendly Go values: dicts into
// maps with string keys, tuples into slices, bytes into strings, big
// integers into their decimal strings; maps and slices are converted
// through. `zeoraid ctl info --json` and the admin endpoint's /status
// print what it returns.
func Plain(v any) any {
	switch v := v.(type) {
	case Dict:
		m := make(map[string]any, len(v))
		for _, it := range v {
			k, ok := AsString(it.Key)
			if !ok {
				k = fmt.Sprint(it.Key)
			}
			m[k] = Plain(it.Value)
		}
		return m
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = Plain(x)
		}
		return m
	case Tuple:
		return Plain([]any(v))
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = Plain(x)
		}
		return out
	case []byte:
		return string(v)
	case *big.Int:
		return v.String()
	}
	return v
}

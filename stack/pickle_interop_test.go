//go:build interop

package stack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"os/exec"
	"reflect"
	"testing"

	ogórek "github.com/kisielk/og-rek"

	"github.com/zeoraid/zeoraid/interop/pyenv"
)

type pyPickles struct {
	Records []struct {
		Name string
		Data string
		Refs []string
	}
	Extensions []struct {
		Name string
		Data string
	}
}

// loadPyPickles runs testdata/pickles.py with the real Python ZODB.
func loadPyPickles(t *testing.T) pyPickles {
	t.Helper()
	py := pyenv.Python(t)
	out, err := exec.Command(py, "testdata/pickles.py").Output()
	if err != nil {
		t.Fatalf("testdata/pickles.py: %v", err)
	}
	var p pyPickles
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRefsMatchesReferencesf(t *testing.T) {
	p := loadPyPickles(t)
	if len(p.Records) < 8 {
		t.Fatalf("only %d records from Python", len(p.Records))
	}
	for _, r := range p.Records {
		got, err := Refs(unhex(t, r.Data))
		if err != nil {
			t.Errorf("%s: %v", r.Name, err)
			continue
		}
		var want []Oid
		for _, h := range r.Refs {
			o, _ := OidFromBytes(unhex(t, h))
			want = append(want, o)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Refs = %v, referencesf = %v", r.Name, got, want)
		}
	}
}

func TestExtensionCodecMatchesPython(t *testing.T) {
	p := loadPyPickles(t)
	many := map[string]any{}
	for i := 0; i < 300; i++ {
		many[fmtKey(i)] = int64(i)
	}
	encodeCases := map[string]map[string]any{
		"kv": {"k": "v"},
		"types": {
			"user_name": "alice", "n": int64(5), "n2": int64(300), "n4": int64(70000), "neg": int64(-3),
			"big": int64(1 << 40), "nbig": int64(-(1 << 40)), "f": 1.5, "t": true, "fa": false,
			"none": nil, "b": []byte{0, 0xff}, "list": []any{int64(1), "x"}, "one": []any{"y"},
			"nested": map[string]any{"a": int64(1)}, "tuple": ogórek.Tuple{int64(1), int64(2)},
			"empty": map[string]any{}, "uni": "h\u00e9llo",
		},
		"many": many,
	}
	py2 := map[string]any{"user": "bob", "raw": []byte{0xff}}
	seen := 0
	for _, e := range p.Extensions {
		data := unhex(t, e.Data)
		want, ok := encodeCases[e.Name]
		if !ok {
			want = py2
		} else {
			got, err := EncodeExtension(want)
			if err != nil {
				t.Fatalf("%s: %v", e.Name, err)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("%s: EncodeExtension\n got %x\nwant %x", e.Name, got, data)
			}
		}
		got, err := DecodeExtension(data)
		if err != nil {
			t.Errorf("%s: DecodeExtension: %v", e.Name, err)
			continue
		}
		if !reflect.DeepEqual(normInts(got), normInts(want)) {
			t.Errorf("%s: DecodeExtension = %#v, want %#v", e.Name, got, want)
		}
		seen++
	}
	if seen != 6 {
		t.Fatalf("checked %d extensions from Python, want 6", seen)
	}
}

func fmtKey(i int) string { return fmt.Sprintf("k%03d", i) }

// normInts turns *big.Int that fit into int64, so comparisons do not depend
// on which integer opcode carried a value.
func normInts(v any) any {
	switch v := v.(type) {
	case *big.Int:
		if v.IsInt64() {
			return v.Int64()
		}
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			out[k] = normInts(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = normInts(x)
		}
		return out
	case ogórek.Tuple:
		out := make(ogórek.Tuple, len(v))
		for i, x := range v {
			out[i] = normInts(x)
		}
		return out
	}
	return v
}

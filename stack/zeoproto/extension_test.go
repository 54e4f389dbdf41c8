package zeoproto

import (
	"reflect"
	"testing"
)

// A tpc_begin extension dict is stored as ZODB pickles it and comes back
// as the same dict; bytes pass through; dict(pairs) counts as its dict.
func TestExtensionRoundTrip(t *testing.T) {
	d := Dict{{"user_name", "alice"}, {"count", int64(3)}, {"tags", Tuple{"a", []byte("b")}}}
	b, err := ExtensionFromWire(d)
	if err != nil {
		t.Fatal(err)
	}
	// {'k': 'v'} is the byte-exact example of docs/filestorage.md §3.4.
	if kv, _ := ExtensionFromWire(Dict{{"k", "v"}}); string(kv) != "\x80\x03}q\x00X\x01\x00\x00\x00kq\x01X\x01\x00\x00\x00vq\x02s." {
		t.Fatalf("{'k': 'v'} pickled as %x", kv)
	}
	back, err := ExtensionToWire(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range d {
		got, _ := back.Get(it.Key.(string))
		if !reflect.DeepEqual(got, it.Value) {
			t.Errorf("%v: got %#v, want %#v", it.Key, got, it.Value)
		}
	}
	if raw, _ := ExtensionFromWire(b); string(raw) != string(b) {
		t.Error("pickled bytes must pass through unchanged")
	}
	call := &Object{Callable: Global{Module: "builtins", Name: "dict"}, Args: Tuple{[]any{Tuple{"k", "v"}}}}
	if kv, err := ExtensionFromWire(call); err != nil || string(kv) != "\x80\x03}q\x00X\x01\x00\x00\x00kq\x01X\x01\x00\x00\x00vq\x02s." {
		t.Fatalf("dict(pairs): %x, %v", kv, err)
	}
	if empty, err := ExtensionToWire(nil); err != nil || len(empty) != 0 {
		t.Fatalf("empty extension: %v, %v", empty, err)
	}
	if _, err := ExtensionFromWire(int64(3)); err == nil {
		t.Fatal("an int extension must be refused")
	}
}

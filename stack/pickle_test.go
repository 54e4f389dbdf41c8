package stack

import (
	"encoding/hex"
	"reflect"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRefsBadInput(t *testing.T) {
	if refs, err := Refs(nil); err != nil || refs != nil {
		t.Fatalf("Refs(nil) = %v, %v", refs, err)
	}
	good := unhex(t, "80035d71004308000000000000000171015171022e") // [BINPERSID oid 1]
	if refs, err := Refs(good); err != nil || !reflect.DeepEqual(refs, []Oid{1}) {
		t.Fatalf("Refs = %v, %v", refs, err)
	}
	for i := 1; i < len(good); i++ {
		if _, err := Refs(good[:i]); err == nil {
			t.Errorf("truncated at %d: no error", i)
		}
	}
	for _, bad := range []string{"ff", "51", "68052e", "30", "4303aabbcc512e", "29512e"} {
		if _, err := Refs(unhex(t, bad)); err == nil {
			t.Errorf("Refs(%s): no error", bad)
		}
	}
}

func FuzzRefs(f *testing.F) {
	f.Add(unhex(f, "80035d71004308000000000000000171015171022e"))
	f.Fuzz(func(t *testing.T, data []byte) { _, _ = Refs(data) })
}

func TestExtensionEmptyAndErrors(t *testing.T) {
	if b, err := EncodeExtension(nil); err != nil || len(b) != 0 {
		t.Fatalf("EncodeExtension(nil) = %x, %v", b, err)
	}
	if m, err := DecodeExtension(nil); err != nil || len(m) != 0 {
		t.Fatalf("DecodeExtension(nil) = %v, %v", m, err)
	}
	if _, err := EncodeExtension(map[string]any{"c": make(chan int)}); err == nil {
		t.Fatal("EncodeExtension of a channel succeeded")
	}
	if _, err := DecodeExtension([]byte("\x80\x03K\x01.")); err == nil {
		t.Fatal("DecodeExtension of an int succeeded")
	}
	if _, err := DecodeExtension([]byte("\x80\x03}q\x00")); err == nil {
		t.Fatal("DecodeExtension of a truncated pickle succeeded")
	}
}

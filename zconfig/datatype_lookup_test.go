package zconfig

import (
	"reflect"
	"testing"
)

// Every datatype maps back to a Go type holding it, so a described schema
// can be rebuilt; integer is the 64-bit one, and unknown names are refused.
func TestDatatypeType(t *testing.T) {
	for goType, c := range converters {
		back, ok := DatatypeType(c.typeName)
		if !ok || converters[back].typeName != c.typeName {
			t.Errorf("%s (%s): DatatypeType gives %v, %v", c.typeName, goType, back, ok)
		}
	}
	if typ, _ := DatatypeType("integer"); typ != reflect.TypeFor[int64]() {
		t.Errorf("integer: %v, want int64", typ)
	}
	if typ, ok := DatatypeType("no-such-datatype"); ok {
		t.Errorf("unknown datatype: %v", typ)
	}
}

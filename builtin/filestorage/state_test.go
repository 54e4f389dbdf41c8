package filestorage

import (
	"bytes"
	"fmt"

	"github.com/zeoraid/zeoraid/stack"
)

// statePickle is a PersistentMapping state referencing oids (memo 0 is the
// class from the first pickle, as ZODB writes it).
func statePickle(tag string, refs ...stack.Oid) []byte {
	b := append(bytes.Clone(classPM), "\x80\x03}q\x01X\x04\x00\x00\x00dataq\x02}q\x03"...)
	for _, r := range refs {
		name := fmt.Sprintf("c%d", r)
		b = append(b, 'X', byte(len(name)), 0, 0, 0)
		b = append(b, name...)
		b = append(b, 'C', 8)
		b = append(b, r.Bytes()...)
		b = append(b, "h\x00\x86Q"...)
		b = append(b, 's')
	}
	b = append(b, 'X', byte(len(tag)), 0, 0, 0)
	b = append(b, tag...)
	b = append(b, 'N', 's')
	return append(b, "s."...)
}

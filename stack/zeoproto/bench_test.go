package zeoproto

import (
	"bytes"
	"testing"
)

// Encoding and decoding a loadBefore reply carrying a 4 KiB record, the
// hot path of a ZEO server.
func BenchmarkLoadBeforeReply(b *testing.B) {
	data := bytes.Repeat([]byte("x"), 4096)
	m := NewReply(Tuple{oid1, maxtid}, Tuple{data, tid22, nil})
	for _, codec := range []Codec{Pickle, Msgpack} {
		b.Run(string(codec.Protocol())+"/encode", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := codec.Encode(m); err != nil {
					b.Fatal(err)
				}
			}
		})
		p, _ := codec.Encode(m)
		b.Run(string(codec.Protocol())+"/decode", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := codec.Decode(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

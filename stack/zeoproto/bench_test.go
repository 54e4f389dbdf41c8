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

// Decoding a loadBefore request as a Python client sends it (msgid the
// (oid, tid) tuple), the first step of every load a server answers.
func BenchmarkRequestDecode(b *testing.B) {
	m := Message{ID: Tuple{oid1, maxtid}, Flag: FlagSync, Name: "loadBefore", Args: Tuple{oid1, maxtid}}
	for _, codec := range []Codec{Pickle, Msgpack} {
		p, err := codec.Encode(m)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(string(codec.Protocol()), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := codec.Decode(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Encoding a loadBefore reply of a 200-byte record straight into a reused
// frame buffer, as the server does.
func BenchmarkAppendMessageFrame(b *testing.B) {
	m := NewReply(Tuple{oid1, maxtid}, Tuple{bytes.Repeat([]byte("x"), 200), tid22, nil})
	for _, codec := range []Codec{Pickle, Msgpack} {
		b.Run(string(codec.Protocol()), func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				var err error
				if buf, err = AppendMessageFrame(codec, buf[:0], m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Reading frames of small requests from a buffered stream with Next.
func BenchmarkFrameNext(b *testing.B) {
	p, _ := Pickle.Encode(NewCall(7, "loadBefore", oid1, maxtid))
	stream := bytes.Repeat(AppendFrame(nil, p), 1000)
	r := bytes.NewReader(stream)
	fr := NewFrameReader(r, 0)
	b.ReportAllocs()
	b.SetBytes(int64(len(p) + 4))
	for b.Loop() {
		if _, err := fr.Next(); err != nil {
			r.Reset(stream)
			fr = NewFrameReader(r, 0)
		}
	}
}

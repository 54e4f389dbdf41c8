package zeoproto

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// Every golden frame comes out of Next as out of ReadFrame, whether frames
// arrive whole or a byte at a time, and AppendMessageFrame writes the
// golden bytes behind whatever the buffer already holds.
func TestNextAndAppendMessageFrame(t *testing.T) {
	var stream []byte
	for _, v := range vectors {
		stream = append(stream, unhex(v.frame)...)
	}
	for _, r := range []struct {
		name string
		r    io.Reader
	}{{"whole", bytes.NewReader(stream)}, {"byte at a time", oneByteReader{bytes.NewReader(stream)}}} {
		t.Run(r.name, func(t *testing.T) {
			fr := NewFrameReader(r.r, 0)
			for _, v := range vectors {
				p, err := fr.Next()
				if err != nil {
					t.Fatalf("%s: %v", v.name, err)
				}
				if want := unhex(v.frame)[4:]; !bytes.Equal(p, want) {
					t.Fatalf("%s: Next gave % x, want % x", v.name, p, want)
				}
			}
			if _, err := fr.Next(); err != io.EOF {
				t.Fatalf("after the last frame: %v, want io.EOF", err)
			}
		})
	}
	for _, v := range vectors {
		got, err := AppendMessageFrame(v.codec, []byte("prefix"), v.msg)
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		if want := append([]byte("prefix"), unhex(v.frame)...); !bytes.Equal(got, want) {
			t.Fatalf("%s: AppendMessageFrame\n % x\nwant\n % x", v.name, got, want)
		}
	}
}

// Next reports a stream cut inside a frame, an empty frame and an
// oversized one as ReadFrame does.
func TestNextErrors(t *testing.T) {
	if _, err := NewFrameReader(bytes.NewReader([]byte{0, 0, 0, 5, 'a'}), 0).Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("cut payload: %v", err)
	}
	if _, err := NewFrameReader(bytes.NewReader([]byte{0, 0}), 0).Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("cut header: %v", err)
	}
	if _, err := NewFrameReader(bytes.NewReader([]byte{0, 0, 0, 0}), 0).Next(); err != ErrEmptyFrame {
		t.Fatalf("empty frame: %v", err)
	}
	var tooLarge *FrameTooLargeError
	if _, err := NewFrameReader(bytes.NewReader([]byte{0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9}), 8).Next(); !errors.As(err, &tooLarge) {
		t.Fatalf("frame over the maximum: %v", err)
	}
	big := AppendFrame(nil, bytes.Repeat([]byte("x"), 100<<10)) // beyond the read buffer
	p, err := NewFrameReader(bytes.NewReader(big), 0).Next()
	if err != nil || !bytes.Equal(p, big[4:]) {
		t.Fatalf("frame larger than the buffer: %d bytes, %v", len(p), err)
	}
}

// The bytes values of a decoded message own their memory: the input can
// be reused, and appending to one value leaves its neighbours alone.
func TestDecodedBytesAreCopies(t *testing.T) {
	for _, codec := range []Codec{Pickle, Msgpack} {
		in, err := codec.Encode(NewCall(7, "loadBefore", oid1, maxtid))
		if err != nil {
			t.Fatal(err)
		}
		m, err := codec.Decode(in)
		if err != nil {
			t.Fatal(err)
		}
		clear(in)
		args := m.Args.(Tuple)
		a, b := args[0].([]byte), args[1].([]byte)
		_ = append(a, bytes.Repeat([]byte{0xee}, 16)...)
		if !bytes.Equal(a, oid1) || !bytes.Equal(b, maxtid) || m.Name != "loadBefore" {
			t.Fatalf("%c: decoded %#v after the input was cleared", codec.Protocol(), m)
		}
		if want := NewCall(7, "loadBefore", oid1, maxtid); !reflect.DeepEqual(m, want) {
			t.Fatalf("%c: %#v, want %#v", codec.Protocol(), m, want)
		}
	}
}

package zeoproto

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

// oneByteReader returns one byte per Read, splitting every frame.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) { return o.r.Read(p[:min(1, len(p))]) }

func TestFrameReaderSplitAndPipelined(t *testing.T) {
	var stream []byte
	for _, v := range vectors {
		stream = append(stream, unhex(v.frame)...)
	}
	for _, r := range []io.Reader{bytes.NewReader(stream), oneByteReader{bytes.NewReader(stream)}} {
		fr := NewFrameReader(r, 0)
		for _, v := range vectors {
			p, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("%s: %v", v.name, err)
			}
			if !bytes.Equal(p, unhex(v.frame)[4:]) {
				t.Fatalf("%s: wrong payload", v.name)
			}
		}
		if _, err := fr.ReadFrame(); err != io.EOF {
			t.Fatalf("at the end: %v, want EOF", err)
		}
	}
}

func TestFrameReaderErrors(t *testing.T) {
	fr := NewFrameReader(bytes.NewReader([]byte{0, 0, 0, 0}), 0)
	if _, err := fr.ReadFrame(); !errors.Is(err, ErrEmptyFrame) {
		t.Errorf("zero-length frame: %v", err)
	}
	fr = NewFrameReader(bytes.NewReader([]byte{0, 0, 1, 1, 'x'}), 256)
	var tl *FrameTooLargeError
	if _, err := fr.ReadFrame(); !errors.As(err, &tl) || tl.Size != 257 {
		t.Errorf("oversized frame: %v", err)
	}
	// A huge declared length with little data: an error, not a huge allocation.
	fr = NewFrameReader(bytes.NewReader([]byte{0x3f, 0xff, 0xff, 0xff, 'x'}), 1<<30)
	if _, err := fr.ReadFrame(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated frame: %v", err)
	}
}

func TestFrameWriterConcurrent(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	w := NewFrameWriter(a)
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := bytes.Repeat([]byte{byte('a' + i)}, 1000+i)
			for range each {
				if err := w.WriteFrame(p); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	fr := NewFrameReader(b, 0)
	for range writers * each {
		p, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		i := int(p[0] - 'a')
		if len(p) != 1000+i || !bytes.Equal(p, bytes.Repeat(p[:1], len(p))) {
			t.Fatal("interleaved frame")
		}
	}
	wg.Wait()
}

func handshakePair(t *testing.T, serverAnnounce Codec, clientReply []byte) (Codec, bool, error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		fr := NewFrameReader(b, 0)
		fr.ReadFrame()
		NewFrameWriter(b).WriteFrame(clientReply)
	}()
	return ServerHandshake(NewFrameReader(a, 0), NewFrameWriter(a), serverAnnounce)
}

func TestServerHandshake(t *testing.T) {
	cases := []struct {
		announce Codec
		reply    string
		want     Codec
		ruok     bool
		bad      bool
	}{
		{Pickle, "Z5", Pickle, false, false},
		{Pickle, "M5", Msgpack, false, false},
		{Msgpack, "Z5", Pickle, false, false},
		{Msgpack, "M5", Msgpack, false, false},
		{Pickle, "ruok", nil, true, false},
		{Pickle, "Z4", nil, false, true},
		{Pickle, "X5", nil, false, true},
		{Pickle, "Z55", nil, false, true},
	}
	for _, c := range cases {
		codec, ruok, err := handshakePair(t, c.announce, []byte(c.reply))
		if c.bad {
			var he *HandshakeError
			if !errors.As(err, &he) {
				t.Errorf("%s: want HandshakeError, got %v", c.reply, err)
			}
			continue
		}
		if err != nil || codec != c.want || ruok != c.ruok {
			t.Errorf("%s: codec %v ruok %v err %v", c.reply, codec, ruok, err)
		}
	}
}

func TestClientHandshake(t *testing.T) {
	cases := []struct{ announce, reply string }{
		{"Z5", "Z5"}, {"M5", "M5"}, {"Z6", "Z5"}, {"Z99999", "Z5"}, {"M6", "M5"},
		{"Z4", ""}, {"Z3101", ""}, {"Z310", ""}, {"Z309", ""}, {"Q5", ""}, {"Z", ""},
	}
	for _, c := range cases {
		a, b := net.Pipe()
		got := make(chan []byte, 1)
		go func() {
			NewFrameWriter(b).WriteFrame([]byte(c.announce))
			p, _ := NewFrameReader(b, 0).ReadFrame()
			got <- p
		}()
		codec, err := ClientHandshake(NewFrameReader(a, 0), NewFrameWriter(a))
		a.Close()
		reply := <-got
		b.Close()
		if c.reply == "" {
			if err == nil {
				t.Errorf("%s: accepted", c.announce)
			}
			continue
		}
		if err != nil || string(reply) != c.reply || codec.Protocol() != c.reply[0] {
			t.Errorf("%s: reply %q err %v", c.announce, reply, err)
		}
	}
}

package server_test

import (
	"bytes"
	"testing"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// Replies far larger than the socket takes at once, asked for all at
// once, arrive whole and in order, and an invalidation queued meanwhile by
// another client's commit arrives whole among them: the reader's own
// writes stop where the socket is full and the writer goroutine finishes
// them, with what other goroutines queued.
func TestLargeRepliesPipelined(t *testing.T) {
	ts := startServer(t, server.Options{})
	c, _ := ts.client(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 4<<20/16)
	tid := commit(t, c, 1, 1, 0, big)

	rc := ts.raw(t)
	rc.send(t, zeoproto.NewCall(1, "register", "1", false))
	if m, err := rc.recv(t); err != nil || m.IsError() {
		t.Fatalf("register: %v %v", m, err)
	}
	const n = 8
	var burst []byte
	for i := range n {
		p, err := rc.codec.Encode(zeoproto.NewCall(int64(10+i), "loadBefore", stack.Oid(1), stack.MaxTid))
		if err != nil {
			t.Fatal(err)
		}
		burst = zeoproto.AppendFrame(burst, p)
	}
	if _, err := rc.nc.Write(burst); err != nil {
		t.Fatal(err)
	}
	// Another client commits while the replies are still being written.
	tid2 := commit(t, c, 2, 2, 0, []byte("small"))
	invalidated := false
	for i := 0; i < n; i++ {
		m, err := rc.recv(t)
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if m.Name == "invalidateTransaction" && !invalidated {
			if got := m.Args.(zeoproto.Tuple)[0].([]byte); !bytes.Equal(got, tid2.Bytes()) {
				t.Fatalf("invalidation of %x, want %v", got, tid2)
			}
			invalidated = true
			i--
			continue
		}
		if m.ID != int64(10+i) || m.IsError() {
			t.Fatalf("reply %d: msgid %v, %v", i, m.ID, m.Args)
		}
		r := m.Args.(zeoproto.Tuple)
		if !bytes.Equal(r[0].([]byte), big) || !bytes.Equal(r[1].([]byte), tid.Bytes()) {
			t.Fatalf("reply %d: %d bytes of data, serial %x", i, len(r[0].([]byte)), r[1])
		}
	}
	if !invalidated {
		m, err := rc.recv(t)
		if err != nil {
			t.Fatal(err)
		}
		if m.Name != "invalidateTransaction" || !bytes.Equal(m.Args.(zeoproto.Tuple)[0].([]byte), tid2.Bytes()) {
			t.Fatalf("after the replies: %s %v, want the invalidation of %v", m.Name, m.Args, tid2)
		}
	}
}

package zeoproto

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zeoraid/zeoraid/stack"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func isDisconnected(err error, addr string) bool {
	var de *DisconnectedError
	return errors.As(err, &de) && de.Addr == addr && stack.IsBackendFailure(err)
}

// fakeServer accepts one connection, does the server handshake and hands
// the decoded messages to serve.
func fakeServer(t *testing.T, serve func(r *FrameReader, w *FrameWriter, codec Codec, conn net.Conn)) string {
	t.Helper()
	return fakeServerOn(t, "tcp", "127.0.0.1:0", serve)
}

func fakeServerOn(t *testing.T, network, address string, serve func(r *FrameReader, w *FrameWriter, codec Codec, conn net.Conn)) string {
	t.Helper()
	l, err := net.Listen(network, address)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := l.Accept()
		l.Close()
		if err != nil {
			return
		}
		defer conn.Close()
		r, w := NewFrameReader(conn, 0), NewFrameWriter(conn)
		codec, _, err := ServerHandshake(r, w, Msgpack)
		if err != nil {
			t.Error(err)
			return
		}
		serve(r, w, codec, conn)
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String()
}

func readMsg(t *testing.T, r *FrameReader, codec Codec) Message {
	p, err := r.ReadFrame()
	if err != nil {
		t.Error(err)
		return Message{}
	}
	m, err := codec.Decode(p)
	if err != nil {
		t.Error(err)
	}
	return m
}

func send(w *FrameWriter, codec Codec, m Message) {
	p, _ := codec.Encode(m)
	w.WriteFrame(p)
}

// Replies out of order reach the right callers; on disconnect every
// pending call fails at once with a DisconnectedError naming the address.
func TestClientOutOfOrderAndDisconnect(t *testing.T) {
	received := make(chan string, 3) // the calls the server read, in order
	answered := make(chan struct{})  // the answered callers have their replies
	addr := fakeServer(t, func(r *FrameReader, w *FrameWriter, codec Codec, conn net.Conn) {
		var calls []Message
		for heartbeat := false; len(calls) < 3 || !heartbeat; {
			m := readMsg(t, r, codec)
			if t.Failed() {
				return
			}
			if m.IsHeartbeat() {
				heartbeat = true
				continue
			}
			calls = append(calls, m)
			received <- m.Name
		}
		send(w, codec, NewReply(calls[1].ID, calls[1].Name))
		send(w, codec, NewReply(calls[0].ID, calls[0].Name))
		// calls[2] is left pending: drop the connection under it.
		<-answered
	})
	drop := sync.OnceFunc(func() { close(answered) })
	t.Cleanup(drop)
	ctx := context.Background()
	c, err := Dial(ctx, "tcp", addr, ClientOptions{Heartbeat: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	type res struct {
		v   any
		err error
	}
	results := make([]chan res, 3)
	for i, name := range []string{"first", "second", "third"} {
		results[i] = make(chan res, 1)
		go func() {
			v, err := c.Call(ctx, name)
			results[i] <- res{v, err}
		}()
		// The server has this call before the next one is made, so the
		// msgids follow the names.
		select {
		case got := <-received:
			if got != name {
				t.Fatalf("the server read %s, want %s", got, name)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the server did not receive %s", name)
		}
	}
	for i, want := range []string{"first", "second"} {
		if r := <-results[i]; r.err != nil || r.v != want {
			t.Errorf("call %s: %v %v", want, r.v, r.err)
		}
	}
	drop()
	if r := <-results[2]; !isDisconnected(r.err, addr) {
		t.Errorf("pending call after disconnect: %v", r.err)
	}
	<-c.Done()
	if err := c.CallAsync(ctx, "storea"); !isDisconnected(err, addr) {
		t.Errorf("async call after disconnect: %v", err)
	}
}

func TestClientContext(t *testing.T) {
	gaveUp := make(chan struct{}) // the caller of "slow" timed out
	addr := fakeServer(t, func(r *FrameReader, w *FrameWriter, codec Codec, conn net.Conn) {
		m := readMsg(t, r, codec)
		<-gaveUp
		send(w, codec, NewReply(m.ID, nil)) // too late: dropped
		m = readMsg(t, r, codec)
		send(w, codec, NewErrorReply(m.ID, &stack.NotFoundError{Oid: 9}))
		r.ReadFrame() // until the client closes
	})
	late := sync.OnceFunc(func() { close(gaveUp) })
	t.Cleanup(late)
	c, err := Dial(context.Background(), "tcp", addr, ClientOptions{Heartbeat: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cancelled, cancelNow := context.WithCancel(context.Background())
	cancelNow()
	if _, err := c.Call(cancelled, "never"); !errors.Is(err, context.Canceled) || stack.IsBackendFailure(err) {
		t.Fatalf("call with a cancelled context: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Call(ctx, "slow"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timed-out call: %v", err)
	}
	late()
	_, err = c.Call(context.Background(), "loadBefore", stack.Oid(9), stack.MaxTid)
	var nf *stack.NotFoundError
	if !errors.As(err, &nf) || nf.Oid != 9 {
		t.Fatalf("error reply: %v", err)
	}
}

// A Unix-socket address (it contains a "/") works like TCP.
func TestClientUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zeo.sock")
	fakeServerOn(t, "unix", path, func(r *FrameReader, w *FrameWriter, codec Codec, conn net.Conn) {
		m := readMsg(t, r, codec)
		send(w, codec, NewReply(m.ID, stack.Tid(7)))
		r.ReadFrame()
	})
	network, addr := SplitAddress(path)
	if network != "unix" {
		t.Fatalf("SplitAddress(%q) = %s", path, network)
	}
	c, err := Dial(context.Background(), network, addr, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if tid, err := c.Register(context.Background(), "1", false); err != nil || tid != 7 {
		t.Fatalf("register over a Unix socket: %v %v", tid, err)
	}
	if n, _ := SplitAddress("localhost:8100"); n != "tcp" {
		t.Errorf("host:port is %s", n)
	}
}

func TestDialRefused(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	_, err := Dial(context.Background(), "tcp", addr, ClientOptions{})
	if !isDisconnected(err, addr) {
		t.Fatalf("dial of a closed port: %v", err)
	}
}

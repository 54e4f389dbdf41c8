package zeoproto

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zeoraid/zeoraid/interop/pyenv"
	"github.com/zeoraid/zeoraid/stack"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// runzeo starts the real Python ZEO server on a FileStorage in a temporary
// directory, msgpack or pickle, and returns its address once it accepts.
func runzeo(t *testing.T, msgpack bool) string {
	t.Helper()
	py := pyenv.Python(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cmd := exec.Command(py, "-m", "ZEO.runzeo", "-a", addr, "-f", filepath.Join(dir, "Data.fs"))
	cmd.Env = append(os.Environ(), "ZEO_MSGPACK=")
	if msgpack {
		cmd.Env = append(os.Environ(), "ZEO_MSGPACK=1")
	}
	var logs lockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("runzeo output:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		select {
		case <-exited:
			t.Fatalf("runzeo exited before listening on %s", addr)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("runzeo did not listen on %s: %v", addr, err)
		}
	}
}

// lockedBuffer collects a child's output from its copying goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type inbox struct {
	mu   sync.Mutex
	msgs []Message
	got  chan struct{}
}

func newInbox() *inbox { return &inbox{got: make(chan struct{}, 100)} }

func (b *inbox) handle(m Message) {
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.mu.Unlock()
	b.got <- struct{}{}
}

func (b *inbox) wait(t *testing.T, name string) Message {
	t.Helper()
	for {
		b.mu.Lock()
		for i, m := range b.msgs {
			if m.Name == name {
				b.msgs = append(b.msgs[:i], b.msgs[i+1:]...)
				b.mu.Unlock()
				return m
			}
		}
		b.mu.Unlock()
		select {
		case <-b.got:
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s message", name)
		}
	}
}

func TestClientAgainstPythonServer(t *testing.T) {
	for _, mp := range []bool{false, true} {
		name := "Z5"
		if mp {
			name = "M5"
		}
		t.Run(name, func(t *testing.T) { clientSession(t, mp) })
	}
}

func clientSession(t *testing.T, msgpack bool) {
	addr := runzeo(t, msgpack)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	boxA, boxB := newInbox(), newInbox()
	a, err := Dial(ctx, "tcp", addr, ClientOptions{Handler: boxA.handle})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Dial(ctx, "tcp", addr, ClientOptions{Handler: boxB.handle})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	wantProto := byte('Z')
	if msgpack {
		wantProto = 'M'
	}
	if a.Codec().Protocol() != wantProto || b.Codec().Protocol() != wantProto {
		t.Fatalf("negotiated %c, want %c", a.Codec().Protocol(), wantProto)
	}

	last, err := a.Register(ctx, "1", false)
	if err != nil || last != 0 {
		t.Fatalf("register: %v %v", last, err)
	}
	if _, err := b.Register(ctx, "1", true); err != nil {
		t.Fatal(err)
	}
	oids, err := a.NewOIDs(ctx)
	if err != nil || len(oids) == 0 {
		t.Fatalf("new_oids: %v %v", oids, err)
	}

	// The root does not exist yet: POSKeyError, a logical answer.
	_, err = a.LoadBefore(ctx, 0, stack.MaxTid)
	var nf *stack.NotFoundError
	if !errors.As(err, &nf) || nf.Oid != 0 || stack.IsBackendFailure(err) {
		t.Fatalf("loadBefore of a missing root: %v", err)
	}

	// A commit: tpc_begin, storea (async), vote, tpc_finish.
	const txn = 42
	data := []byte("ROOT PICKLE")
	if err := a.CallAsync(ctx, "tpc_begin", txn, []byte("bob"), []byte("note"), Dict{{"k", "v"}}, nil, " "); err != nil {
		t.Fatal(err)
	}
	if err := a.CallAsync(ctx, "storea", stack.Oid(0), stack.Tid(0), data, txn); err != nil {
		t.Fatal(err)
	}
	vote, err := a.Call(ctx, "vote", txn)
	if s, ok := Seq(vote); err != nil || !ok || len(s) != 0 {
		t.Fatalf("vote: %#v %v", vote, err)
	}
	r, err := a.Call(ctx, "tpc_finish", txn)
	if err != nil {
		t.Fatal(err)
	}
	tid, err := tidResult("tpc_finish", r)
	if err != nil || tid == 0 {
		t.Fatalf("tpc_finish: %v %v", tid, err)
	}
	info := boxA.wait(t, "info")
	if d, ok := Args(info.Args.(Tuple))[0].(Dict); !ok {
		t.Errorf("info args: %#v", info.Args)
	} else if _, ok := d.Get("size"); !ok {
		t.Errorf("info without size: %#v", d)
	}
	inv := boxB.wait(t, "invalidateTransaction")
	ia, _ := inv.CallArgs()
	if got, err := ia.Tid(0); err != nil || got != tid {
		t.Errorf("invalidation tid %v %v, want %v", got, err, tid)
	}

	rev, err := a.LoadBefore(ctx, 0, stack.MaxTid)
	if err != nil || string(rev.Data) != string(data) || rev.Serial != tid || rev.NextSerial != 0 {
		t.Fatalf("loadBefore: %+v %v", rev, err)
	}
	rev, err = b.LoadBefore(ctx, 0, tid)
	if err != nil || rev.Found() {
		t.Fatalf("loadBefore before the creation: %+v %v", rev, err)
	}
	h, err := a.Call(ctx, "history", stack.Oid(0), 10)
	hs, ok := Seq(h)
	if err != nil || !ok || len(hs) != 1 {
		t.Fatalf("history: %#v %v", h, err)
	}
	entry, _ := hs[0].(Dict)
	if v, _ := entry.Get("tid"); fmt.Sprint(v) != fmt.Sprint(tid.Bytes()) {
		t.Errorf("history entry: %#v", entry)
	}
	if v, _ := entry.Get("user_name"); string(v.([]byte)) != "bob" {
		t.Errorf("history user_name: %#v", v)
	}
	if last, err := b.LastTransaction(ctx); err != nil || last != tid {
		t.Errorf("lastTransaction: %v %v", last, err)
	}
	if err := b.Ping(ctx); err != nil {
		t.Error(err)
	}

	// A store based on a stale serial: the server's vote answers
	// ConflictError (it cannot resolve garbage data), a logical answer
	// carrying the serials.
	const txn2 = 43
	if err := a.CallAsync(ctx, "tpc_begin", txn2, []byte(""), []byte(""), Dict{}, nil, " "); err != nil {
		t.Fatal(err)
	}
	if err := a.CallAsync(ctx, "storea", stack.Oid(0), stack.Tid(0), []byte("OTHER"), txn2); err != nil {
		t.Fatal(err)
	}
	_, err = a.Call(ctx, "vote", txn2)
	var ce *stack.ConflictError
	if !errors.As(err, &ce) || ce.Oid != 0 || ce.Committed != tid || ce.Read != 0 || stack.IsBackendFailure(err) {
		t.Fatalf("conflicting vote: %#v", err)
	}
	if r, err := a.Call(ctx, "tpc_abort", txn2); err != nil || r != nil {
		t.Fatalf("tpc_abort: %v %v", r, err)
	}

	// A read-only connection gets ReadOnlyError for new_oids.
	if _, err := b.NewOIDs(ctx); !errors.Is(err, stack.ErrReadOnly) || stack.IsBackendFailure(err) {
		t.Errorf("new_oids on a read-only connection: %v", err)
	}
	// An unknown storage is a ValueError: a RemoteError that names it.
	c, err := Dial(ctx, "tcp", addr, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Register(ctx, "nope", false)
	var re *RemoteError
	if !errors.As(err, &re) || re.Class != "builtins.ValueError" || re.Error() != "builtins.ValueError: unknown storage: nope" {
		t.Errorf("register nope: %v", err)
	}
	c.Close()
	if _, err := c.Call(ctx, "ping"); !isDisconnected(err, addr) {
		t.Errorf("call after Close: %v", err)
	}
}

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
	addr := fakeServer(t, func(r *FrameReader, w *FrameWriter, codec Codec, conn net.Conn) {
		m1 := readMsg(t, r, codec)
		m2 := readMsg(t, r, codec)
		m3 := readMsg(t, r, codec) // left pending
		hb := readMsg(t, r, codec)
		if !hb.IsHeartbeat() {
			t.Errorf("want a heartbeat, got %+v", hb)
		}
		send(w, codec, NewReply(m2.ID, m2.Name))
		send(w, codec, NewReply(m1.ID, m1.Name))
		_ = m3
		// Wait for the third caller to have its two answers, then drop.
		time.Sleep(100 * time.Millisecond)
	})
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
		time.Sleep(10 * time.Millisecond) // keep the msgid order
	}
	for i, want := range []string{"first", "second"} {
		if r := <-results[i]; r.err != nil || r.v != want {
			t.Errorf("call %s: %v %v", want, r.v, r.err)
		}
	}
	if r := <-results[2]; !isDisconnected(r.err, addr) {
		t.Errorf("pending call after disconnect: %v", r.err)
	}
	<-c.Done()
	if err := c.CallAsync(ctx, "storea"); !isDisconnected(err, addr) {
		t.Errorf("async call after disconnect: %v", err)
	}
}

func TestClientContext(t *testing.T) {
	addr := fakeServer(t, func(r *FrameReader, w *FrameWriter, codec Codec, conn net.Conn) {
		m := readMsg(t, r, codec)
		time.Sleep(200 * time.Millisecond)
		send(w, codec, NewReply(m.ID, nil)) // too late: dropped
		m = readMsg(t, r, codec)
		send(w, codec, NewErrorReply(m.ID, &stack.NotFoundError{Oid: 9}))
		r.ReadFrame() // until the client closes
	})
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

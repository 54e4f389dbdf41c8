package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus/hooks/test"
	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

func ctx10(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// The committer gets info then its tid; every other connection gets the
// invalidation, and never for its own commit.
func TestCommitInvalidatesOthersOnly(t *testing.T) {
	ts := startServer(t, server.Options{})
	a, aMsgs := ts.client(t)
	b, bMsgs := ts.client(t)
	tid := commit(t, a, 1, 0, 0, []byte("root"))
	select {
	case m := <-bMsgs:
		if m.Name != "invalidateTransaction" {
			t.Fatalf("b got %s, want invalidateTransaction", m.Name)
		}
		args := m.Args.(zeoproto.Tuple)
		if got, _ := stack.TidFromBytes(args[0].([]byte)); got != tid {
			t.Fatalf("invalidation tid %s, want %s", got, tid)
		}
		oids, _ := zeoproto.Seq(args[1])
		if len(oids) != 1 || string(oids[0].([]byte)) != string(stack.Oid(0).Bytes()) {
			t.Fatalf("invalidated oids %v, want [z64]", oids)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b got no invalidation")
	}
	// a got exactly one async message, info, and no invalidation.
	select {
	case m := <-aMsgs:
		if m.Name != "info" {
			t.Fatalf("committer got %s, want info", m.Name)
		}
	case <-time.After(time.Second):
		t.Fatal("committer got no info message")
	}
	if err := b.Ping(ctx10(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-aMsgs:
		t.Fatalf("committer got an extra %s message", m.Name)
	default:
	}
	last, err := b.LastTransaction(ctx10(t))
	if err != nil || last != tid {
		t.Fatalf("lastTransaction = %s, %v; want %s", last, err, tid)
	}
}

// A write conflict comes back from vote as a dict for the client to
// resolve; storing again with the committed serial then commits.
func TestConflictGoesBackToClient(t *testing.T) {
	ts := startServer(t, server.Options{})
	a, _ := ts.client(t)
	b, _ := ts.client(t)
	t1 := commit(t, a, 1, 0, 0, []byte("v1"))
	commit(t, a, 2, 0, t1, []byte("v2 by a"))
	ctx := ctx10(t)
	must(t, b.CallAsync(ctx, "tpc_begin", int64(7), []byte(""), []byte(""), zeoproto.Dict{}, nil, " "))
	must(t, b.CallAsync(ctx, "storea", stack.Oid(0), t1, []byte("v2 by b"), int64(7)))
	r, err := b.Call(ctx, "vote", int64(7))
	if err != nil {
		t.Fatal(err)
	}
	list, _ := zeoproto.Seq(r)
	if len(list) != 1 {
		t.Fatalf("vote = %v, want one conflict dict", r)
	}
	d := list[0].(zeoproto.Dict)
	serials, _ := d.Get("serials")
	data, _ := d.Get("data")
	ss, _ := zeoproto.Seq(serials)
	committed, _ := stack.TidFromBytes(ss[0].([]byte))
	read, _ := stack.TidFromBytes(ss[1].([]byte))
	if read != t1 || committed <= t1 || string(data.([]byte)) != "v2 by b" {
		t.Fatalf("conflict dict %v", d)
	}
	// Resolve: store again against the committed serial, vote, finish.
	must(t, b.CallAsync(ctx, "storea", stack.Oid(0), committed, []byte("merged"), int64(7)))
	r, err = b.Call(ctx, "vote", int64(7))
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := zeoproto.Seq(r); len(l) != 0 {
		t.Fatalf("second vote = %v", r)
	}
	if _, err := b.Call(ctx, "tpc_finish", int64(7)); err != nil {
		t.Fatal(err)
	}
	rev, err := a.LoadBefore(ctx, 0, stack.MaxTid)
	if err != nil || string(rev.Data) != "merged" {
		t.Fatalf("load after resolution = %q, %v", rev.Data, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Bad input gets an error reply or a closed connection and a log line;
// never a panic, never a stuck commit lock, never an effect on others.
func TestBadInput(t *testing.T) {
	valid := func(rc *rawConn, t *testing.T) {
		rc.send(t, zeoproto.NewCall(1, "register", "1", false))
		if m, err := rc.recv(t); err != nil || m.IsError() {
			t.Fatalf("register: %v %v", m, err)
		}
	}
	cases := []struct {
		name   string
		run    func(rc *rawConn, t *testing.T)
		closed bool // else: an error reply to msgid 5
	}{
		{"call before register", func(rc *rawConn, t *testing.T) {
			rc.send(t, zeoproto.NewCall(5, "lastTransaction"))
		}, true},
		{"unknown storage", func(rc *rawConn, t *testing.T) {
			rc.send(t, zeoproto.NewCall(5, "register", "nope", false))
		}, false},
		{"second register", func(rc *rawConn, t *testing.T) {
			valid(rc, t)
			rc.send(t, zeoproto.NewCall(5, "register", "1", false))
		}, true},
		{"unknown method", func(rc *rawConn, t *testing.T) {
			valid(rc, t)
			rc.send(t, zeoproto.NewCall(5, "getExtensionMethodz"))
		}, true},
		{"wrong argument count", func(rc *rawConn, t *testing.T) {
			valid(rc, t)
			rc.send(t, zeoproto.NewCall(5, "loadBefore", stack.Oid(0).Bytes()))
		}, false},
		{"wrong argument type", func(rc *rawConn, t *testing.T) {
			valid(rc, t)
			rc.send(t, zeoproto.NewCall(5, "loadBefore", int64(3), "x"))
		}, false},
		{"store outside a transaction", func(rc *rawConn, t *testing.T) {
			valid(rc, t)
			rc.send(t, zeoproto.NewAsync("storea", stack.Oid(1), stack.Tid(0), []byte("x"), int64(9)))
		}, true},
		{"vote outside a transaction", func(rc *rawConn, t *testing.T) {
			valid(rc, t)
			rc.send(t, zeoproto.NewCall(5, "vote", int64(9)))
		}, false},
		{"async call failing", func(rc *rawConn, t *testing.T) {
			valid(rc, t)
			rc.send(t, zeoproto.NewAsync("tpc_begin", int64(1)))
		}, true},
		{"unpicklable global", func(rc *rawConn, t *testing.T) {
			valid(rc, t)
			// (5, False, 'ping', (os.system,)) with a global Python refuses.
			p := []byte("\x80\x03(K\x05\x89X\x04\x00\x00\x00pingcos\nsystem\n\x85t.")
			must(t, rc.w.WriteFrame(p))
		}, true},
		{"garbage frame", func(rc *rawConn, t *testing.T) {
			must(t, rc.w.WriteFrame([]byte("\xff\xfe not a message")))
		}, true},
		{"huge length prefix", func(rc *rawConn, t *testing.T) {
			_, err := rc.nc.Write([]byte{0xff, 0xff, 0xff, 0xf0, 1, 2, 3})
			must(t, err)
		}, true},
		{"zero-length frame", func(rc *rawConn, t *testing.T) {
			_, err := rc.nc.Write([]byte{0, 0, 0, 0})
			must(t, err)
		}, true},
		{"not a 4-tuple", func(rc *rawConn, t *testing.T) {
			p, _ := rc.codec.EncodeValue(zeoproto.Tuple{int64(1), "x"})
			must(t, rc.w.WriteFrame(p))
		}, true},
		{"disconnect holding the commit lock", func(rc *rawConn, t *testing.T) {
			valid(rc, t)
			rc.send(t, zeoproto.NewAsync("tpc_begin", int64(3), []byte(""), []byte(""), zeoproto.Dict{}, nil, " "))
			rc.send(t, zeoproto.NewAsync("storea", stack.Oid(0), stack.Tid(0), []byte("x"), int64(3)))
			rc.send(t, zeoproto.NewCall(4, "vote", int64(3)))
			if m, err := rc.recv(t); err != nil || m.IsError() {
				t.Fatalf("vote: %v %v", m, err)
			}
			rc.nc.Close()
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, server.Options{})
			rc := ts.raw(t)
			tc.run(rc, t)
			if tc.closed {
				for {
					m, err := rc.recv(t)
					if err != nil {
						if !errors.Is(err, io.EOF) && !isClosed(err) {
							t.Fatalf("want the connection closed, got error %v", err)
						}
						break
					}
					if m.Name != "info" && m.Name != "invalidateTransaction" {
						t.Fatalf("want the connection closed, got %v", m)
					}
				}
			} else {
				m, err := rc.recv(t)
				if err != nil || !m.IsError() || m.ID != int64(5) {
					t.Fatalf("want an error reply to msgid 5, got %v, %v", m, err)
				}
			}
			// The server still works for everyone else, commit lock included.
			c, _ := ts.client(t)
			commit(t, c, 100, 0, currentSerial(t, c), []byte("after"))
		})
	}
}

func isClosed(err error) bool {
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return true // reset by peer and the like
}

func currentSerial(t *testing.T, c *zeoproto.Client) stack.Tid {
	rev, err := c.LoadBefore(ctx10(t), 0, stack.MaxTid)
	var nf *stack.NotFoundError
	if errors.As(err, &nf) {
		return 0
	}
	must(t, err)
	return rev.Serial
}

// A read-only server refuses writable registrations and writes.
func TestReadOnlyServer(t *testing.T) {
	ts := startServer(t, server.Options{ReadOnly: true})
	c, err := zeoproto.Dial(ctx10(t), "tcp", ts.addr, zeoproto.ClientOptions{})
	must(t, err)
	defer c.Close()
	if _, err := c.Register(ctx10(t), "1", false); !errors.Is(err, stack.ErrReadOnly) {
		t.Fatalf("writable register on a read-only server: %v", err)
	}
	if _, err := c.Register(ctx10(t), "1", true); err != nil {
		t.Fatalf("read-only register: %v", err)
	}
	if _, err := c.NewOIDs(ctx10(t)); !errors.Is(err, stack.ErrReadOnly) {
		t.Fatalf("new_oids read-only: %v", err)
	}
	if _, err := c.Call(ctx10(t), "pack", float64(time.Now().Unix()), true); err != nil {
		t.Fatalf("pack must be allowed read-only: %v", err)
	}
}

// A connection holding the commit lock past transaction-timeout is closed
// and the lock freed.
func TestTransactionTimeout(t *testing.T) {
	ts := startServer(t, server.Options{TransactionTimeout: 300 * time.Millisecond})
	rc := ts.raw(t)
	rc.send(t, zeoproto.NewCall(1, "register", "1", false))
	_, _ = rc.recv(t)
	rc.send(t, zeoproto.NewAsync("tpc_begin", int64(3), []byte(""), []byte(""), zeoproto.Dict{}, nil, " "))
	rc.send(t, zeoproto.NewAsync("storea", stack.Oid(0), stack.Tid(0), []byte("x"), int64(3)))
	rc.send(t, zeoproto.NewCall(4, "vote", int64(3)))
	if m, err := rc.recv(t); err != nil || m.IsError() {
		t.Fatalf("vote: %v %v", m, err)
	}
	for {
		if _, err := rc.recv(t); err != nil {
			break
		}
	}
	c, _ := ts.client(t)
	commit(t, c, 1, 0, 0, []byte("after timeout"))
}

// ruok answers the status of every storage as JSON.
func TestRuok(t *testing.T) {
	ts := startServer(t, server.Options{})
	c, _ := ts.client(t)
	tid := commit(t, c, 1, 0, 0, []byte("x"))
	rc := ts.raw0(t)
	must(t, rc.w.WriteFrame([]byte("ruok")))
	if p, err := rc.r.ReadFrame(); err != nil || string(p) != "Z5" {
		t.Fatalf("announcement %q, %v", p, err)
	}
	p, err := rc.r.ReadFrame()
	must(t, err)
	var status map[string]map[string]any
	if err := json.Unmarshal(p, &status); err != nil {
		t.Fatalf("ruok reply %q: %v", p, err)
	}
	if status["1"]["last-transaction"] != tid.Hex() || status["1"]["commits"] != float64(1) {
		t.Fatalf("ruok status %v", status)
	}
}

// getInvalidations answers from the queue, and None when the queue does
// not reach back far enough.
func TestGetInvalidations(t *testing.T) {
	ts := startServer(t, server.Options{InvalidationQueueSize: 3})
	c, _ := ts.client(t)
	var tids []stack.Tid
	serial := stack.Tid(0)
	for i := 0; i < 5; i++ {
		serial = commit(t, c, int64(i+1), stack.Oid(0), serial, []byte{byte(i)})
		tids = append(tids, serial)
	}
	r, err := c.Call(ctx10(t), "getInvalidations", tids[3])
	must(t, err)
	s, _ := zeoproto.Seq(r)
	if len(s) != 2 || string(s[0].([]byte)) != string(tids[4].Bytes()) {
		t.Fatalf("getInvalidations(recent) = %v", r)
	}
	r, err = c.Call(ctx10(t), "getInvalidations", tids[0])
	must(t, err)
	if r != nil {
		t.Fatalf("getInvalidations(too old) = %v, want None", r)
	}
}

// docs/protocol.md §6.6: a load reply computed before a commit must never arrive after
// that commit's invalidation. A reader pipelines loads on one connection
// and checks, in wire order, that no reply claims a revision older than an
// invalidation already received is current.
func TestNoStaleLoadAfterInvalidation(t *testing.T) {
	ts := startServer(t, server.Options{})
	w, _ := ts.client(t)
	serial := commit(t, w, 1, 0, 0, []byte("0"))
	rc := ts.raw(t)
	rc.send(t, zeoproto.NewCall(1, "register", "1", false))
	if _, err := rc.recv(t); err != nil {
		t.Fatal(err)
	}
	const commits = 200
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < commits; i++ {
			serial = commit(t, w, int64(i+2), 0, serial, []byte{byte(i)})
		}
	}()
	stop := make(chan struct{})
	go func() {
		wg.Wait()
		close(stop)
	}()
	// Keep ~20 loads in flight while commits run.
	var invalidated stack.Tid
	inFlight := 0
	next := int64(10)
	checked := 0
	for {
		select {
		case <-stop:
			if inFlight == 0 {
				if checked < 100 {
					t.Fatalf("only %d loads checked", checked)
				}
				return
			}
		default:
			for inFlight < 20 {
				rc.send(t, zeoproto.NewCall(next, "loadBefore", stack.Oid(0), stack.MaxTid))
				next++
				inFlight++
			}
		}
		if inFlight == 0 {
			continue
		}
		m, err := rc.recv(t)
		must(t, err)
		switch {
		case m.Name == "invalidateTransaction":
			invalidated, _ = stack.TidFromBytes(m.Args.(zeoproto.Tuple)[0].([]byte))
		case m.IsReply():
			inFlight--
			checked++
			res, _ := zeoproto.Seq(m.Args)
			got, _ := stack.TidFromBytes(res[1].([]byte))
			if res[2] == nil && got < invalidated {
				t.Fatalf("load reply says %s is current after invalidation %s", got, invalidated)
			}
		}
	}
}

// After a restart the queue is empty; getInvalidations still answers for a
// client that is at most invalidation-queue-size transactions behind, by
// iterating the storage, as Python's start-up queue does.
func TestGetInvalidationsAfterRestart(t *testing.T) {
	log, _ := test.NewNullLogger()
	st := mappingstorage.New("m", log)
	var tids []stack.Tid
	for i := 0; i < 5; i++ {
		tx, err := st.Begin(ctx10(t), stack.TxnMeta{})
		must(t, err)
		must(t, tx.Store(ctx10(t), stack.Oid(i), 0, []byte{byte(i + 1)}))
		_, err = tx.Vote(ctx10(t))
		must(t, err)
		tid, err := tx.Finish(ctx10(t))
		must(t, err)
		tids = append(tids, tid)
	}
	srv := server.New([]*stack.Mount{stack.NewMount("1", st)}, server.Options{InvalidationQueueSize: 3, Log: log})
	l, err := server.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	go srv.Serve(l)
	defer srv.Shutdown(context.Background())
	c, err := zeoproto.Dial(ctx10(t), "tcp", l.Addr().String(), zeoproto.ClientOptions{})
	must(t, err)
	defer c.Close()
	_, err = c.Register(ctx10(t), "1", true)
	must(t, err)
	r, err := c.Call(ctx10(t), "getInvalidations", tids[2])
	must(t, err)
	s, _ := zeoproto.Seq(r)
	if len(s) != 2 || string(s[0].([]byte)) != string(tids[4].Bytes()) {
		t.Fatalf("getInvalidations(2 behind) = %v", r)
	}
	if oids, _ := zeoproto.Seq(s[1]); len(oids) != 2 {
		t.Fatalf("oids = %v, want both objects", s[1])
	}
	if r, err := c.Call(ctx10(t), "getInvalidations", tids[0]); err != nil || r != nil {
		t.Fatalf("getInvalidations(4 behind, queue size 3) = %v, %v; want None", r, err)
	}
}

package server_test

// Regression tests for server bugs found by running ZEO's and ZODB's
// Python suites against zeoraid (interop/).

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus/hooks/test"
	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// rawCall sends a call and reads frames until its reply, returning the
// reply and the async messages that came before it.
func rawCall(t *testing.T, rc *rawConn, id int64, name string, args ...any) (zeoproto.Message, []zeoproto.Message) {
	t.Helper()
	rc.send(t, zeoproto.NewCall(id, name, args...))
	var before []zeoproto.Message
	for {
		m, err := rc.recv(t)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m.IsReply() {
			if n, ok := zeoproto.AsInt(m.ID); ok && n == id {
				return m, before
			}
			t.Fatalf("%s: reply to msgid %v, want %d", name, m.ID, id)
		}
		before = append(before, m)
	}
}

// ZODB.tests.MTStorage stores new objects with serial None; Python
// storages take it as "no previous revision", so must zeoraid (it closed
// the connection instead, and the client hung in its next call).
func TestStoreWithNoneSerial(t *testing.T) {
	ts := startServer(t, server.Options{})
	rc := ts.raw(t)
	rawCall(t, rc, 1, "register", "1", false)
	rc.send(t, zeoproto.NewAsync("tpc_begin", int64(7), []byte(""), []byte(""), zeoproto.Dict{}))
	rc.send(t, zeoproto.NewAsync("storea", stack.Oid(0).Bytes(), nil, []byte("data"), int64(7)))
	if r, _ := rawCall(t, rc, 2, "vote", int64(7)); r.IsError() {
		t.Fatalf("vote: %v", r.Args)
	}
	if r, _ := rawCall(t, rc, 3, "tpc_finish", int64(7)); r.IsError() {
		t.Fatalf("tpc_finish: %v", r.Args)
	}
	rev, err := ts.st.LoadBefore(context.Background(), 0, stack.MaxTid)
	if err != nil || string(rev.Data) != "data" {
		t.Fatalf("stored %q, %v; want \"data\"", rev.Data, err)
	}
}

// A committer must get its tpc_finish reply before the invalidation of any
// later commit (docs/protocol.md §6.6): the Python client stores its own
// data as current when the reply arrives, so a newer invalidation handled
// first leaves stale data in its cache (ZODB's racetest caught this). The
// reply used to be queued after the commit lock was released. The storage
// below holds the committer in Info (which tpc_finish calls right before
// replying) until a second client has committed or a timeout passes: with
// the lock released too early the second commit's invalidation overtakes
// the reply; with the fix the second commit waits for the lock.
func TestFinishReplyPrecedesLaterInvalidations(t *testing.T) {
	log, _ := test.NewNullLogger()
	st := &infoGate{Storage: mappingstorage.New("test", log), release: make(chan struct{})}
	srv := server.New([]*stack.Mount{stack.NewMount("1", st)}, server.Options{Log: log})
	l, err := server.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		st.Close()
	}()
	ts := &testServer{srv: srv, addr: l.Addr().String(), st: st}

	rc := ts.raw(t)
	rawCall(t, rc, 1, "register", "1", false)
	other, _ := ts.client(t)
	commit(t, other, 1, 2, 0, []byte("o"))

	rc.send(t, zeoproto.NewAsync("tpc_begin", int64(7), []byte(""), []byte(""), zeoproto.Dict{}))
	rc.send(t, zeoproto.NewAsync("storea", stack.Oid(3).Bytes(), stack.Tid(0).Bytes(), []byte("c"), int64(7)))
	if r, _ := rawCall(t, rc, 2, "vote", int64(7)); r.IsError() {
		t.Fatalf("vote: %v", r.Args)
	}
	st.armed.Store(true)
	done := make(chan error, 1)
	go func() { // the second committer, started while the first finishes
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rev, err := other.LoadBefore(ctx, 2, stack.MaxTid)
		if err == nil {
			err = other.CallAsync(ctx, "tpc_begin", int64(8), []byte(""), []byte(""), zeoproto.Dict{}, nil, " ")
		}
		if err == nil {
			err = other.CallAsync(ctx, "storea", stack.Oid(2), rev.Serial, []byte("o2"), int64(8))
		}
		if err == nil {
			_, err = other.Call(ctx, "vote", int64(8))
		}
		if err == nil {
			_, err = other.Call(ctx, "tpc_finish", int64(8))
		}
		close(st.release)
		done <- err
	}()
	r, before := rawCall(t, rc, 3, "tpc_finish", int64(7))
	if r.IsError() {
		t.Fatalf("tpc_finish: %v", r.Args)
	}
	if err := <-done; err != nil {
		t.Fatalf("second commit: %v", err)
	}
	for _, m := range before {
		if m.Name == "invalidateTransaction" {
			t.Fatalf("an invalidation of a later commit arrived before the tpc_finish reply")
		}
	}
}

// infoGate is a storage whose Info, once armed, waits (at most a second)
// for release.
type infoGate struct {
	stack.Storage
	armed   atomic.Bool
	release chan struct{}
}

func (g *infoGate) Info(ctx context.Context) (stack.Info, error) {
	if g.armed.Swap(false) {
		select {
		case <-g.release:
		case <-time.After(time.Second):
		}
	}
	return g.Storage.Info(ctx)
}

// startRaw is a registered raw connection to a fresh server, with a long
// deadline.
func startRaw(t *testing.T) (*testServer, *rawConn) {
	t.Helper()
	ts := startServer(t, server.Options{})
	rc := ts.raw(t)
	_ = rc.nc.SetDeadline(time.Now().Add(30 * time.Second))
	rawCall(t, rc, 1, "register", "1", false)
	return ts, rc
}

// rawCommit commits data for oid over rc and returns the tid.
func rawCommit(t *testing.T, rc *rawConn, txn int64, oid stack.Oid, serial stack.Tid, data string) stack.Tid {
	t.Helper()
	rc.send(t, zeoproto.NewAsync("tpc_begin", txn, []byte(""), []byte(""), zeoproto.Dict{}))
	rc.send(t, zeoproto.NewAsync("storea", oid.Bytes(), serial.Bytes(), []byte(data), txn))
	if r, _ := rawCall(t, rc, 100+2*txn, "vote", txn); r.IsError() {
		t.Fatalf("vote: %v", r.Args)
	}
	r, _ := rawCall(t, rc, 101+2*txn, "tpc_finish", txn)
	b, _ := zeoproto.AsBytes(r.Args)
	tid, err := stack.TidFromBytes(b)
	if err != nil {
		t.Fatalf("tpc_finish returned %v", r.Args)
	}
	return tid
}

// errorClass returns the Python class of an error reply, failing t when r
// is not one.
func errorClass(t *testing.T, r zeoproto.Message) (string, any) {
	t.Helper()
	if !r.IsError() {
		t.Fatalf("got %v, want an error reply", r.Args)
	}
	args, _ := zeoproto.Seq(r.Args)
	class, _ := zeoproto.AsString(args[0])
	return class, args[1]
}

// An undo that cannot be done fails the vote with MultipleUndoErrors and
// its "_errs" list: the Python client rebuilds only that class, so a plain
// UndoError reached applications as ServerException (ZODB's
// TransactionalUndoStorage tests expect UndoError).
func TestUndoErrorIsMultipleUndoErrors(t *testing.T) {
	_, rc := startRaw(t)
	t1 := rawCommit(t, rc, 1, 1, 0, "a")
	t2 := rawCommit(t, rc, 2, 1, t1, "b")
	rawCommit(t, rc, 3, 1, t2, "c")
	r, _ := rawCall(t, rc, 10, "undoInfo", int64(0), int64(20), nil)
	infos, _ := zeoproto.Seq(r.Args)
	if len(infos) < 2 {
		t.Fatalf("undoInfo = %v", r.Args)
	}
	id, _ := infos[1].(zeoproto.Dict).Get("id")
	rc.send(t, zeoproto.NewAsync("tpc_begin", int64(4), []byte(""), []byte(""), zeoproto.Dict{}))
	rc.send(t, zeoproto.NewAsync("undoa", id, int64(4)))
	class, payload := errorClass(t, mustReply(rawCall(t, rc, 11, "vote", int64(4))))
	if class != zeoproto.ClassMultipleUndoErrors {
		t.Fatalf("vote error class %s, want %s", class, zeoproto.ClassMultipleUndoErrors)
	}
	errs, _ := payload.(zeoproto.Dict).Get("_errs")
	if s, ok := zeoproto.Seq(errs); !ok || len(s) != 1 {
		t.Fatalf("_errs = %v, want one (oid, reason) pair", errs)
	}
}

func mustReply(r zeoproto.Message, _ []zeoproto.Message) zeoproto.Message { return r }

// history answers as Python's storages do: oid None is POSKeyError (which
// clients do not log) and an explicit size None is TypeError.
func TestHistoryNoneArguments(t *testing.T) {
	_, rc := startRaw(t)
	rawCommit(t, rc, 1, 0, 0, "root")
	if class, _ := errorClass(t, mustReply(rawCall(t, rc, 10, "history", nil, nil))); class != zeoproto.ClassPOSKeyError {
		t.Errorf("history(None, None): %s, want POSKeyError", class)
	}
	if class, _ := errorClass(t, mustReply(rawCall(t, rc, 11, "history", stack.Oid(0).Bytes(), nil))); class != "builtins.TypeError" {
		t.Errorf("history(z64, None): %s, want TypeError", class)
	}
	if r, _ := rawCall(t, rc, 12, "history", stack.Oid(0).Bytes()); r.IsError() {
		t.Errorf("history(z64): %v", r.Args)
	}
}

// Python servers dispatch by name alone, so a method clients normally
// send without waiting (iterator_gc) may be called and gets None; the
// connection used to be closed.
func TestAsyncMethodCalledSynchronously(t *testing.T) {
	_, rc := startRaw(t)
	r, _ := rawCall(t, rc, 10, "iterator_start", nil, nil)
	iid := r.Args
	if r, _ := rawCall(t, rc, 11, "iterator_gc", []any{iid}); r.IsError() || r.Args != nil {
		t.Fatalf("iterator_gc called synchronously: %v", r.Args)
	}
	if class, _ := errorClass(t, mustReply(rawCall(t, rc, 12, "iterator_next", iid))); class != "builtins.KeyError" {
		t.Errorf("iterator_next after iterator_gc: %s, want KeyError", class)
	}
}

// A transaction extension that is a dict subclass pickles as a call of
// builtins.dict with the pairs (ZODB's IteratorStorage test); it was
// refused and the connection closed.
func TestExtensionPickledAsDictCall(t *testing.T) {
	ts, rc := startRaw(t)
	ext := &zeoproto.Object{Callable: zeoproto.Global{Module: "builtins", Name: "dict"},
		Args: zeoproto.Tuple{zeoproto.Tuple{zeoproto.Tuple{"foo", int64(1)}}}}
	rc.send(t, zeoproto.NewAsync("tpc_begin", int64(1), []byte(""), []byte(""), ext))
	rc.send(t, zeoproto.NewAsync("storea", stack.Oid(0).Bytes(), stack.Tid(0).Bytes(), []byte("x"), int64(1)))
	if r, _ := rawCall(t, rc, 10, "vote", int64(1)); r.IsError() {
		t.Fatalf("vote: %v", r.Args)
	}
	rawCall(t, rc, 11, "tpc_finish", int64(1))
	h, err := ts.st.History(context.Background(), 0, 1)
	if err != nil || len(h) != 1 {
		t.Fatalf("history: %v, %v", h, err)
	}
	m, err := stack.DecodeExtension(h[0].Extension)
	if err != nil || fmt.Sprint(m["foo"]) != "1" {
		t.Fatalf("stored extension %v (%v), want foo=1", m, err)
	}
}

// A deleteObject with a stale serial fails the vote with ConflictError: a
// conflict dict without data (what the vote returned) makes the Python
// client's resolver fail with IndexError (ZODB's IExternalGC test).
func TestDeleteConflictIsVoteError(t *testing.T) {
	_, rc := startRaw(t)
	t1 := rawCommit(t, rc, 1, 1, 0, "a")
	rawCommit(t, rc, 2, 1, t1, "b")
	rc.send(t, zeoproto.NewAsync("tpc_begin", int64(3), []byte(""), []byte(""), zeoproto.Dict{}))
	rc.send(t, zeoproto.NewAsync("deleteObject", stack.Oid(1).Bytes(), t1.Bytes(), int64(3)))
	if class, _ := errorClass(t, mustReply(rawCall(t, rc, 10, "vote", int64(3)))); class != zeoproto.ClassConflictError {
		t.Fatalf("vote error %s, want ConflictError", class)
	}
}

// After a vote returns conflicts for the client to resolve, the commit
// lock stays with that client until its next vote: otherwise other
// commits slip in, every re-vote conflicts again and ClientStorage gives
// up after 9 votes (ZEO's InvalidationTests with two clients).
func TestCommitLockKeptWhileClientResolves(t *testing.T) {
	ts, rc := startRaw(t)
	t1 := rawCommit(t, rc, 1, 1, 0, "a")
	other, _ := ts.client(t)
	t2 := commit(t, other, 1, 1, t1, []byte("b"))

	rc.send(t, zeoproto.NewAsync("tpc_begin", int64(2), []byte(""), []byte(""), zeoproto.Dict{}))
	rc.send(t, zeoproto.NewAsync("storea", stack.Oid(1).Bytes(), t1.Bytes(), []byte("mine"), int64(2)))
	r, _ := rawCall(t, rc, 10, "vote", int64(2))
	if s, _ := zeoproto.Seq(r.Args); r.IsError() || len(s) != 1 {
		t.Fatalf("vote = %v, want one conflict", r.Args)
	}
	// The other client's commit must wait for the resolved vote.
	committed := make(chan stack.Tid, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		rev, err := other.LoadBefore(ctx, 2, stack.MaxTid)
		serial := rev.Serial
		if err != nil {
			serial = 0
		}
		_ = other.CallAsync(ctx, "tpc_begin", int64(2), []byte(""), []byte(""), zeoproto.Dict{}, nil, " ")
		_ = other.CallAsync(ctx, "storea", stack.Oid(2), serial, []byte("x"), int64(2))
		_, _ = other.Call(ctx, "vote", int64(2))
		r, _ := other.Call(ctx, "tpc_finish", int64(2))
		b, _ := zeoproto.AsBytes(r)
		tid, _ := stack.TidFromBytes(b)
		committed <- tid
	}()
	select {
	case <-committed:
		t.Fatal("another client committed while this one was resolving its conflict")
	case <-time.After(300 * time.Millisecond):
	}
	rc.send(t, zeoproto.NewAsync("storea", stack.Oid(1).Bytes(), t2.Bytes(), []byte("resolved"), int64(2)))
	if r, _ := rawCall(t, rc, 11, "vote", int64(2)); r.IsError() || len(mustSeq(r.Args)) != 0 {
		t.Fatalf("re-vote = %v, want no conflicts", r.Args)
	}
	r, _ = rawCall(t, rc, 12, "tpc_finish", int64(2))
	b, _ := zeoproto.AsBytes(r.Args)
	mine, _ := stack.TidFromBytes(b)
	select {
	case theirs := <-committed:
		if theirs <= mine {
			t.Fatalf("the other commit %s is not after the resolved one %s", theirs, mine)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the other client never committed")
	}
}

func mustSeq(v any) []any {
	s, _ := zeoproto.Seq(v)
	return s
}

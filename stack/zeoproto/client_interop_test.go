//go:build interop

package zeoproto

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/interop/pyenv"
	"github.com/zeoraid/zeoraid/stack"
)

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
	addr := pyenv.StartRunzeo(t, pyenv.RunzeoOptions{Msgpack: msgpack}).Addr
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

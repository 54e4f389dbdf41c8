package server_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// sameData is another root over the same storage, as a reload builds when
// a wrapper changes but the data behind it does not.
type sameData struct{ stack.Storage }

// reloadServer serves mounts it returns, for tests that swap and add them.
func reloadServer(t *testing.T, mounts ...*stack.Mount) (*server.Server, string) {
	t.Helper()
	log, _ := test.NewNullLogger()
	srv := server.New(mounts, server.Options{Log: log})
	l, err := server.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(ctx10(t)); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return srv, l.Addr().String()
}

func dialStorage(t *testing.T, addr, name string) (*zeoproto.Client, chan zeoproto.Message, error) {
	t.Helper()
	msgs := make(chan zeoproto.Message, 1000)
	c, err := zeoproto.Dial(ctx10(t), "tcp", addr, zeoproto.ClientOptions{Handler: func(m zeoproto.Message) { msgs <- m }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_, err = c.Register(ctx10(t), name, false)
	return c, msgs, err
}

func waitInvalidation(t *testing.T, msgs chan zeoproto.Message, tid stack.Tid) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-msgs:
			if m.Name != "invalidateTransaction" {
				continue
			}
			a, err := m.CallArgs()
			if err != nil {
				t.Fatal(err)
			}
			if got, err := a.Tid(0); err == nil && got == tid {
				return
			}
		case <-deadline:
			t.Fatalf("no invalidation of %s", tid)
		}
	}
}

func connected(c *zeoproto.Client) bool {
	select {
	case <-c.Done():
		return false
	default:
		return true
	}
}

// A root swapped for one over the same data keeps every client connected
// and the invalidations flowing from the new root; a root over other data
// disconnects the storage's clients, so they drop their caches.
func TestSwapKeepsClientsUnlessTheDataChanged(t *testing.T) {
	st := mappingstorage.New("a", nil)
	m := stack.NewMount("1", st)
	_, addr := reloadServer(t, m)
	c1, _, err := dialStorage(t, addr, "1")
	if err != nil {
		t.Fatal(err)
	}
	c2, msgs2, err := dialStorage(t, addr, "1")
	if err != nil {
		t.Fatal(err)
	}
	t1 := commit(t, c1, 1, 1, 0, []byte("one"))
	waitInvalidation(t, msgs2, t1)

	sw, err := m.Swap(ctx10(t), sameData{st}, false)
	if err != nil || sw.Reset {
		t.Fatalf("swap to the same data: %+v, %v", sw, err)
	}
	<-sw.Drained
	t2 := commit(t, c1, 2, 1, t1, []byte("two"))
	waitInvalidation(t, msgs2, t2)
	if !connected(c1) || !connected(c2) {
		t.Fatal("a client was disconnected by a swap over the same data")
	}

	other := mappingstorage.New("b", nil)
	if _, err := m.Swap(ctx10(t), other, true); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*zeoproto.Client{c1, c2} {
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("client still connected after its storage's data changed")
		}
	}
	c3, _, err := dialStorage(t, addr, "1")
	if err != nil {
		t.Fatal(err)
	}
	if last, err := c3.LastTransaction(ctx10(t)); err != nil || last != 0 {
		t.Fatalf("lastTransaction of the new data: %s, %v; want 0", last, err)
	}
}

// A load in flight keeps the root it started on: the swap's Drained waits
// for it.
func TestSwapWaitsForLoadsInFlight(t *testing.T) {
	st := newHeldStorage()
	m := stack.NewMount("1", st)
	_, addr := reloadServer(t, m)
	c, _, err := dialStorage(t, addr, "1")
	if err != nil {
		t.Fatal(err)
	}
	answered := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), "hold")
		answered <- err
	}()
	<-st.started
	sw, err := m.Swap(ctx10(t), mappingstorage.New("b", nil), false)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-sw.Drained:
		t.Fatal("drained while an extension call runs on the old root")
	default:
	}
	close(st.release)
	<-answered
	select {
	case <-sw.Drained:
	case <-time.After(5 * time.Second):
		t.Fatal("not drained after the call ended")
	}
}

// Storages added and removed while the server runs: a new name can be
// registered with at once; a removed one's clients are disconnected and
// the name is refused.
func TestAddAndRemoveMounts(t *testing.T) {
	srv, addr := reloadServer(t, stack.NewMount("1", mappingstorage.New("a", nil)))
	if _, _, err := dialStorage(t, addr, "2"); err == nil {
		t.Fatal("registered with a storage not served yet")
	}
	m2 := stack.NewMount("2", mappingstorage.New("b", nil))
	if err := srv.AddMount(m2); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddMount(m2); err == nil {
		t.Fatal("a name served twice")
	}
	c, _, err := dialStorage(t, addr, "2")
	if err != nil {
		t.Fatalf("register with the added storage: %v", err)
	}
	commit(t, c, 1, 1, 0, []byte("x"))
	if got := srv.RemoveMount("2", "storage removed by reload"); got != m2 {
		t.Fatal("RemoveMount did not return the mount")
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client of a removed storage still connected")
	}
	if _, _, err := dialStorage(t, addr, "2"); err == nil {
		t.Fatal("registered with a removed storage")
	}
}

// <zeo> read-only switched on live refuses the next vote of a writable
// connection with ReadOnlyError and new writable registrations; the
// connection stays.
func TestReadOnlySwitchedOnLive(t *testing.T) {
	srv, addr := reloadServer(t, stack.NewMount("1", mappingstorage.New("a", nil)))
	c, _, err := dialStorage(t, addr, "1")
	if err != nil {
		t.Fatal(err)
	}
	srv.SetOptions(server.LiveOptions{ReadOnly: true})
	ctx := ctx10(t)
	if err := c.CallAsync(ctx, "tpc_begin", int64(1), []byte(""), []byte(""), zeoproto.Dict{}, nil, " "); err != nil {
		t.Fatal(err)
	}
	if err := c.CallAsync(ctx, "storea", stack.Oid(1), stack.Tid(0), []byte("x"), int64(1)); err != nil {
		t.Fatal(err)
	}
	_, err = c.Call(ctx, "vote", int64(1))
	if !errors.Is(err, stack.ErrReadOnly) {
		t.Fatalf("vote after read-only was switched on: %v, want ReadOnlyError", err)
	}
	if _, err := c.Call(ctx, "tpc_abort", int64(1)); err != nil || !connected(c) {
		t.Fatalf("tpc_abort: %v (connected %v)", err, connected(c))
	}
	if _, _, err := dialStorage(t, addr, "1"); err == nil {
		t.Fatal("a writable registration accepted after read-only was switched on")
	}
}

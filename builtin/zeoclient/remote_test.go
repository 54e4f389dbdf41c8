package zeoclient_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/server"
)

func containsOid(oids []stack.Oid, o stack.Oid) bool {
	for _, x := range oids {
		if x == o {
			return true
		}
	}
	return false
}

// wantFailure checks that err is a backend failure naming addr that came
// back within limit.
func wantFailure(t *testing.T, what string, err error, addr string, took time.Duration) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded on a killed server", what)
	}
	if !stack.IsBackendFailure(err) {
		t.Fatalf("%s: %v is not a backend failure", what, err)
	}
	if !strings.Contains(err.Error(), addr) {
		t.Fatalf("%s: %v does not name the server %s", what, err, addr)
	}
	if took > 5*time.Second {
		t.Fatalf("%s took %s to fail", what, took)
	}
}

func wantCurrent(t *testing.T, s stack.Storage, oid stack.Oid, data string, serial stack.Tid) {
	t.Helper()
	r, err := s.LoadBefore(ctxT(t, 10*time.Second), oid, stack.MaxTid)
	if err != nil || string(r.Data) != data || r.Serial != serial || r.NextSerial != 0 {
		t.Fatalf("load %s = {%q %s %s}, %v; want {%q %s}", oid, r.Data, r.Serial, r.NextSerial, err, data, serial)
	}
}

// TestCatchUpAfterReconnect: commits made while the node was disconnected
// reach its watchers after it reconnects, and its cache forgets them. The
// restarted zeoraid server knows no invalidation history (getInvalidations
// answers None), so the node finds them by iterating the remote storage.
func TestCatchUpAfterReconnect(t *testing.T) {
	st := newMapping()
	defer st.Close()
	start := func(addr string) (string, func()) {
		l, err := server.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		srv := server.New([]*stack.Mount{stack.NewMount("1", st)}, server.Options{Log: quiet()})
		done := make(chan error, 1)
		go func() { done <- srv.Serve(l) }()
		return l.Addr().String(), func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
			<-done
		}
	}
	addr, stop := start("127.0.0.1:0")
	s := open(t, options(t, "1", addr))
	ctx := ctxT(t, time.Minute)
	t1 := commit(t, s, store{1, 0, "a"}, store{2, 0, "b"})
	wantCurrent(t, s, 1, "a", t1) // now cached
	ch := make(chan stack.Event, 10)
	s.Watch(ch)
	defer s.Unwatch(ch)
	stop()
	start0 := time.Now()
	_, err := s.LoadBefore(ctx, 1, stack.MaxTid)
	for err == nil && time.Since(start0) < 5*time.Second {
		time.Sleep(10 * time.Millisecond)
		_, err = s.LoadBefore(ctx, 1, stack.MaxTid)
	}
	wantFailure(t, "cached load while disconnected", err, addr, 0)
	// Behind the node's back.
	t2 := commit(t, st, store{1, t1, "changed while away"})
	_, stop = start(addr)
	defer stop()
	select {
	case ev := <-ch:
		if ev.Tid != t2 || !containsOid(ev.Oids, 1) {
			t.Fatalf("catch-up event %+v, want tid %s with oid 1", ev, t2)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no catch-up event")
	}
	wantCurrent(t, s, 1, "changed while away", t2)
	wantCurrent(t, s, 2, "b", t1)
}

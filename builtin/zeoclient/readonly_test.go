package zeoclient_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/builtin/zeoclient"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/server"
)

// TestReadOnlyFallbackUpgrade: with read-only-fallback, a node whose only
// reachable server is read-only serves read-only, and moves to the
// writable server as soon as it is up.
func TestReadOnlyFallbackUpgrade(t *testing.T) {
	defer zeoclient.SetUpgradeInterval(50 * time.Millisecond)()
	st := newMapping()
	roAddr := goServerWith(t, st, server.Options{Log: quiet(), ReadOnly: true})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rwAddr := l.Addr().String()
	l.Close()
	o := options(t, "1", rwAddr, roAddr)
	o.ReadOnlyFallback = true
	s := open(t, o)
	ctx := ctxT(t, time.Minute)
	if !s.Capabilities().ReadOnly {
		t.Fatal("connected writable with only a read-only server up")
	}
	if _, err := tryCommit(ctx, s, store{1, 0, "x"}); !errors.Is(err, stack.ErrReadOnly) {
		t.Fatalf("commit on the read-only fallback: %v", err)
	}
	l, err = net.Listen("tcp", rwAddr)
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New([]*stack.Mount{stack.NewMount("1", st)}, server.Options{Log: quiet()})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	defer func() {
		srv.Shutdown(ctxT(t, 5*time.Second))
		<-done
	}()
	deadline := time.Now().Add(20 * time.Second)
	for s.Capabilities().ReadOnly || func() bool { _, err := s.LastTransaction(ctx); return err != nil }() {
		if time.Now().After(deadline) {
			t.Fatal("never moved to the writable server")
		}
		time.Sleep(20 * time.Millisecond)
	}
	tid := commit(t, s, store{1, 0, "written after the upgrade"})
	wantCurrent(t, s, 1, "written after the upgrade", tid)
}

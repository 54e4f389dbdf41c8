package server_test

import (
	"context"
	"testing"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// One server, two storages: each has its own data, commit lock and
// invalidations; a client registered on one hears nothing of the other.
func TestSeveralStorages(t *testing.T) {
	a, b := mappingstorage.New("a", nil), mappingstorage.New("b", nil)
	srv := server.New([]*stack.Mount{stack.NewMount("a", a), stack.NewMount("b", b)}, server.Options{})
	l, err := server.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	go srv.Serve(l)
	defer srv.Shutdown(context.Background())
	dial := func(name string) (*zeoproto.Client, chan zeoproto.Message) {
		msgs := make(chan zeoproto.Message, 100)
		c, err := zeoproto.Dial(ctx10(t), "tcp", l.Addr().String(), zeoproto.ClientOptions{Handler: func(m zeoproto.Message) { msgs <- m }})
		must(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = c.Register(ctx10(t), name, false)
		must(t, err)
		return c, msgs
	}
	ca, _ := dial("a")
	cb, bMsgs := dial("b")
	ca2, a2Msgs := dial("a")
	tid := commit(t, ca, 1, 0, 0, []byte("in a"))
	if m := <-a2Msgs; m.Name != "invalidateTransaction" {
		t.Fatalf("second client of a got %s", m.Name)
	}
	if _, err := cb.LoadBefore(ctx10(t), 0, stack.MaxTid); err == nil {
		t.Fatal("storage b sees storage a's object")
	}
	if last, _ := cb.LastTransaction(ctx10(t)); last != 0 {
		t.Fatalf("storage b's last transaction is %s", last)
	}
	select {
	case m := <-bMsgs:
		t.Fatalf("client of b got %s for a commit in a", m.Name)
	default:
	}
	if rev, err := ca2.LoadBefore(ctx10(t), 0, stack.MaxTid); err != nil || rev.Serial != tid {
		t.Fatalf("second client of a loads %+v, %v", rev, err)
	}
	// b commits independently, even while nothing else happens on a.
	commit(t, cb, 1, 0, 0, []byte("in b"))
}

// The server listens on IPv6 as on IPv4 (zeo.conf's [v6]:port).
func TestIPv6Listener(t *testing.T) {
	srv := server.New([]*stack.Mount{stack.NewMount("1", mappingstorage.New("v6", nil))}, server.Options{})
	l, err := server.Listen("tcp", "[::1]:0")
	must(t, err)
	go srv.Serve(l)
	defer srv.Shutdown(context.Background())
	c, err := zeoproto.Dial(ctx10(t), "tcp", l.Addr().String(), zeoproto.ClientOptions{})
	must(t, err)
	defer c.Close()
	if _, err := c.Register(ctx10(t), "1", false); err != nil {
		t.Fatalf("register over IPv6: %v", err)
	}
	commit(t, c, 1, 0, 0, []byte("over v6"))
}

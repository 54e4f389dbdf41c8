package server

import (
	"context"
	"net"
	"testing"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// BenchmarkDispatchLoadBefore is the server's work for one load between
// the decoded request and the queued reply frame: the lease, the lookup,
// the metrics, the storage and the encoding, without the socket.
func BenchmarkDispatchLoadBefore(b *testing.B) {
	log, _ := test.NewNullLogger()
	st := mappingstorage.New("bench", log)
	defer st.Close()
	ctx := context.Background()
	txn, _ := st.Begin(ctx, stack.TxnMeta{})
	if err := txn.Store(ctx, 1, 0, make([]byte, 200)); err != nil {
		b.Fatal(err)
	}
	if _, err := txn.Vote(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := txn.Finish(ctx); err != nil {
		b.Fatal(err)
	}
	srv := New([]*stack.Mount{stack.NewMount("1", st)}, Options{Log: log})
	defer srv.Shutdown(ctx)
	a, z := net.Pipe()
	defer a.Close()
	defer z.Close()
	c := newConn(srv, a)
	c.codec = zeoproto.Pickle
	defer c.cancel()
	if err := c.dispatch(zeoproto.NewCall(1, "register", "1", true)); err != nil {
		b.Fatal(err)
	}
	defer c.ms.unregister(c)
	m := zeoproto.Message{ID: zeoproto.Tuple{stack.Oid(1).Bytes(), stack.MaxTid.Bytes()}, Name: "loadBefore",
		Args: zeoproto.Tuple{stack.Oid(1).Bytes(), stack.MaxTid.Bytes()}}
	b.ReportAllocs()
	for b.Loop() {
		if err := c.dispatch(m); err != nil {
			b.Fatal(err)
		}
		c.outMu.Lock()
		for _, f := range c.takeOut() {
			f.free()
		}
		c.holding = false
		c.outMu.Unlock()
	}
}

package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// BenchmarkLoadBefore is one client's loads over loopback, one at a time:
// the request path the metrics instrument (docs/operations.md §2).
func BenchmarkLoadBefore(b *testing.B) {
	log, _ := test.NewNullLogger()
	st := mappingstorage.New("bench", log)
	defer st.Close()
	ctx := context.Background()
	txn, err := st.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		b.Fatal(err)
	}
	if err := txn.Store(ctx, 1, 0, []byte("data")); err != nil {
		b.Fatal(err)
	}
	if _, err := txn.Vote(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := txn.Finish(ctx); err != nil {
		b.Fatal(err)
	}
	srv := server.New([]*stack.Mount{stack.NewMount("1", st)}, server.Options{Log: log})
	l, err := server.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(l)
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	c, err := zeoproto.Dial(ctx, "tcp", l.Addr().String(), zeoproto.ClientOptions{Heartbeat: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Register(ctx, "1", true); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.LoadBefore(ctx, 1, stack.MaxTid); err != nil {
			b.Fatal(err)
		}
	}
}

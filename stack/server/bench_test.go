package server_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
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

// benchServer serves a mappingstorage holding one object (oid 1) on a
// loopback port until the benchmark ends.
func benchServer(b *testing.B) string {
	b.Helper()
	log, _ := test.NewNullLogger()
	st := mappingstorage.New("bench", log)
	b.Cleanup(func() { st.Close() })
	ctx := context.Background()
	txn, err := st.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		b.Fatal(err)
	}
	if err := txn.Store(ctx, 1, 0, bytes.Repeat([]byte("d"), 200)); err != nil {
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
	b.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	return l.Addr().String()
}

// BenchmarkServeLoad sends loadBefore requests encoded once over a raw
// socket and reads the replies without decoding them, so that nearly all
// the time measured is the server's: serial is one request outstanding,
// pipelined-16 writes 16 requests at once and then reads 16 replies.
func BenchmarkServeLoad(b *testing.B) {
	addr := benchServer(b)
	for _, depth := range []int{1, 16} {
		name := "serial"
		if depth > 1 {
			name = fmt.Sprintf("pipelined-%d", depth)
		}
		b.Run(name, func(b *testing.B) {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			fr, fw := zeoproto.NewFrameReader(nc, 0), zeoproto.NewFrameWriter(nc)
			codec, err := zeoproto.ClientHandshake(fr, fw)
			if err != nil {
				b.Fatal(err)
			}
			reg, _ := codec.Encode(zeoproto.NewCall(1, "register", "1", true))
			if err := fw.WriteFrame(reg); err != nil {
				b.Fatal(err)
			}
			if _, err := fr.ReadFrame(); err != nil {
				b.Fatal(err)
			}
			var burst []byte
			for i := range depth {
				p, err := codec.Encode(zeoproto.NewCall(int64(2+i), "loadBefore", stack.Oid(1), stack.MaxTid))
				if err != nil {
					b.Fatal(err)
				}
				burst = zeoproto.AppendFrame(burst, p)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += depth {
				if _, err := nc.Write(burst); err != nil {
					b.Fatal(err)
				}
				for range depth {
					p, err := fr.Next()
					if err != nil {
						b.Fatal(err)
					}
					if len(p) < 200 {
						b.Fatalf("reply of %d bytes: %q", len(p), p)
					}
				}
			}
		})
	}
}

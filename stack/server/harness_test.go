package server_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// testServer is a zeoraid server on a loopback port serving one
// mappingstorage named "1", with its log captured.
type testServer struct {
	srv  *server.Server
	addr string
	st   stack.Storage
	logs *test.Hook
}

func startServer(t *testing.T, opts server.Options) *testServer {
	t.Helper()
	return startServerWith(t, nil, opts)
}

// startServerOn serves st (instead of a fresh mappingstorage).
func startServerOn(t *testing.T, st stack.Storage) *testServer {
	t.Helper()
	return startServerWith(t, st, server.Options{})
}

func startServerWith(t *testing.T, st stack.Storage, opts server.Options) *testServer {
	t.Helper()
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	opts.Log = log
	if st == nil {
		st = mappingstorage.New("test", log)
	}
	srv := server.New([]*stack.Mount{stack.NewMount("1", st)}, opts)
	l, err := server.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		st.Close()
	})
	return &testServer{srv: srv, addr: l.Addr().String(), st: st, logs: hook}
}

// client dials and registers a zeoproto client; invalidations and other
// async messages go to the returned channel.
func (ts *testServer) client(t *testing.T) (*zeoproto.Client, chan zeoproto.Message) {
	t.Helper()
	msgs := make(chan zeoproto.Message, 1000)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := zeoproto.Dial(ctx, "tcp", ts.addr, zeoproto.ClientOptions{Handler: func(m zeoproto.Message) { msgs <- m }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Register(ctx, "1", false); err != nil {
		t.Fatal(err)
	}
	return c, msgs
}

// rawConn is a handshaken connection that writes arbitrary frames.
type rawConn struct {
	nc    net.Conn
	r     *zeoproto.FrameReader
	w     *zeoproto.FrameWriter
	codec zeoproto.Codec
}

func (ts *testServer) raw(t *testing.T) *rawConn {
	t.Helper()
	rc := ts.raw0(t)
	codec, err := zeoproto.ClientHandshake(rc.r, rc.w)
	if err != nil {
		t.Fatal(err)
	}
	rc.codec = codec
	return rc
}

// raw0 is a connection before the handshake.
func (ts *testServer) raw0(t *testing.T) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", ts.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{nc: nc, r: zeoproto.NewFrameReader(nc, 0), w: zeoproto.NewFrameWriter(nc)}
}

func (rc *rawConn) send(t *testing.T, m zeoproto.Message) {
	t.Helper()
	p, err := rc.codec.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.w.WriteFrame(p); err != nil {
		t.Fatal(err)
	}
}

func (rc *rawConn) recv(t *testing.T) (zeoproto.Message, error) {
	t.Helper()
	p, err := rc.r.ReadFrame()
	if err != nil {
		return zeoproto.Message{}, err
	}
	return rc.codec.Decode(p)
}

// commit stores data for oid in one transaction through c.
func commit(t *testing.T, c *zeoproto.Client, txn int64, oid stack.Oid, serial stack.Tid, data []byte) stack.Tid {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.CallAsync(ctx, "tpc_begin", txn, []byte("u"), []byte("d"), zeoproto.Dict{}, nil, " "); err != nil {
		t.Fatal(err)
	}
	if err := c.CallAsync(ctx, "storea", oid, serial, data, txn); err != nil {
		t.Fatal(err)
	}
	r, err := c.Call(ctx, "vote", txn)
	if err != nil {
		t.Fatalf("vote: %v", err)
	}
	if s, _ := zeoproto.Seq(r); len(s) != 0 {
		t.Fatalf("vote returned %v", r)
	}
	r, err = c.Call(ctx, "tpc_finish", txn)
	if err != nil {
		t.Fatalf("tpc_finish: %v", err)
	}
	tid, err := stack.TidFromBytes(r.([]byte))
	if err != nil {
		t.Fatal(err)
	}
	return tid
}

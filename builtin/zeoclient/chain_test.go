//go:build interop

package zeoclient_test

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/interop/pyenv"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// chain serves, from zeoraid's server, storage "1": a <zeoclient> built
// from configuration text, pointing at storage s1 of runzeo.
func chain(t testing.TB, srv *pyenv.Runzeo, cacheSize string) string {
	t.Helper()
	text := "<zeoclient 1>\n  server " + srv.Addr + "\n  storage s1\n  blob-dir " + t.TempDir() + "\n  cache-size " + cacheSize + "\n</zeoclient>\n"
	tree, err := buildTB(t, text)
	if err != nil {
		t.Fatal(err)
	}
	st := tree.Roots["1"].Storage
	zs := server.New([]*stack.Mount{stack.NewMount("1", st)}, server.Options{Log: quiet()})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- zs.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		zs.Shutdown(ctx)
		<-done
		tree.Close()
	})
	return l.Addr().String()
}

func pyChain(t *testing.T, mode, addr, storage string) string {
	t.Helper()
	start := time.Now()
	defer func() { t.Logf("chain.py %s %s: %s", mode, addr, time.Since(start)) }()
	out, err := exec.Command(pyenv.Python(t), filepath.Join("testdata", "chain.py"), mode, addr, storage).CombinedOutput()
	if err != nil {
		t.Fatalf("chain.py %s %s %s: %v\n%s", mode, addr, storage, err, out)
	}
	return string(out)
}

// TestChainPythonThroughZeoraid: a Python ZODB application commits and
// reads through zeoraid serving a <zeoclient> of runzeo (BTrees, a
// resolved conflict, a blob); the data is in runzeo, as a Python client
// connected straight to it sees.
func TestChainPythonThroughZeoraid(t *testing.T) {
	for _, proto := range []struct {
		name    string
		msgpack bool
	}{{"Z5", false}, {"M5", true}} {
		t.Run(proto.name, func(t *testing.T) {
			srv := pyenv.StartRunzeo(t, pyenv.RunzeoOptions{Storages: []string{"s1"}, Blobs: true, Msgpack: proto.msgpack})
			addr := chain(t, srv, "20MB")
			pyChain(t, "write", addr, "1")
			if out := pyChain(t, "read", addr, "1"); !strings.Contains(out, "ok") {
				t.Fatalf("read through zeoraid: %s", out)
			}
			if out := pyChain(t, "read", srv.Addr, "s1"); !strings.Contains(out, "ok") {
				t.Fatalf("read from runzeo directly: %s", out)
			}
		})
	}
}

// BenchmarkChainLoad measures one loadBefore of a Go ZEO client: from
// runzeo directly, through zeoraid serving a <zeoclient> of it without a
// cache, and through one whose cache holds the object.
func BenchmarkChainLoad(b *testing.B) {
	srv := pyenv.StartRunzeo(b, pyenv.RunzeoOptions{Storages: []string{"s1"}, Blobs: true})
	s := open(b, options(b, "s1", srv.Addr))
	commit(b, s, store{0, 0, "\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01."})
	for _, path := range []struct{ name, addr, storage string }{
		{"direct", srv.Addr, "s1"},
		{"through-zeoraid", chain(b, srv, "0"), "1"},
		{"cache-hit", chain(b, srv, "20MB"), "1"},
	} {
		b.Run(path.name, func(b *testing.B) { benchLoads(b, path.addr, path.storage) })
	}
}

// benchLoads times loads of oid 0 by a Go ZEO client at addr, after one
// that fills the caches on the way.
func benchLoads(b *testing.B, addr, storage string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := zeoproto.Dial(ctx, "tcp", addr, zeoproto.ClientOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Register(ctx, storage, true); err != nil {
		b.Fatal(err)
	}
	if _, err := c.LoadBefore(ctx, 0, stack.MaxTid); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.LoadBefore(ctx, 0, stack.MaxTid); err != nil {
			b.Fatal(err)
		}
	}
}

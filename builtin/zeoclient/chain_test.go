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
func chain(t testing.TB, srv *runzeo, cacheSize string) string {
	t.Helper()
	text := "<zeoclient 1>\n  server " + srv.addr + "\n  storage s1\n  blob-dir " + t.TempDir() + "\n  cache-size " + cacheSize + "\n</zeoclient>\n"
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
			srv := startRunzeo(t, runzeoOpts{msgpack: proto.msgpack})
			addr := chain(t, srv, "20MB")
			pyChain(t, "write", addr, "1")
			if out := pyChain(t, "read", addr, "1"); !strings.Contains(out, "ok") {
				t.Fatalf("read through zeoraid: %s", out)
			}
			if out := pyChain(t, "read", srv.addr, "s1"); !strings.Contains(out, "ok") {
				t.Fatalf("read from runzeo directly: %s", out)
			}
		})
	}
}

// loadLatency times n loads of oid 0 by a Go ZEO client at addr.
func loadLatency(t testing.TB, addr, storage string, n int) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := zeoproto.Dial(ctx, "tcp", addr, zeoproto.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Register(ctx, storage, true); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := c.LoadBefore(ctx, 0, stack.MaxTid); err != nil {
			t.Fatal(err)
		}
	}
	return time.Since(start) / time.Duration(n)
}

// TestChainLatency reports what a load costs through zeoraid and a
// <zeoclient> (with and without its cache) against runzeo directly. It
// asserts nothing about timing; run with -v to see the numbers.
func TestChainLatency(t *testing.T) {
	srv := startRunzeo(t, runzeoOpts{})
	s := open(t, options(t, "s1", srv.addr))
	commit(t, s, store{0, 0, "\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01."})
	uncached := chain(t, srv, "0")
	cached := chain(t, srv, "20MB")
	// The machine is shared: interleave rounds and keep each path's best.
	const n, rounds = 200, 7
	loadLatency(t, srv.addr, "s1", 20) // warm up
	best := func(d *time.Duration, addr, storage string) {
		if l := loadLatency(t, addr, storage, n); *d == 0 || l < *d {
			*d = l
		}
	}
	var direct, through, hit time.Duration
	for r := 0; r < rounds; r++ {
		best(&direct, srv.addr, "s1")
		best(&through, uncached, "1")
		best(&hit, cached, "1")
	}
	t.Logf("loadBefore latency: runzeo direct %v; through zeoraid+zeoclient %v without cache (+%v, x%.2f), %v with cache (x%.2f)",
		direct, through, through-direct, float64(through)/float64(direct), hit, float64(hit)/float64(direct))
}

func BenchmarkLoadDirect(b *testing.B) {
	srv := startRunzeo(b, runzeoOpts{})
	s := open(b, options(b, "s1", srv.addr))
	commit(b, s, store{0, 0, "root"})
	b.ResetTimer()
	b.ReportMetric(float64(loadLatency(b, srv.addr, "s1", b.N).Microseconds()), "µs/load")
}

func BenchmarkLoadChain(b *testing.B) {
	srv := startRunzeo(b, runzeoOpts{})
	s := open(b, options(b, "s1", srv.addr))
	commit(b, s, store{0, 0, "root"})
	addr := chain(b, srv, "0")
	b.ResetTimer()
	b.ReportMetric(float64(loadLatency(b, addr, "1", b.N).Microseconds()), "µs/load")
}

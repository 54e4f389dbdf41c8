package zeoclient_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"

	"github.com/zeoraid/zeoraid/builtin/zeoclient"
	"github.com/zeoraid/zeoraid/interop/pyenv"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quiet() logrus.FieldLogger {
	log := logrus.New()
	log.SetLevel(logrus.ErrorLevel)
	if testing.Verbose() {
		log.SetLevel(logrus.InfoLevel)
	}
	return log
}

// runzeo is a real Python ZEO server (python -m ZEO.runzeo -C conf)
// serving FileStorages with blobs named s1, s2, …, sN.
type runzeo struct {
	t       testing.TB
	py      string
	dir     string
	conf    string
	addr    string
	msgpack bool

	mu     sync.Mutex
	next   int
	n      int
	cmd    *exec.Cmd
	exited chan struct{}
	logs   *lockedBuffer
}

type runzeoOpts struct {
	msgpack bool
	// storages is how many FileStorages to serve (default 1).
	storages int
	// clientConflicts sets client-conflict-resolution, so vote returns
	// every conflict as a dict (as zeoraid's server does).
	clientConflicts bool
	// invalidationQueue sets invalidation-queue-size (0: default).
	invalidationQueue int
}

// startRunzeo writes the configuration and starts the server; it is
// killed at the end of the test.
func startRunzeo(t testing.TB, o runzeoOpts) *runzeo {
	t.Helper()
	if o.storages == 0 {
		o.storages = 1
	}
	r := &runzeo{t: t, py: pyenv.Python(t), dir: t.TempDir(), msgpack: o.msgpack, n: o.storages}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = l.Addr().String()
	l.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "<zeo>\n  address %s\n", r.addr)
	if o.clientConflicts {
		b.WriteString("  client-conflict-resolution true\n")
	}
	if o.invalidationQueue > 0 {
		fmt.Fprintf(&b, "  invalidation-queue-size %d\n", o.invalidationQueue)
	}
	b.WriteString("</zeo>\n")
	for i := 1; i <= o.storages; i++ {
		d := filepath.Join(r.dir, fmt.Sprintf("s%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "<filestorage s%d>\n  path %s\n  blob-dir %s\n</filestorage>\n", i, filepath.Join(d, "Data.fs"), filepath.Join(d, "blobs"))
	}
	r.conf = filepath.Join(r.dir, "zeo.conf")
	if err := os.WriteFile(r.conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	r.start()
	t.Cleanup(func() {
		r.kill()
		if t.Failed() {
			t.Logf("runzeo output:\n%s", r.logs.String())
		}
	})
	return r
}

// blobDir is the server's blob directory of storage sN.
func (r *runzeo) blobDir(name string) string { return filepath.Join(r.dir, name, "blobs") }

// start runs the server and waits until it accepts connections.
func (r *runzeo) start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	cmd := exec.Command(r.py, "-m", "ZEO.runzeo", "-C", r.conf)
	cmd.Env = append(os.Environ(), "ZEO_MSGPACK=")
	if r.msgpack {
		cmd.Env = append(os.Environ(), "ZEO_MSGPACK=1")
	}
	if r.logs == nil {
		r.logs = &lockedBuffer{}
	}
	cmd.Stdout, cmd.Stderr = r.logs, r.logs
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	r.cmd, r.exited = cmd, exited
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			r.t.Fatalf("runzeo exited before listening on %s:\n%s", r.addr, r.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("runzeo did not listen on %s: %v", r.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to end.
func (r *runzeo) kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.exited
	r.cmd = nil
}

// storage hands out the next unused storage name.
func (r *runzeo) storage(t testing.TB) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	if r.next > r.n {
		t.Fatalf("runzeo serves only %d storages", r.n)
	}
	return fmt.Sprintf("s%d", r.next)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// address parses a server address as a configuration would.
func address(t testing.TB, addr string) zconfig.ConnectAddress {
	t.Helper()
	if strings.Contains(addr, "/") {
		return zconfig.ConnectAddress{Network: "unix", Path: addr}
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var p int
	fmt.Sscan(port, &p)
	return zconfig.ConnectAddress{Network: "tcp", Host: host, Port: p}
}

// options are the defaults of a <zeoclient> section for one server.
func options(t testing.TB, storage string, addrs ...string) zeoclient.Options {
	o := zeoclient.Options{Storage: storage, CacheSize: 20 << 20, Wait: true, BlobCacheSizeCheck: 10}
	for _, a := range addrs {
		o.Server = append(o.Server, address(t, a))
	}
	return o
}

// open opens a node, closed at the end of the test.
func open(t testing.TB, o zeoclient.Options) *zeoclient.Storage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := zeoclient.Open(ctx, "main/"+o.Storage, o, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// commit stores oid=data pairs in one transaction and returns its tid.
func commit(t testing.TB, s stack.Storage, stores ...store) stack.Tid {
	t.Helper()
	tid, err := tryCommit(ctxT(t, 30*time.Second), s, stores...)
	if err != nil {
		t.Fatal(err)
	}
	return tid
}

type store struct {
	oid    stack.Oid
	serial stack.Tid
	data   string
}

func tryCommit(ctx context.Context, s stack.Storage, stores ...store) (stack.Tid, error) {
	txn, err := s.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		return 0, err
	}
	for _, st := range stores {
		if err := txn.Store(ctx, st.oid, st.serial, []byte(st.data)); err != nil {
			txn.Abort(ctx)
			return 0, err
		}
	}
	if _, err := txn.Vote(ctx); err != nil {
		txn.Abort(ctx)
		return 0, err
	}
	tid, err := txn.Finish(ctx)
	if err != nil {
		txn.Abort(ctx)
	}
	return tid, err
}

// proxy is a TCP relay to a server that the test can cut: while down it
// closes every connection, so the node behind it is disconnected however
// it retries.
type proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[s] = true, true
		p.wg.Add(2)
		p.mu.Unlock()
		pipe := func(a, b net.Conn) {
			defer p.wg.Done()
			buf := make([]byte, 64<<10)
			for {
				n, err := a.Read(buf)
				if n > 0 {
					if _, werr := b.Write(buf[:n]); werr != nil {
						err = werr
					}
				}
				if err != nil {
					a.Close()
					b.Close()
					return
				}
			}
		}
		go pipe(c, s)
		go pipe(s, c)
	}
}

// setDown cuts (true) or restores (false) the relay.
func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
		p.conns = map[net.Conn]bool{}
	}
}

func (p *proxy) close() {
	p.l.Close()
	p.setDown(true)
	p.wg.Wait()
}

package zeoclient_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"

	"github.com/zeoraid/zeoraid/builtin/zeoclient"
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

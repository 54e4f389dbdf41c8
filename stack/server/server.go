// Package server is zeoraid's ZEO server: it accepts connections from
// unmodified Python ZEO clients (ZEO 5 and 6) and serves the mounted
// storages over the calls of docs/protocol.md §4, with one commit lock per
// mount, the invalidation queue and the ordering guarantees of §6.6. It is the
// one place that maps storage errors to ZODB exception classes on the wire
// (through zeoproto.ErrorToPython).
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/eventlog"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// Options configure a Server; they mirror <zeo> (docs/configuration.md §2).
type Options struct {
	ReadOnly              bool
	InvalidationQueueSize int           // default 100
	InvalidationAge       float64       // seconds; 0 disables the iteration fallback
	TransactionTimeout    time.Duration // 0: none
	Msgpack               bool          // announce M5 instead of Z5
	MaxFrame              int           // largest accepted frame; 0: zeoproto.DefaultMaxFrame
	TLS                   *tls.Config   // nil: plain connections
	Log                   logrus.FieldLogger
	// Extensions are extra synchronous calls offered on every storage,
	// beside the storage's own (stack.Extender), which they take
	// precedence over: the server's management calls (raid_reload).
	Extensions map[string]stack.Extension
	// ReadOnlyExtensions name the Extensions that only report; the others
	// are management calls for trusted connections only (Trust).
	ReadOnlyExtensions []string
	// Trust is <zeo> management-trust: the connections that may make
	// state-changing management calls. nil: stack.DefaultManagementTrust;
	// empty: none.
	Trust stack.ManagementTrust
}

// Server serves a set of mounts to ZEO clients.
type Server struct {
	opts   Options
	live   atomic.Pointer[LiveOptions] // the <zeo> keys a reload may change
	log    logrus.FieldLogger
	ctx    context.Context
	cancel context.CancelFunc
	start  time.Time

	closing atomic.Bool // set first thing in Shutdown
	metrics *serverMetrics

	mu        sync.Mutex
	mounts    map[string]*mountState
	names     []string
	listeners []net.Listener
	stopped   map[net.Listener]bool // listeners StopListening closed
	conns     map[*conn]struct{}

	// wg counts every goroutine the server starts (spawn) but the mounts'
	// watchers, which close stops; Shutdown waits for it.
	wg           sync.WaitGroup
	mountsClosed sync.Once
}

// LiveOptions are the Options a configuration reload may change while
// clients stay connected (SetOptions). Each takes effect at the next point
// it is consulted: ReadOnly at the next registration and tpc_begin,
// TransactionTimeout when a commit lock is next taken, the invalidation
// settings at the next commit or getInvalidations.
type LiveOptions struct {
	ReadOnly              bool
	InvalidationQueueSize int
	InvalidationAge       float64
	TransactionTimeout    time.Duration
	Trust                 stack.ManagementTrust // at the next management call
}

// Live returns the live part of opts.
func (opts Options) Live() LiveOptions {
	return LiveOptions{
		ReadOnly:              opts.ReadOnly,
		InvalidationQueueSize: opts.InvalidationQueueSize,
		InvalidationAge:       opts.InvalidationAge,
		TransactionTimeout:    opts.TransactionTimeout,
		Trust:                 opts.Trust,
	}
}

// options returns the live options now in force.
func (s *Server) options() LiveOptions { return *s.live.Load() }

// SetOptions replaces the live options (a configuration reload).
func (s *Server) SetOptions(o LiveOptions) {
	if o.InvalidationQueueSize <= 0 {
		o.InvalidationQueueSize = 100
	}
	s.live.Store(&o)
}

// New returns a server for mounts (by storage name).
func New(mounts []*stack.Mount, opts Options) *Server {
	if opts.InvalidationQueueSize <= 0 {
		opts.InvalidationQueueSize = 100
	}
	if opts.Log == nil {
		l := logrus.New()
		l.SetOutput(os.Stderr)
		opts.Log = l
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts: opts, log: opts.Log, ctx: ctx, cancel: cancel, start: time.Now(),
		mounts: map[string]*mountState{}, conns: map[*conn]struct{}{},
		metrics: newServerMetrics(),
	}
	s.SetOptions(opts.Live())
	for _, m := range mounts {
		s.mounts[m.Name()] = newMountState(s, m)
		s.names = append(s.names, m.Name())
	}
	sort.Strings(s.names)
	return s
}

// Listen opens a listener for a zeo.conf address: network "tcp" (IPv4 or
// IPv6) or "unix". A stale unix socket file is replaced.
func Listen(network, address string) (net.Listener, error) {
	if network == "unix" {
		if fi, err := os.Stat(address); err == nil && fi.Mode()&os.ModeSocket != 0 {
			if c, err := net.Dial("unix", address); err == nil {
				c.Close()
				return nil, fmt.Errorf("listen unix %s: address already in use", address)
			}
			os.Remove(address)
		}
	}
	return net.Listen(network, address)
}

// Serve accepts connections on l until Shutdown. It returns nil after a
// shutdown and the accept error otherwise.
func (s *Server) Serve(l net.Listener) error {
	orig := l // what StopListening is given
	if s.opts.TLS != nil {
		l = tls.NewListener(l, s.opts.TLS)
	}
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		return nil
	}
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	s.log.WithField(eventlog.LoggerField, asyncioServerLogger).Info("listening on " + l.Addr().String())
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.closing.Load() || s.isStopped(orig) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		c := newConn(s, nc)
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			nc.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		// Under mu and before the context is cancelled: Shutdown has not
		// begun to wait.
		s.spawn(c.serve)
		s.mu.Unlock()
	}
}

// StopListening closes l, one of the listeners Serve accepts on, so that
// its Serve returns nil; connections it accepted stay. A reload that moves
// the address calls it after the new listener is serving.
func (s *Server) StopListening(l net.Listener) error {
	s.mu.Lock()
	if s.stopped == nil {
		s.stopped = map[net.Listener]bool{}
	}
	s.stopped[l] = true
	s.mu.Unlock()
	return l.Close()
}

func (s *Server) isStopped(l net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped[l]
}

// AddMount serves m from now on under its name: new registrations may name
// it. A name already served is an error.
func (s *Server) AddMount(m *stack.Mount) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return errors.New("server shutting down")
	}
	if _, dup := s.mounts[m.Name()]; dup {
		return fmt.Errorf("storage %q is already served", m.Name())
	}
	s.mounts[m.Name()] = newMountState(s, m)
	s.names = append(s.names, m.Name())
	sort.Strings(s.names)
	s.log.WithField("storage", m.Name()).Info("storage added")
	return nil
}

// RemoveMount stops serving the storage name: registrations naming it fail
// from now on, and its connections are closed with reason, each logged as
// a disconnect (a transaction not yet voted is aborted; the caller holds
// the mount's commit lock, so none is between vote and finish). It returns
// the mount, which its owner closes, or nil for an unknown name.
func (s *Server) RemoveMount(name, reason string) *stack.Mount {
	s.mu.Lock()
	ms, ok := s.mounts[name]
	if ok {
		delete(s.mounts, name)
		for i, n := range s.names {
			if n == name {
				s.names = append(s.names[:i:i], s.names[i+1:]...)
				break
			}
		}
	}
	s.mu.Unlock()
	if !ok {
		return nil
	}
	conns := ms.connections()
	ms.log.WithField("connections", len(conns)).Warn("storage removed: disconnecting its clients")
	for _, c := range conns {
		c.close(reason)
	}
	ms.close()
	s.forgetMetrics(name)
	return ms.mount
}

// spawn runs f on a goroutine that Shutdown waits for. It is called only
// from a goroutine spawn started, or by Serve before Shutdown cancels the
// server, so Shutdown's wait never starts from a count of zero while more
// may be added.
func (s *Server) spawn(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Shutdown stops accepting, lets transactions that are committing finish
// (until ctx ends), closes every connection (aborting open transactions),
// cancels the calls still running (pack, undo logs, extension calls),
// waits until every goroutine the server started has ended, and stops the
// mounts' watchers. When ctx ends first, it stops the watchers all the same
// and returns an error wrapping ctx's, with some goroutines still running;
// calling Shutdown again waits for them. It does not close the storages:
// their owner does, once Shutdown returned nil.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	for _, l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	mounts := s.mountStates()
	// Wait for commits in their vote..finish window: taking every commit
	// lock means none is in flight, and holding them admits no new vote.
	for _, ms := range mounts {
		if err := ms.mount.LockCommit(ctx); err != nil {
			s.log.WithField("storage", ms.mount.Name()).Warn("shutdown: a commit is still in progress; aborting it")
			continue
		}
		defer ms.mount.UnlockCommit()
	}
	s.cancel()
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close("server shutting down")
	}
	ended := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(ended)
	}()
	var err error
	select {
	case <-ended:
	case <-ctx.Done():
		err = fmt.Errorf("shutdown: connections or calls are still running: %w", ctx.Err())
	}
	s.mountsClosed.Do(func() {
		for _, ms := range mounts {
			ms.close()
		}
	})
	return err
}

func (s *Server) mount(name string) *mountState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mounts[name]
}

// mountStates returns the mounts served now, by name.
func (s *Server) mountStates() []*mountState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*mountState, 0, len(s.names))
	for _, name := range s.names {
		out = append(out, s.mounts[name])
	}
	return out
}

// extensionMethods are the extra synchronous calls st offers (docs/protocol.md §4.20),
// with the server's own, as get_info and getExtensionMethods report them:
// {name: None}.
func (s *Server) extensionMethods(st stack.Storage) zeoproto.Dict {
	d := zeoproto.Dict{}
	names := make([]string, 0)
	seen := map[string]bool{}
	for name := range s.opts.Extensions {
		names = append(names, name)
		seen[name] = true
	}
	if ext, ok := st.(stack.Extender); ok {
		for name := range ext.Extensions() {
			if !seen[name] {
				names = append(names, name)
			}
		}
	}
	sort.Strings(names)
	for _, name := range names {
		d = append(d, zeoproto.DictItem{Key: name, Value: nil})
	}
	return d
}

// status is server_status (docs/protocol.md §4.19).
func (ms *mountState) status() zeoproto.Dict {
	ms.mu.Lock()
	st := ms.stats
	st.loads = ms.loads.Load()
	conns := len(ms.conns)
	last := ms.lastTid
	ms.mu.Unlock()
	var lockTime any
	if !st.lockTime.IsZero() {
		lockTime = float64(st.lockTime.UnixNano()) / 1e9
	}
	var timeoutAlive any = "stub"
	if ms.srv.options().TransactionTimeout > 0 {
		timeoutAlive = true
	}
	return zeoproto.Dict{
		{Key: "connections", Value: int64(conns)},
		{Key: "loads", Value: st.loads},
		{Key: "stores", Value: st.stores},
		{Key: "commits", Value: st.commits},
		{Key: "aborts", Value: st.aborts},
		{Key: "active_txns", Value: int64(st.activeTxns)},
		{Key: "lock_time", Value: lockTime},
		{Key: "conflicts", Value: st.conflicts},
		{Key: "conflicts_resolved", Value: int64(0)},
		{Key: "start", Value: ms.srv.start.Format("Mon Jan _2 15:04:05 2006")},
		{Key: "waiting", Value: int64(st.waiting)},
		{Key: "timeout-thread-is-alive", Value: timeoutAlive},
		{Key: "last-transaction", Value: last.Hex()},
	}
}

// ruokJSON is the answer to the ruok probe: every storage's status.
func (s *Server) ruokJSON() []byte {
	out := map[string]map[string]any{}
	for _, ms := range s.mountStates() {
		d := map[string]any{}
		for _, it := range ms.status() {
			k, _ := zeoproto.AsString(it.Key)
			d[k] = it.Value
		}
		out[ms.mount.Name()] = d
	}
	b, _ := json.Marshal(out)
	return b
}

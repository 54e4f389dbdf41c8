package zeoclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// Connection timing. Python's ClientStorage retries every 1-2 s and waits
// 30 s at start-up; zeoraid backs off from a short delay so that a
// restarted server is found quickly while a dead one is not hammered.
const (
	dialTimeout  = 10 * time.Second // one connection attempt, handshake and registration included
	waitTimeout  = 30 * time.Second // wait = on: how long Open waits for the first connection
	minRetry     = 100 * time.Millisecond
	maxRetry     = 10 * time.Second
	oidBatchSize = 100 // what new_oids returns
)

// Storage is a <zeoclient> node: a remote ZEO storage. It implements
// stack.Storage and, as the remote supports them, stack.Iterator,
// RecordIterator, Undoer, Packer and Blobber. Its methods are safe for
// concurrent use.
type Storage struct {
	path     string
	opts     Options                 // as opened
	cfg      atomic.Pointer[Options] // as last configured: the keys a reload changes (Reconfigure)
	log      logrus.FieldLogger
	notifier *stack.Notifier
	cache    *cache // holds nothing while cache-size is 0
	blobs    *blobDir

	commit chan struct{} // one transaction at a time: Begin sends, the end receives

	mu        sync.Mutex
	sess      *session // the registered connection, nil while disconnected
	closed    bool
	connected bool  // a connection was registered at least once
	lastErr   error // why the last connection attempt or connection failed
	lastAddr  string
	info      remoteInfo
	ready     chan struct{} // closed when the first connection is registered
	// replace: the next connection may register with a server that is
	// behind what this node has seen (AcceptReplacement).
	replace bool
	kick    chan struct{} // wakes the reconnection loop early

	oidMu sync.Mutex
	oids  []stack.Oid
	oidOf *session // the session the pool came from

	evMu      sync.Mutex
	finishing bool          // a tpc_finish is in flight: hold foreign events
	held      []stack.Event // foreign events that arrived meanwhile
	// rewound: the server is a replacement behind what the watchers have
	// been sent; remoteLast is its last tid. Its commits up to the
	// notifier's last tid are not published again (watchers saw those
	// tids); past it, the node is back to normal.
	rewound    bool
	remoteLast stack.Tid

	nextTxn atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup
}

// remoteInfo is what get_info told about the remote storage; length and
// size are kept up to date by the server's info messages (sent after our
// commits and after packs), as Python's ClientStorage does.
type remoteInfo struct {
	name       string
	length     int64
	size       int64
	interfaces map[string]bool
	undo       bool
	recordIter bool
}

// session is one registered connection.
type session struct {
	s        *Storage
	c        *zeoproto.Client
	addr     string
	readOnly bool

	mu        sync.Mutex
	verifying bool          // catching up: queue invalidations
	queued    []stack.Event // invalidations that arrived while verifying
	dl        *download     // the blob being received
}

// Open connects to the ZEO server(s) of o and returns the node. path names
// it in errors and logs. With o.Wait it returns only once a connection is
// registered (or fails when ctx ends or no server answered within 30 s);
// otherwise it returns at once and connects in the background.
func Open(ctx context.Context, path string, o Options, log logrus.FieldLogger) (*Storage, error) {
	if log == nil {
		l := logrus.New()
		l.Out = io.Discard
		log = l
	}
	if err := o.check(); err != nil {
		return nil, fmt.Errorf("zeoclient %s: %w", path, err)
	}
	if o.MinDisconnectPoll != nil || o.MaxDisconnectPoll != nil || o.DropCacheRatherVerify != nil {
		log.Warn("min-disconnect-poll, max-disconnect-poll and drop-cache-rather-verify are ignored (as by ZEO 5)")
	}
	if o.Client != "" || o.Var != "" {
		log.Warn("client and var (a persistent cache) are ignored: zeoraid's zeoclient cache is in memory")
	}
	if o.Storage == "" {
		o.Storage = "1"
	}
	s := &Storage{
		path:     path,
		opts:     o,
		log:      log,
		notifier: stack.NewNotifier(0),
		commit:   make(chan struct{}, 1),
		ready:    make(chan struct{}),
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	s.cfg.Store(&o)
	s.cache = newCache(int64(o.CacheSize))
	if o.BlobDir != "" {
		b, err := openBlobDir(o)
		if err != nil {
			return nil, fmt.Errorf("zeoclient %s: %w", path, err)
		}
		s.blobs = b
	}
	s.wg.Add(1)
	go s.run()
	if !o.Wait {
		return s, nil
	}
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	select {
	case <-s.ready:
		return s, nil
	case <-ctx.Done():
	case <-timer.C:
	}
	s.mu.Lock()
	why := s.lastErr
	s.mu.Unlock()
	s.Close()
	if why == nil {
		why = ctx.Err()
		if why == nil {
			why = errors.New("timed out")
		}
	}
	return nil, fmt.Errorf("zeoclient %s: no connection to %s: %w", path, s.addrList(), why)
}

// addrList names the configured servers for messages.
func (s *Storage) addrList() string {
	parts := make([]string, len(s.opts.Server))
	for i, a := range s.opts.Server {
		parts[i] = a.String()
	}
	return strings.Join(parts, ", ")
}

// run keeps a connection registered until Close.
func (s *Storage) run() {
	defer s.wg.Done()
	delay := minRetry
	for {
		ss, err := s.connect()
		if err == nil {
			delay = minRetry
			if !s.serve(ss) {
				return
			}
		} else {
			s.mu.Lock()
			s.lastErr = err
			s.mu.Unlock()
			s.log.WithError(err).Debug("zeo connection attempt failed")
		}
		wait := delay + rand.N(delay/2+1)
		if delay *= 2; delay > maxRetry {
			delay = maxRetry
		}
		select {
		case <-s.stop:
			return
		case <-s.kick:
			delay = minRetry
		case <-time.After(wait):
		}
	}
}

// AcceptReplacement, while accept is set, lets a connection register with
// a server whose last transaction is older than the last this node has
// seen, which the node otherwise refuses: an empty or restored server put
// in place of a failed one, which its user (a RAID recovery, which
// compares histories itself) is about to fill. The load cache is dropped
// when that happens, and the replacement's commits up to the last tid the
// watchers were sent are not sent again. Accepting tries the reconnection
// at once; it ends with the first connection registered, or with
// AcceptReplacement(false).
func (s *Storage) AcceptReplacement(accept bool) {
	s.mu.Lock()
	s.replace = accept
	s.mu.Unlock()
	if !accept {
		return
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// lastSeen is the server's last tid as far as the node knows: the
// notifier's, or the replacement's while it is behind.
func (s *Storage) lastSeen() stack.Tid {
	s.evMu.Lock()
	defer s.evMu.Unlock()
	if s.rewound {
		return s.remoteLast
	}
	return s.notifier.Last()
}

// upgradeInterval is how often a node that fell back to a read-only
// server looks for a writable one.
var upgradeInterval = 10 * time.Second

// serve waits until the session ends (false: the node is closing). A
// session that fell back to read-only ends as soon as one of the servers
// accepts a writable registration, so that the node reconnects writable
// (docs/protocol.md §6.3).
func (s *Storage) serve(ss *session) bool {
	var tick <-chan time.Time
	if ss.readOnly && !s.opts.ReadOnly {
		t := time.NewTicker(upgradeInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ss.c.Done():
			s.drop(ss, ss.c.Err())
			return true
		case <-s.stop:
			s.drop(ss, stack.ErrClosed)
			return false
		case <-tick:
			if s.writableAvailable() {
				s.log.Info("a writable ZEO server is available; leaving the read-only one")
				s.drop(ss, errors.New("switching to a writable server"))
				return true
			}
		}
	}
}

// writableAvailable probes the addresses for a writable registration.
func (s *Storage) writableAvailable() bool {
	for _, a := range s.opts.Server {
		ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
		c, err := zeoproto.Dial(ctx, a.Network, a.String(), zeoproto.ClientOptions{Logger: s.log, Heartbeat: -1, TLS: s.tlsFor(a.String())})
		if err == nil {
			_, err = c.Register(ctx, s.opts.Storage, false)
			c.Close()
		}
		cancel()
		if err == nil {
			return true
		}
	}
	return false
}

// tlsFor is the TLS configuration for addr, nil without <ssl> or when it
// cannot be built (connectTo reports that).
func (s *Storage) tlsFor(addr string) *tls.Config {
	if s.opts.SSL == nil {
		return nil
	}
	cfg, _ := s.opts.SSL.tlsConfig(addr)
	return cfg
}

// drop forgets a session that is gone.
func (s *Storage) drop(ss *session, why error) {
	s.mu.Lock()
	if s.sess == ss {
		s.sess = nil
	}
	s.lastErr = why
	s.lastAddr = ss.addr
	s.mu.Unlock()
	ss.c.Close()
	ss.abortDownload()
	if !errors.Is(why, stack.ErrClosed) {
		s.log.WithError(why).WithField("addr", ss.addr).Warn("disconnected from the ZEO server; reconnecting")
	}
}

// connect tries the addresses in order and returns the first registered,
// caught-up session. With read-only-fallback, every address is tried
// writable before any is accepted read-only.
func (s *Storage) connect() (*session, error) {
	var errs []error
	passes := []bool{false}
	if s.opts.ReadOnlyFallback && !s.opts.ReadOnly {
		passes = []bool{false, true}
	}
	for _, fallback := range passes {
		for _, a := range s.opts.Server {
			ss, err := s.connectTo(a.Network, a.String(), fallback)
			if err == nil {
				return ss, nil
			}
			errs = append(errs, err)
			select {
			case <-s.stop:
				return nil, stack.ErrClosed
			default:
			}
		}
	}
	return nil, errors.Join(errs...)
}

// connectTo connects to one address, registers (read-only when
// configured, or when fallback is set and the server refuses a writable
// registration) and catches up.
func (s *Storage) connectTo(network, addr string, fallback bool) (*session, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	ss := &session{s: s, addr: addr, verifying: true}
	copts := zeoproto.ClientOptions{Logger: s.log, Handler: ss.handle}
	if s.opts.SSL != nil {
		cfg, err := s.opts.SSL.tlsConfig(addr)
		if err != nil {
			return nil, fmt.Errorf("ssl: %w", err)
		}
		copts.TLS = cfg
	}
	c, err := zeoproto.Dial(ctx, network, addr, copts)
	if err != nil {
		return nil, err
	}
	ss.c = c
	fail := func(err error) (*session, error) {
		c.Close()
		return nil, &zeoproto.DisconnectedError{Addr: addr, Err: err}
	}
	readOnly := s.opts.ReadOnly
	last, err := c.Register(ctx, s.opts.Storage, readOnly)
	if errors.Is(err, stack.ErrReadOnly) && !readOnly && fallback {
		readOnly = true
		last, err = c.Register(ctx, s.opts.Storage, true)
	}
	if err != nil {
		return fail(fmt.Errorf("register storage %q: %w", s.opts.Storage, err))
	}
	ss.readOnly = readOnly
	info, err := fetchInfo(ctx, c)
	if err != nil {
		return fail(fmt.Errorf("get_info: %w", err))
	}
	if err := s.catchUp(ctx, ss, last); err != nil {
		return fail(err)
	}
	if label := s.cfg.Load().ClientLabel; label != "" {
		if err := c.CallAsync(ctx, "set_client_label", label); err != nil {
			return fail(err)
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return nil, stack.ErrClosed
	}
	s.sess = ss
	s.info = info
	s.lastAddr = addr
	first := !s.connected
	s.connected = true
	s.mu.Unlock()
	if first {
		close(s.ready)
	}
	s.log.WithFields(logrus.Fields{"addr": addr, "tid": last.String(), "read_only": readOnly}).Info("connected to the ZEO server")
	return ss, nil
}

// fetchInfo calls get_info.
func fetchInfo(ctx context.Context, c *zeoproto.Client) (remoteInfo, error) {
	r, err := c.Call(ctx, "get_info")
	if err != nil {
		return remoteInfo{}, err
	}
	d, ok := r.(zeoproto.Dict)
	if !ok {
		return remoteInfo{}, fmt.Errorf("get_info returned %s, want a dict", zeoproto.TypeName(r))
	}
	info := remoteInfo{interfaces: map[string]bool{}}
	if v, ok := d.Get("name"); ok {
		info.name, _ = zeoproto.AsString(v)
	}
	info.length, info.size = infoSizes(d, 0, 0)
	if v, ok := d.Get("supportsUndo"); ok {
		info.undo = zeoproto.Truth(v)
	}
	if v, ok := d.Get("supports_record_iternext"); ok {
		info.recordIter = zeoproto.Truth(v)
	}
	if v, ok := d.Get("interfaces"); ok {
		list, _ := zeoproto.Seq(v)
		for _, it := range list {
			if pair, ok := zeoproto.Seq(it); ok && len(pair) == 2 {
				if name, ok := zeoproto.AsString(pair[1]); ok {
					info.interfaces[name] = true
				}
			}
		}
	}
	return info, nil
}

// infoSizes reads length and size from a get_info or info dict, keeping
// the given values for missing keys.
func infoSizes(d zeoproto.Dict, length, size int64) (int64, int64) {
	if v, ok := d.Get("length"); ok {
		if n, ok := zeoproto.AsInt(v); ok {
			length = n
		}
	}
	if v, ok := d.Get("size"); ok {
		if n, ok := zeoproto.AsInt(v); ok {
			size = n
		}
	}
	return length, size
}

// catchUp brings the node's view (the cache, the published events) to the
// server's last tid after a (re)connection, then lets the session's
// invalidations through (docs/protocol.md §6.2, §6.1 step 4).
func (s *Storage) catchUp(ctx context.Context, ss *session, server stack.Tid) error {
	s.mu.Lock()
	seen := s.connected
	replace := s.replace
	s.mu.Unlock()
	last := s.lastSeen()
	var ev *stack.Event
	switch {
	case server < last && seen && replace:
		s.cache.rewind(server)
		s.evMu.Lock()
		s.rewound, s.remoteLast = true, server
		s.evMu.Unlock()
		s.log.WithFields(logrus.Fields{"server": server.String(), "seen": last.String()}).Warn("accepted a replacement server behind the last transaction seen; dropped the load cache")
	case !seen || server == last:
		// First connection: nothing was loaded through this node yet, so
		// nothing can be stale; the first event starts at the server's tid.
		if server > last {
			ev = &stack.Event{Tid: server}
		}
	case server < last:
		return fmt.Errorf("the server's last transaction %s is older than %s, the last this node has seen (restored from a backup, or a lagging replica?); refusing it", server, last)
	default:
		oids, err := s.missed(ctx, ss, last, server)
		if err != nil {
			return err
		}
		if oids != nil {
			oids = dedup(oids)
		}
		ev = &stack.Event{Tid: server, Oids: oids}
	}
	s.cache.setLast(server)
	if ev != nil {
		if ev.Oids == nil && seen {
			s.dropCaches(ev.Tid)
			ev.Reset = true
		}
		if ev.Oids != nil {
			s.cache.invalidate(ev.Tid, ev.Oids, false)
		}
		s.publish(*ev)
	}
	// AcceptReplacement is good for one connection: a later server that
	// is behind is refused again.
	s.mu.Lock()
	s.replace = false
	s.mu.Unlock()
	// Invalidations queued meanwhile: those after the server's tid, in order.
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, q := range ss.queued {
		if q.Tid > server {
			s.foreign(q)
		}
	}
	ss.queued = nil
	ss.verifying = false
	return nil
}

// missed returns the oids changed by the commits after last up to server:
// from getInvalidations, or, when the server's queue does not reach back,
// by iterating the remote storage. nil means nobody can tell.
func (s *Storage) missed(ctx context.Context, ss *session, last, server stack.Tid) ([]stack.Oid, error) {
	r, err := ss.c.Call(ctx, "getInvalidations", last)
	if err != nil {
		return nil, fmt.Errorf("getInvalidations: %w", err)
	}
	if r != nil {
		pair, ok := zeoproto.Seq(r)
		if !ok || len(pair) != 2 {
			return nil, fmt.Errorf("getInvalidations returned %s", zeoproto.TypeName(r))
		}
		list, _ := zeoproto.Seq(pair[1])
		oids := make([]stack.Oid, 0, len(list))
		for i := range list {
			o, err := zeoproto.Args(list).Oid(i)
			if err != nil {
				return nil, fmt.Errorf("getInvalidations result: %w", err)
			}
			oids = append(oids, o)
		}
		return oids, nil
	}
	// The server's queue does not reach back to last: iterate.
	info, err := fetchInfo(ctx, ss.c)
	if err == nil && info.interfaces["IStorageIteration"] {
		oids, err := iterateOids(ctx, ss.c, last+1, server)
		if err == nil {
			s.log.WithFields(logrus.Fields{"from": last.String(), "to": server.String(), "oids": len(oids)}).Warn("server could not list the invalidations missed while disconnected; found them by iterating its storage")
			return oids, nil
		}
		s.log.WithError(err).Warn("iterating the remote storage for missed invalidations failed")
	}
	return nil, nil
}

// iterateOids collects the oids of the transactions start..stop.
func iterateOids(ctx context.Context, c *zeoproto.Client, start, stop stack.Tid) ([]stack.Oid, error) {
	it := &txnIter{c: c}
	if err := it.start(ctx, start, stop); err != nil {
		return nil, err
	}
	defer it.Close()
	oids := []stack.Oid{}
	for {
		rec, ok, err := it.next(ctx)
		if err != nil || !ok {
			return oids, err
		}
		for _, r := range rec.Records {
			oids = append(oids, r.Oid)
		}
	}
}

// dropCaches handles a reconnection after which nobody can tell what
// changed: the load cache is emptied, and watchers get a Reset event.
func (s *Storage) dropCaches(tid stack.Tid) {
	s.cache.clear()
	s.log.WithField("tid", tid.String()).Warn("cannot tell which objects changed while disconnected (server's invalidation queue too short and no iteration); dropped the load cache and told watchers to drop theirs")
}

// handle receives the server's asynchronous messages on the connection's
// reader goroutine.
func (ss *session) handle(m zeoproto.Message) {
	args, err := m.CallArgs()
	if err != nil {
		ss.s.log.WithError(err).WithField("message", m.Name).Warn("malformed message from the server")
		return
	}
	switch m.Name {
	case "invalidateTransaction":
		tid, err := args.Tid(0)
		var oids []stack.Oid
		if err == nil && len(args) < 2 {
			err = errors.New("no oid list")
		}
		if err == nil {
			list, _ := zeoproto.Seq(args[1])
			for i := range list {
				var o stack.Oid
				if o, err = zeoproto.Args(list).Oid(i); err != nil {
					break
				}
				oids = append(oids, o)
			}
		}
		if err != nil {
			ss.s.log.WithError(err).Warn("malformed invalidateTransaction")
			return
		}
		ev := stack.Event{Tid: tid, Oids: oids}
		ss.mu.Lock()
		if ss.verifying {
			ss.queued = append(ss.queued, ev)
		} else {
			ss.s.foreign(ev)
		}
		ss.mu.Unlock()
	case "info":
		if len(args) == 1 {
			if d, ok := args[0].(zeoproto.Dict); ok {
				s := ss.s
				s.mu.Lock()
				s.info.length, s.info.size = infoSizes(d, s.info.length, s.info.size)
				s.mu.Unlock()
			}
		}
	case "receiveBlobStart", "receiveBlobChunk", "receiveBlobStop":
		ss.receiveBlob(m.Name, args)
	default:
		ss.s.log.WithField("message", m.Name).Warn("unknown message from the server; ignored")
	}
}

// foreign applies another client's commit: the cache first, then the
// event (held back while our own tpc_finish is in flight, so that events
// stay in tid order).
func (s *Storage) foreign(ev stack.Event) {
	s.cache.invalidate(ev.Tid, ev.Oids, true)
	s.evMu.Lock()
	defer s.evMu.Unlock()
	if s.finishing {
		s.held = append(s.held, ev)
		return
	}
	s.publishLocked(ev)
}

// publish hands an event to the watchers.
func (s *Storage) publish(ev stack.Event) {
	s.evMu.Lock()
	defer s.evMu.Unlock()
	s.publishLocked(ev)
}

func (s *Storage) publishLocked(ev stack.Event) {
	if s.rewound {
		if ev.Tid <= s.notifier.Last() {
			s.remoteLast = max(s.remoteLast, ev.Tid)
			return
		}
		s.rewound = false
	}
	if err := s.notifier.Publish(ev); err != nil {
		s.log.WithError(err).Error("event out of order; dropped")
	}
}

// beginFinish holds foreign events until endFinish.
func (s *Storage) beginFinish() {
	s.evMu.Lock()
	s.finishing = true
	s.evMu.Unlock()
}

// endFinish publishes our commit (if any) and then the held events.
func (s *Storage) endFinish(own *stack.Event) {
	s.evMu.Lock()
	defer s.evMu.Unlock()
	if own != nil {
		s.publishLocked(*own)
	}
	for _, ev := range s.held {
		if s.rewound || ev.Tid > s.notifier.Last() {
			s.publishLocked(ev)
		}
	}
	s.held = nil
	s.finishing = false
}

// current returns the registered session, or fails at once: ErrClosed
// after Close, a *zeoproto.DisconnectedError naming the address while
// disconnected.
func (s *Storage) current() (*session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, stack.ErrClosed
	}
	if s.sess == nil {
		addr := s.lastAddr
		if addr == "" {
			addr = s.addrList()
		}
		why := errors.New("not connected, reconnecting")
		if s.lastErr != nil {
			why = fmt.Errorf("not connected, reconnecting (last error: %v)", s.lastErr)
		}
		return nil, &zeoproto.DisconnectedError{Addr: addr, Err: why}
	}
	return s.sess, nil
}

// opErr wraps err at the node boundary.
func (s *Storage) opErr(op string, oid *stack.Oid, tid *stack.Tid, err error) error {
	if err == nil {
		return nil
	}
	return &stack.OpError{Node: s.path, Op: op, Oid: oid, Tid: tid, Err: err}
}

// call makes a synchronous call on the current session.
func (s *Storage) call(ctx context.Context, name string, args ...any) (any, error) {
	ss, err := s.current()
	if err != nil {
		return nil, err
	}
	return ss.c.Call(ctx, name, args...)
}

// LoadBefore implements stack.Storage (loadBefore), through the cache.
func (s *Storage) LoadBefore(ctx context.Context, oid stack.Oid, before stack.Tid) (stack.Revision, error) {
	ss, err := s.current()
	if err != nil {
		return stack.Revision{}, s.opErr("loadBefore", &oid, &before, err)
	}
	if rev, ok := s.cache.load(oid, before); ok {
		return rev, nil
	}
	gen := s.cache.generation()
	rev, err := ss.c.LoadBefore(ctx, oid, before)
	if err != nil {
		return stack.Revision{}, s.opErr("loadBefore", &oid, &before, err)
	}
	if rev.Found() {
		s.cache.store(oid, before, rev, gen)
	}
	return rev, nil
}

// LoadSerial implements stack.Storage (loadSerial).
func (s *Storage) LoadSerial(ctx context.Context, oid stack.Oid, serial stack.Tid) ([]byte, error) {
	r, err := s.call(ctx, "loadSerial", oid, serial)
	if err != nil {
		return nil, s.opErr("loadSerial", &oid, &serial, err)
	}
	b, ok := zeoproto.AsBytes(r)
	if !ok {
		return nil, s.opErr("loadSerial", &oid, &serial, fmt.Errorf("server returned %s, want bytes", zeoproto.TypeName(r)))
	}
	return b, nil
}

// History implements stack.Storage (history).
func (s *Storage) History(ctx context.Context, oid stack.Oid, size int) ([]stack.HistoryEntry, error) {
	r, err := s.call(ctx, "history", oid, size)
	if err != nil {
		return nil, s.opErr("history", &oid, nil, err)
	}
	list, ok := zeoproto.Seq(r)
	if !ok {
		return nil, s.opErr("history", &oid, nil, fmt.Errorf("server returned %s, want a list", zeoproto.TypeName(r)))
	}
	out := make([]stack.HistoryEntry, 0, len(list))
	for _, it := range list {
		d, ok := it.(zeoproto.Dict)
		if !ok {
			return nil, s.opErr("history", &oid, nil, fmt.Errorf("history entry is %s, want a dict", zeoproto.TypeName(it)))
		}
		var e stack.HistoryEntry
		tidKey := "tid"
		if _, ok := d.Get(tidKey); !ok {
			tidKey = "serial"
		}
		v, _ := d.Get(tidKey)
		b, _ := zeoproto.AsBytes(v)
		if e.Tid, err = stack.TidFromBytes(b); err != nil {
			return nil, s.opErr("history", &oid, nil, fmt.Errorf("history entry: %w", err))
		}
		e.User = dictBytes(d, "user_name")
		e.Description = dictBytes(d, "description")
		if v, ok := d.Get("size"); ok {
			n, _ := zeoproto.AsInt(v)
			e.Size = int(n)
		}
		ext := extensionOf(d, "time", "tid", "serial", "user_name", "description", "size", "version")
		if e.Extension, err = zeoproto.ExtensionFromWire(ext); err != nil {
			s.log.WithError(err).Warn("history: extension cannot be encoded; left empty")
		}
		if e.Size == 0 {
			// FileStorage reports the record's own length: 0 for a
			// backpointer (an undo), whose revision has data all the same.
			if d, err := s.LoadSerial(ctx, oid, e.Tid); err == nil {
				e.Size = len(d)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// LastTransaction implements stack.Storage: the last tid this node has
// published (the server's, as of the invalidations received), so that it
// never runs ahead of the events.
func (s *Storage) LastTransaction(ctx context.Context) (stack.Tid, error) {
	if _, err := s.current(); err != nil {
		return 0, s.opErr("lastTransaction", nil, nil, err)
	}
	return s.lastSeen(), nil
}

// NewOIDs implements stack.Storage: oids come from new_oids in batches of
// 100 and are handed out locally. The batch is dropped on reconnection (a
// restarted server may hand the same oids out again, docs/protocol.md §6.9).
func (s *Storage) NewOIDs(ctx context.Context, n int) ([]stack.Oid, error) {
	ss, err := s.current()
	if err == nil && (ss.readOnly || s.opts.ReadOnly) {
		err = stack.ErrReadOnly
	}
	if err != nil {
		return nil, s.opErr("new_oids", nil, nil, err)
	}
	s.oidMu.Lock()
	defer s.oidMu.Unlock()
	if s.oidOf != ss {
		s.oids, s.oidOf = nil, ss
	}
	for len(s.oids) < n {
		more, err := ss.c.NewOIDs(ctx)
		if err != nil {
			return nil, s.opErr("new_oids", nil, nil, err)
		}
		if len(more) == 0 {
			return nil, s.opErr("new_oids", nil, nil, errors.New("server returned no oids"))
		}
		s.oids = append(s.oids, more...)
	}
	out := append([]stack.Oid(nil), s.oids[:n]...)
	s.oids = s.oids[n:]
	return out, nil
}

// Options returns the options in force: as opened, with the keys a reload
// changed in place.
func (s *Storage) Options() Options { return *s.cfg.Load() }

// Watch implements stack.Storage.
func (s *Storage) Watch(ch chan<- stack.Event) stack.Tid { return s.notifier.Watch(ch) }

// Unwatch implements stack.Storage.
func (s *Storage) Unwatch(ch chan<- stack.Event) { s.notifier.Unwatch(ch) }

// Info implements stack.Storage (get_info) without a round trip: the name
// is the configured one or the remote storage's; length and size are those
// of the last get_info or info message (approximate, as in ZODB).
func (s *Storage) Info(ctx context.Context) (stack.Info, error) {
	if _, err := s.current(); err != nil {
		return stack.Info{}, s.opErr("get_info", nil, nil, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	info := stack.Info{Name: s.cfg.Load().Name, Length: s.info.length, Size: s.info.size}
	if info.Name == "" {
		info.Name = s.info.name
	}
	if info.Name == "" {
		info.Name = s.addrList() + " storage " + s.opts.Storage
	}
	return info, nil
}

// Capabilities implements stack.Storage: what the remote storage offers
// (get_info of the last connection). Blobs also need blob-dir; pack is
// always available (every ZEO storage has it).
func (s *Storage) Capabilities() stack.Capabilities {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.info.interfaces
	ro := s.opts.ReadOnly || (s.sess != nil && s.sess.readOnly)
	return stack.Capabilities{
		ReadOnly:   ro,
		Iterate:    in["IStorageIteration"],
		RecordIter: s.info.recordIter,
		Restore:    in["IStorageRestoreable"] && !ro,
		Undo:       s.info.undo && in["IStorageUndoable"],
		Pack:       s.connected,
		Blobs:      in["IBlobStorage"] && s.blobs != nil,
		Delete:     in["IExternalGC"] && !ro,
	}
}

// Close implements stack.Storage: it closes the connection, stops
// reconnecting and closes the watchers' channels.
func (s *Storage) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	ss := s.sess
	s.sess = nil
	s.mu.Unlock()
	close(s.stop)
	if ss != nil {
		ss.c.Close()
	}
	s.wg.Wait()
	s.notifier.Close()
	return nil
}

func (s *Storage) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// dictBytes returns d[k] as bytes (str accepted), or nil.
func dictBytes(d zeoproto.Dict, k string) []byte {
	v, ok := d.Get(k)
	if !ok {
		return nil
	}
	b, _ := zeoproto.AsBytes(v)
	return b
}

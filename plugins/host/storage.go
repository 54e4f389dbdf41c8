package host

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"

	"github.com/zeoraid/zeoraid/plugins/internal/wire"
	"github.com/zeoraid/zeoraid/plugins/proto"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// Storage is a section served by a plugin process, as a stack.Storage.
// Every call is forwarded to the process. When the process dies, calls
// fail as backend failures (a RAID degrades the node) while the host
// starts it again with backoff and reopens the section; a transaction
// that was open is lost (its calls fail). After a restart the node
// compares the plugin's last transaction with the last it published: the
// same, and nothing happened; newer, and it publishes what it missed
// (found by iterating the storage, or a Reset event when it cannot
// iterate); older, and it refuses the plugin's storage until a RAID
// recovery accepts it as a replacement (AcceptReplacement).
type Storage struct {
	path    string
	node    *proto.NodeInfo
	section *proto.Section
	log     logrus.FieldLogger
	opts    Options
	caps    stack.Capabilities
	blobs   *blobCache
	// What the storage offered at its first open: Empty, and its
	// extension calls (those that only read, too).
	canEmpty             bool
	extensions, readOnly []string

	notifier *stack.Notifier
	evMu     sync.Mutex    // orders publication; guards rewound and evWake
	rewound  bool          // drop events up to the notifier's last (an accepted replacement behind it)
	evWake   chan struct{} // closed and replaced at each publication

	mu      sync.Mutex
	cur     *conn // nil while the plugin is down
	downErr error // why it is down
	refused error // the plugin's storage is behind what was published
	replace bool  // AcceptReplacement(true)
	closed  bool
	// restarts counts the plugin processes restarted (Restarts).
	restarts int64

	kick chan struct{} // wakes the supervisor (a broken conn, an accepted replacement)
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the supervisor has exited
}

// conn is one process of the node with its open storage.
type conn struct {
	proc *process
	rpc  proto.StorageClient
	mux  *mux // the Calls stream
	// nextTxn numbers the transactions opened in the process.
	nextTxn atomic.Uint64
	cancel  context.CancelFunc // ends the watch and calls streams
	// watchStream is the plugin's event stream, past its start message.
	watchStream proto.Storage_WatchClient
	broken      chan struct{}
	once        sync.Once
	cause       error
}

// fail marks c dead with its cause.
func (c *conn) fail(err error) {
	c.once.Do(func() {
		c.cause = err
		close(c.broken)
	})
}

// Open starts the plugin at path for node n and opens section in it.
func Open(ctx context.Context, path string, n *stack.Node, section *zconfig.Section, opts Options) (*Storage, error) {
	opts = opts.withDefaults()
	log := n.Log
	if log == nil {
		log = quietLog()
	}
	mount, _, _ := strings.Cut(n.Path, "/")
	s := &Storage{
		path:    path,
		node:    &proto.NodeInfo{Path: n.Path, Name: n.Name, Type: n.Type, Storage: mount},
		section: wire.Section(section),
		log:     log,
		opts:    opts,
		kick:    make(chan struct{}, 1),
		evWake:  make(chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	c, open, at0, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	blobs, err := newBlobCache(opts.TempDir, opts.BlobCacheSize)
	if err != nil {
		c.stop(s, 0)
		return nil, err
	}
	s.blobs, s.caps, s.cur = blobs, wire.CapabilitiesFrom(open.GetCapabilities()), c
	s.canEmpty = open.GetCapabilities().GetEmpty()
	s.extensions, s.readOnly = open.GetExtensions(), open.GetReadOnlyExtensions()
	s.notifier = stack.NewNotifier(at0)
	go s.watch(c)
	go s.supervise()
	return s, nil
}

// connect starts a process, opens the section in it and starts its event
// stream, returning the plugin's answer to the open and the stream's at0.
func (s *Storage) connect(ctx context.Context) (*conn, *proto.OpenResponse, stack.Tid, error) {
	p, err := startProcess(s.path, s.log, s.opts.AutoMTLS)
	if err != nil {
		return nil, nil, 0, err
	}
	c := &conn{proc: p, rpc: p.rpc, broken: make(chan struct{})}
	r, err := c.rpc.Open(ctx, &proto.OpenRequest{Node: s.node, Section: s.section})
	if err == nil {
		err = wire.Error(r.GetFailure())
	} else {
		err = wire.FromStatus(err)
	}
	if err != nil {
		c.stop(s, 0)
		return nil, nil, 0, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	stream, err := c.rpc.Watch(wctx, &proto.Empty{})
	var first *proto.EventMessage
	if err == nil {
		first, err = stream.Recv()
	}
	if err == nil && !first.GetStart() {
		err = errors.New("the plugin's event stream did not start with at0")
	}
	if err != nil {
		c.stop(s, s.opts.CloseTimeout)
		return nil, nil, 0, fmt.Errorf("plugin event stream: %w", wire.FromStatus(err))
	}
	c.watchStream = stream
	c.mux, err = newMux(wctx, c.rpc, func(err error) { s.broken(c, err) })
	if err != nil {
		c.stop(s, s.opts.CloseTimeout)
		return nil, nil, 0, fmt.Errorf("plugin call stream: %w", wire.FromStatus(err))
	}
	s.log.WithFields(logrus.Fields{"plugin": s.path, "pid": p.pid()}).Info("plugin storage open")
	return c, r, stack.Tid(first.GetTid()), nil
}

// stop ends the conn: its event stream, then the process (Close first,
// within closeTimeout; 0 skips Close).
func (c *conn) stop(s *Storage, closeTimeout time.Duration) error {
	if c.cancel != nil {
		c.cancel()
	}
	c.fail(stack.ErrClosed)
	return c.proc.stop(closeTimeout)
}

// watch publishes the events of c's stream until it ends; an end that
// the host did not ask for means the process is gone.
func (s *Storage) watch(c *conn) {
	for {
		ev, err := c.watchStream.Recv()
		if err != nil {
			select {
			case <-c.broken:
			default:
				s.broken(c, fmt.Errorf("event stream ended: %w", wire.FromStatus(err)))
			}
			return
		}
		s.publish(stack.Event{Tid: stack.Tid(ev.GetTid()), Oids: wire.OidsFrom(ev.GetOids()), Reset: ev.GetReset_()})
	}
}

// publish hands ev to the watchers, in order.
func (s *Storage) publish(ev stack.Event) {
	s.evMu.Lock()
	defer s.evMu.Unlock()
	if s.rewound {
		if ev.Tid <= s.notifier.Last() {
			return
		}
		s.rewound = false
	}
	if err := s.notifier.Publish(ev); err != nil {
		s.log.WithError(err).Error("plugin event out of order; dropped")
	}
	close(s.evWake)
	s.evWake = make(chan struct{})
}

// awaitEvent waits until the event of tid, which the plugin published
// before its Finish answered, has come through c's event stream and was
// handed to the watchers. It is bounded by ctx. If c dies first, the event
// comes with the catch-up after the restart.
func (s *Storage) awaitEvent(ctx context.Context, c *conn, tid stack.Tid) error {
	for {
		s.evMu.Lock()
		if s.notifier.Last() >= tid {
			s.evMu.Unlock()
			return nil
		}
		wake := s.evWake
		s.evMu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.broken:
			return nil
		}
	}
}

// broken records that c's process is gone, and wakes the supervisor.
func (s *Storage) broken(c *conn, cause error) {
	c.fail(cause)
	s.mu.Lock()
	if s.cur == c {
		s.cur, s.downErr = nil, cause
		s.log.WithError(cause).WithField("pid", c.proc.pid()).Error("plugin process lost; restarting it")
		// Reap what is left of it (its process group included).
		go c.stop(s, 0)
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// supervise stops broken processes and starts new ones, with backoff.
func (s *Storage) supervise() {
	defer close(s.done)
	delay := s.opts.RestartMin
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		}
		s.mu.Lock()
		cur := s.cur
		s.mu.Unlock()
		if cur != nil {
			continue
		}
		for {
			if err := s.restart(); err == nil {
				delay = s.opts.RestartMin
				break
			} else {
				s.mu.Lock()
				s.downErr = err
				s.mu.Unlock()
				s.log.WithError(err).WithField("retry_in", delay.String()).Error("restarting the plugin failed")
			}
			select {
			case <-s.stop:
				return
			case <-time.After(delay):
			case <-s.kick:
			}
			delay = min(2*delay, s.opts.RestartMax)
		}
	}
}

// restart starts a new process, reopens the section and catches the
// node's watchers up with the storage.
func (s *Storage) restart() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	c, open, at0, err := s.connect(ctx)
	if err != nil {
		return err
	}
	if caps := wire.CapabilitiesFrom(open.GetCapabilities()); caps != s.caps {
		s.log.WithFields(logrus.Fields{"was": fmt.Sprintf("%+v", s.caps), "now": fmt.Sprintf("%+v", caps)}).Warn("the restarted plugin reports other capabilities; keeping the first")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.stop(s, s.opts.CloseTimeout)
		return nil
	}
	replace := s.replace
	s.mu.Unlock()
	refused := s.catchUp(ctx, c, at0, replace)
	s.mu.Lock()
	s.cur, s.downErr, s.refused = c, nil, refused
	s.restarts++
	s.mu.Unlock()
	go s.watch(c)
	s.log.WithField("pid", c.proc.pid()).Warn("plugin restarted")
	return nil
}

// catchUp publishes what happened in the plugin's storage between the
// last event published and at0, where its new event stream starts. It
// returns an error when the storage is behind and no replacement is
// accepted.
func (s *Storage) catchUp(ctx context.Context, c *conn, at0 stack.Tid, replace bool) error {
	last := s.notifier.Last()
	switch {
	case at0 == last:
		return nil
	case at0 < last && replace:
		s.evMu.Lock()
		s.rewound = true
		s.evMu.Unlock()
		s.log.WithFields(logrus.Fields{"plugin_last": at0.String(), "seen": last.String()}).Warn("accepted a restarted plugin storage behind the last transaction seen")
		return nil
	case at0 < last:
		return fmt.Errorf("the restarted plugin's storage ends at %s, before %s, the last transaction this node published (its data was lost?); refusing it until a recovery accepts it", at0, last)
	}
	if s.caps.Iterate {
		events, err := missedEvents(ctx, c.rpc, last+1, at0)
		if err == nil {
			for _, ev := range events {
				s.publish(ev)
			}
			return nil
		}
		s.log.WithError(err).Warn("could not iterate the transactions missed while the plugin was down")
	}
	s.log.WithField("tid", at0.String()).Warn("cannot tell what changed while the plugin was down; telling watchers to drop their caches")
	s.publish(stack.Event{Tid: at0, Reset: true})
	return nil
}

// missedEvents iterates start..stop into one event per transaction.
func missedEvents(ctx context.Context, rpc proto.StorageClient, start, stop stack.Tid) ([]stack.Event, error) {
	it, err := newIterator(ctx, rpc, start, stop)
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []stack.Event
	for {
		rec, ok, err := it.Next(ctx)
		if err != nil || !ok {
			return out, err
		}
		ev := stack.Event{Tid: rec.Tid, Oids: []stack.Oid{}}
		for _, r := range rec.Records {
			ev.Oids = append(ev.Oids, r.Oid)
		}
		out = append(out, ev)
	}
}

// AcceptReplacement lets the node take a restarted plugin storage that is
// behind the last transaction it published (a RAID recovery asks, then
// compares the histories itself).
func (s *Storage) AcceptReplacement(accept bool) {
	s.mu.Lock()
	s.replace = accept
	if accept && s.refused != nil {
		s.refused = nil
		s.evMu.Lock()
		s.rewound = true
		s.evMu.Unlock()
	}
	s.mu.Unlock()
}

// errDown is the failure of a call while the plugin is not running.
type errDown struct{ cause error }

func (e *errDown) Error() string {
	if e.cause == nil {
		return "plugin process is down"
	}
	return "plugin process is down: " + e.cause.Error()
}

func (e *errDown) Unwrap() error { return e.cause }

// conn returns the running conn, or the backend failure that says why
// there is none.
func (s *Storage) conn() (*conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, stack.ErrClosed
	case s.cur == nil:
		return nil, &errDown{cause: s.downErr}
	case s.refused != nil:
		return nil, s.refused
	}
	return s.cur, nil
}

// check turns the error of a gRPC call on c into the storage's error,
// and notices a dead process: a transport failure that is not the call's
// own deadline or cancellation.
func (s *Storage) check(c *conn, err error) error {
	if err == nil {
		return nil
	}
	err = wire.FromStatus(err)
	var te *wire.TransportError
	if errors.As(err, &te) && te.Err == nil && te.Code == codes.Unavailable {
		s.broken(c, err)
	}
	return err
}

// noticeLost marks c broken when err says its Calls stream is gone.
func (s *Storage) noticeLost(c *conn, err error) {
	var te *wire.TransportError
	if errors.As(err, &te) && te.Err == nil && te.Code == codes.Unavailable {
		s.broken(c, err)
	}
}

// Close closes the plugin's storage (its own Close, within CloseTimeout),
// stops its process and its process group, and ends the watchers'
// channels.
func (s *Storage) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	c := s.cur
	s.cur = nil
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	var err error
	if c != nil {
		err = c.stop(s, s.opts.CloseTimeout)
	}
	s.notifier.Close()
	if cerr := s.blobs.remove(); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		return &stack.OpError{Node: s.node.GetPath(), Op: "close", Err: err}
	}
	return nil
}

// Capabilities are the plugin storage's, as it reported them at open.
func (s *Storage) Capabilities() stack.Capabilities { return s.caps }

// Watch registers ch for the node's events.
func (s *Storage) Watch(ch chan<- stack.Event) stack.Tid { return s.notifier.Watch(ch) }

// Unwatch stops ch.
func (s *Storage) Unwatch(ch chan<- stack.Event) { s.notifier.Unwatch(ch) }

// PID is the process id of the plugin process serving the node now, 0
// while it is down.
func (s *Storage) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return 0
	}
	return s.cur.proc.pid()
}

package raidstorage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
)

// State is a child's state (docs/raid.md §3).
type State int

// The child states.
const (
	Optimal    State = iota // in sync: reads and writes
	Degraded                // failed or disabled, with a reason
	Recovering              // being brought back by a recovery
)

func (s State) String() string {
	switch s {
	case Optimal:
		return "optimal"
	case Degraded:
		return "degraded"
	case Recovering:
		return "recovering"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// The RAID's derived statuses (raid_status).
const (
	StatusOptimal    = "optimal"
	StatusDegraded   = "degraded"
	StatusRecovering = "recovering"
	StatusFailed     = "failed"
)

// Reasons that are part of the management API besides "<method> failed:
// <error>", "could not open: <error>", "diverged at <tid>", "foreign commit
// <tid>" and "recovery failed: <error>".
const (
	ReasonMissing      = "missing transactions"
	ReasonDisabled     = "disabled by controller"
	reasonInconsistent = "inconsistent "
)

// child is one mirror. Fields after st are guarded by Storage.mu, except
// the read statistics, which are atomic.
type child struct {
	name  string
	index int
	st    stack.Storage

	state  State
	reason string
	// checkpoint is a tid the child is known to share with the RAID's
	// history (the RAID's last tid when it was degraded after being
	// optimal): a recovery compares histories from there, not from the
	// start. 0: compare everything.
	checkpoint stack.Tid
	last       stack.Tid // the child's last tid as far as the RAID knows
	// commitsAtDegrade is the RAID's commit count when the child left
	// optimal, for its lag; -1 when unknown.
	commitsAtDegrade int64
	// expect holds tids the RAID is writing to this child: any other
	// commit the child reports is foreign.
	expect map[stack.Tid]bool
	events chan stack.Event

	reads   atomic.Int64
	latency atomic.Int64 // moving average, nanoseconds; 0 before the first read

	// calls counts reads in flight on the child; idle, when set (the
	// child was removed by a reload), is closed when calls drops to 0.
	calls int
	idle  chan struct{}
}

// observe folds one read's duration into the moving average.
func (c *child) observe(d time.Duration) {
	c.reads.Add(1)
	for {
		old := c.latency.Load()
		avg := int64(d)
		if old != 0 {
			avg = old + (int64(d)-old)/8
		}
		if c.latency.CompareAndSwap(old, avg) {
			return
		}
	}
}

// Config is what Open needs: the node path, the children with their
// section names in configuration order, the options and a logger.
type Config struct {
	Path     string
	Names    []string
	Children []stack.Storage
	Options  Options
	Log      logrus.FieldLogger
}

// Storage is the RAID-1 mirror. It implements stack.Storage, every
// optional capability all its children share, and stack.Extender for the
// management calls.
type Storage struct {
	path     string
	log      logrus.FieldLogger
	opts     atomic.Pointer[Options] // a reload may replace them (options)
	children []*child
	byName   map[string]*child
	caps     stack.Capabilities
	notifier *stack.Notifier
	// commit is the RAID's commit lock: held from a transaction's vote to
	// its finish or abort, by a recovery's final catch-up, and by
	// raid_disable, so that none of them sees a commit half done.
	commit chan struct{}
	stop   chan struct{} // closed by Close: background work ends
	bg     sync.WaitGroup
	watch  sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	last    stack.Tid
	nextOid stack.Oid
	commits int64 // transactions committed since open
	packing int
	packs   int64 // packs started since open: a scrub pass that saw one is void
	rec     *recovery
	scrub   scrubState
	ck      checkpointSaver
	// autoRecoverEvery is how often auto-recover looks for a degraded
	// child (tests shorten it).
	autoRecoverEvery time.Duration
}

var (
	_ stack.Storage        = (*Storage)(nil)
	_ stack.Iterator       = (*Storage)(nil)
	_ stack.RecordIterator = (*Storage)(nil)
	_ stack.Undoer         = (*Storage)(nil)
	_ stack.Packer         = (*Storage)(nil)
	_ stack.Blobber        = (*Storage)(nil)
	_ stack.Extender       = (*Storage)(nil)
)

// Open builds the RAID over already opened children and applies the
// start-up rule of docs/raid.md §4: a child that cannot tell its last tid
// within call-timeout is degraded "could not open: …", one behind the
// highest last tid "missing transactions", one at the highest tid but with
// a different last transaction than the majority "diverged at <tid>".
// Configuration errors (options, names, a child that cannot take explicit
// tids, blob support on some children only) fail Open.
func Open(ctx context.Context, cfg Config) (*Storage, error) {
	if len(cfg.Children) == 0 {
		return nil, errors.New("a raidstorage needs at least one child storage section")
	}
	if len(cfg.Names) != len(cfg.Children) {
		return nil, fmt.Errorf("%d child names for %d children", len(cfg.Names), len(cfg.Children))
	}
	if err := cfg.Options.Validate(len(cfg.Children)); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	r := &Storage{
		path:             cfg.Path,
		log:              log,
		byName:           map[string]*child{},
		commit:           make(chan struct{}, 1),
		stop:             make(chan struct{}),
		autoRecoverEvery: 10 * time.Second,
	}
	opts := cfg.Options
	r.opts.Store(&opts)
	for i, st := range cfg.Children {
		name := cfg.Names[i]
		if name == "" {
			return nil, fmt.Errorf("child #%d has no name", i+1)
		}
		if _, dup := r.byName[name]; dup {
			return nil, fmt.Errorf("duplicate child name %q", name)
		}
		c := &child{name: name, index: i, st: st, expect: map[stack.Tid]bool{}, commitsAtDegrade: -1}
		r.children = append(r.children, c)
		r.byName[name] = c
	}
	lasts, errs := r.probe(ctx)
	// A child that cannot be reached (a remote server that is down) cannot
	// tell what it supports yet: the capabilities are those of the children
	// that answered, and Recover checks the others when they come back.
	var reached []*child
	for i, c := range r.children {
		if errs[i] == nil {
			reached = append(reached, c)
		}
	}
	if len(reached) == 0 {
		reached = r.children
	}
	blobs := 0
	for _, c := range reached {
		caps := c.st.Capabilities()
		if !caps.Restore {
			return nil, fmt.Errorf("child %q cannot be a mirror: it does not accept the RAID's tids (no restore capability)", c.name)
		}
		if err := unimplemented(c); err != nil {
			return nil, err
		}
		if caps.Blobs {
			blobs++
		}
	}
	if blobs != 0 && blobs != len(reached) {
		var without []string
		for _, c := range reached {
			if !c.st.Capabilities().Blobs {
				without = append(without, c.name)
			}
		}
		return nil, fmt.Errorf("children %q have no blob support but others do: a RAID serving blobs needs blobs on every child", without)
	}
	stores := make([]stack.Storage, len(reached))
	for i, c := range reached {
		stores[i] = c.st
	}
	r.caps = intersectCaps(stores)
	if dir := opts.StateDir; dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("state-dir: %w", err)
		}
	}
	r.start(ctx, lasts, errs)
	r.loadCheckpoints()
	r.notifier = stack.NewNotifier(r.last)
	for _, c := range r.children {
		c.events = make(chan stack.Event, 16)
		c.st.Watch(c.events)
		r.watch.Add(1)
		go r.watchChild(c)
	}
	// Always running: a reload may switch auto-recover on or off.
	r.bg.Add(1)
	go r.autoRecover()
	r.bg.Add(1)
	go r.scrubLoop()
	r.log.WithFields(logrus.Fields{"status": r.Status(), "tid": r.last.String()}).Info("RAID opened")
	return r, nil
}

// options returns the options in force.
func (r *Storage) options() Options { return *r.opts.Load() }

// capabilityError is the failure of a child that reports a capability its
// storage or its transaction does not implement: a bug of that child,
// which the RAID degrades rather than panic on.
type capabilityError struct {
	child string
	iface string // the interface missing, as stack.RestoreTxn
}

func (e *capabilityError) Error() string {
	return fmt.Sprintf("child %q reports a capability it does not implement: no %s", e.child, e.iface)
}

// implements returns v (c's storage or transaction) as T, or a
// *capabilityError naming c and T.
func implements[T any](c *child, v any) (T, error) {
	t, ok := v.(T)
	if !ok {
		return t, &capabilityError{child: c.name, iface: reflect.TypeFor[T]().String()}
	}
	return t, nil
}

// unimplemented checks that c's storage implements the interface of every
// capability it reports (its transactions can only be checked as they
// come).
func unimplemented(c *child) error {
	caps := c.st.Capabilities()
	var missing []string
	check := func(reported bool, err error) {
		var ce *capabilityError
		if reported && errors.As(err, &ce) {
			missing = append(missing, ce.iface)
		}
	}
	_, err := implements[stack.Iterator](c, c.st)
	check(caps.Iterate, err)
	_, err = implements[stack.RecordIterator](c, c.st)
	check(caps.RecordIter, err)
	_, err = implements[stack.Undoer](c, c.st)
	check(caps.Undo, err)
	_, err = implements[stack.Packer](c, c.st)
	check(caps.Pack, err)
	_, err = implements[stack.Blobber](c, c.st)
	check(caps.Blobs, err)
	if len(missing) > 0 {
		return &capabilityError{child: c.name, iface: strings.Join(missing, ", ")}
	}
	return nil
}

// intersectCaps reports what every child supports; the RAID is read-only
// when any child is.
func intersectCaps(children []stack.Storage) stack.Capabilities {
	all := stack.Capabilities{Iterate: true, RecordIter: true, Restore: true, Undo: true, Pack: true, Blobs: true, Delete: true}
	for _, s := range children {
		c := s.Capabilities()
		all.ReadOnly = all.ReadOnly || c.ReadOnly
		all.Iterate = all.Iterate && c.Iterate
		all.RecordIter = all.RecordIter && c.RecordIter
		all.Restore = all.Restore && c.Restore
		all.Undo = all.Undo && c.Undo
		all.Pack = all.Pack && c.Pack
		all.Blobs = all.Blobs && c.Blobs
		all.Delete = all.Delete && c.Delete
	}
	return all
}

// probeEvery is how often probe asks a child that is not reachable yet.
const probeEvery = 100 * time.Millisecond

// probe asks every child for its last tid in parallel. A child that fails
// with a backend failure (a remote server still connecting, or down) is
// asked again until call-timeout: "could not open / connect within
// call-timeout" (docs/raid.md §4).
func (r *Storage) probe(ctx context.Context) ([]stack.Tid, []error) {
	lasts := make([]stack.Tid, len(r.children))
	errs := make([]error, len(r.children))
	r.parallel(r.children, func(i int, c *child) {
		cctx, cancel := r.callCtx(ctx)
		defer cancel()
		for {
			lasts[i], errs[i] = c.st.LastTransaction(cctx)
			if errs[i] == nil || !stack.IsBackendFailure(errs[i]) {
				return
			}
			select {
			case <-cctx.Done():
				return
			case <-time.After(probeEvery):
			}
		}
	})
	return lasts, errs
}

// start applies the start-up rule to the children's last tids (or the
// errors asking for them) and sets the RAID's last tid and its oid
// counter.
func (r *Storage) start(ctx context.Context, lasts []stack.Tid, errs []error) {
	var max stack.Tid
	for i, c := range r.children {
		if errs[i] != nil {
			c.state, c.reason = Degraded, "could not open: "+errs[i].Error()
			continue
		}
		c.last = lasts[i]
		if c.last > max {
			max = c.last
		}
	}
	var top []*child
	for _, c := range r.children {
		switch {
		case c.state == Degraded:
		case c.last < max:
			c.state, c.reason = Degraded, ReasonMissing
		default:
			top = append(top, c)
		}
	}
	r.last = max
	if max != 0 && len(top) > 1 && r.caps.Iterate {
		// Same last tid: the last transactions must be the same too.
		sigs := make([]string, len(top))
		errs := make([]error, len(top))
		r.parallel(top, func(i int, c *child) { sigs[i], errs[i] = r.txnSignature(ctx, c, max) })
		var ok []*child
		var okSigs []string
		for i, c := range top {
			if errs[i] != nil {
				c.state, c.reason = Degraded, "could not open: "+errs[i].Error()
				continue
			}
			ok = append(ok, c)
			okSigs = append(okSigs, sigs[i])
		}
		win := majority(okSigs)
		for i, c := range ok {
			if okSigs[i] != win {
				c.state, c.reason = Degraded, "diverged at "+max.String()
			}
		}
	}
	for _, c := range r.children {
		if c.state == Degraded {
			r.log.WithFields(logrus.Fields{"child": c.name, "reason": c.reason}).Warn("child degraded at start")
		}
	}
	r.initOids(ctx)
}

// txnSignature iterates transaction tid on c and returns its signature.
func (r *Storage) txnSignature(ctx context.Context, c *child, tid stack.Tid) (string, error) {
	it, err := implements[stack.Iterator](c, c.st)
	if err != nil {
		return "", err
	}
	cctx, cancel := r.callCtx(ctx)
	defer cancel()
	ti, err := it.Iterate(cctx, tid, tid)
	if err != nil {
		return "", err
	}
	defer ti.Close()
	rec, ok, err := ti.Next(cctx)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("transaction %s not found by its iterator", tid)
	}
	return stack.TransactionHash(rec), nil
}

// initOids sets the oid counter past every optimal child's (docs/raid.md §6.1).
func (r *Storage) initOids(ctx context.Context) {
	next := make([]stack.Oid, len(r.children))
	var failed []*child
	var errs []error
	var fmu sync.Mutex
	r.parallel(r.optimal(), func(_ int, c *child) {
		cctx, cancel := r.callCtx(ctx)
		defer cancel()
		oids, err := c.st.NewOIDs(cctx, 1)
		if err == nil && len(oids) != 1 {
			err = fmt.Errorf("new_oids(1) returned %d oids", len(oids))
		}
		if err != nil {
			fmu.Lock()
			failed, errs = append(failed, c), append(errs, err)
			fmu.Unlock()
			return
		}
		next[c.index] = oids[0]
	})
	for i, c := range failed {
		if stack.IsBackendFailure(errs[i]) {
			r.degrade(c, "new_oids failed: "+errs[i].Error())
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range next {
		if o >= r.nextOid {
			r.nextOid = o
		}
	}
	if r.nextOid == 0 {
		r.nextOid = 1
	}
}

// parallel runs f for every child of cs, the first on the calling
// goroutine and each other on its own, and waits.
func (r *Storage) parallel(cs []*child, f func(i int, c *child)) {
	if len(cs) == 0 {
		return
	}
	var wg sync.WaitGroup
	for i, c := range cs[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i+1, c)
		}()
	}
	f(0, cs[0])
	wg.Wait()
}

// callCtx bounds one child call by call-timeout.
func (r *Storage) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.options().CallTimeout)
}

// optimal returns the optimal children in configuration order.
func (r *Storage) optimal() []*child {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.optimalLocked()
}

func (r *Storage) optimalLocked() []*child {
	var out []*child
	for _, c := range r.children {
		if c.state == Optimal {
			out = append(out, c)
		}
	}
	return out
}

// Status returns the RAID's derived status (docs/raid.md §3.2): recovering if a
// child is recovering, optimal if none is degraded, failed if none is
// optimal, else degraded.
func (r *Storage) Status() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.statusLocked()
}

func (r *Storage) statusLocked() string {
	var opt, deg, rec int
	for _, c := range r.children {
		switch c.state {
		case Optimal:
			opt++
		case Degraded:
			deg++
		case Recovering:
			rec++
		}
	}
	switch {
	case rec > 0:
		return StatusRecovering
	case deg == 0:
		return StatusOptimal
	case opt == 0:
		return StatusFailed
	}
	return StatusDegraded
}

// ChildState returns a child's state and reason; ok is false for an
// unknown name.
func (r *Storage) ChildState(name string) (state State, reason string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.byName[name]
	if !ok {
		return 0, "", false
	}
	return c.state, c.reason, true
}

// degrade moves c to degraded with reason, unless it already is; a
// recovering child's recovery is cancelled.
func (r *Storage) degrade(c *child, reason string) {
	r.mu.Lock()
	r.degradeLocked(c, reason)
	r.mu.Unlock()
	r.saveCheckpoints()
}

func (r *Storage) degradeLocked(c *child, reason string) {
	switch c.state {
	case Degraded:
		return
	case Optimal:
		if !isInconsistency(reason) {
			c.checkpoint = r.last
		}
		c.commitsAtDegrade = r.commits
	case Recovering:
		if r.rec != nil && r.rec.target == c {
			r.rec.cancel()
		}
	}
	c.state, c.reason = Degraded, reason
	fields := logrus.Fields{"child": c.name, "reason": reason, "status": r.statusLocked()}
	r.log.WithFields(fields).Error("child degraded")
	if err := r.writableLocked(); err != nil {
		r.log.WithFields(fields).WithError(err).Error("RAID below write-quorum")
	}
}

// isInconsistency reports reasons after which the child's history cannot
// be trusted up to the RAID's last tid.
func isInconsistency(reason string) bool {
	return len(reason) >= len(reasonInconsistent) && reason[:len(reasonInconsistent)] == reasonInconsistent
}

// failed degrades c when err from its call op is a backend failure (a
// timeout of the call included, but not the caller's own cancellation)
// and reports whether it did.
func (r *Storage) failed(ctx context.Context, c *child, op string, err error) bool {
	if !stack.IsBackendFailure(err) || ctx.Err() != nil {
		return false
	}
	r.degrade(c, op+" failed: "+err.Error())
	return true
}

// errBelowQuorum is the failure of every call in fail-mode close.
var errBelowQuorum = errors.New("fewer optimal children than write-quorum (fail-mode close)")

// errNoChild is the failure of a read when no optimal child is left.
var errNoChild = errors.New("no optimal child left: the RAID has failed")

// writableLocked returns nil when commits are allowed, ErrReadOnly below
// write-quorum in fail-mode read-only, a failure in fail-mode close.
func (r *Storage) writableLocked() error {
	n := len(r.optimalLocked())
	if n >= r.options().WriteQuorum {
		return nil
	}
	if r.options().FailMode == FailClose {
		return &stack.OpError{Node: r.path, Op: "tpc_begin", Err: errBelowQuorum}
	}
	return fmt.Errorf("%s: %d optimal children, write-quorum %d: %w", r.path, n, r.options().WriteQuorum, stack.ErrReadOnly)
}

// usable fails when the RAID is closed, or below quorum in fail-mode close.
func (r *Storage) usable(op string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.usableLocked(op)
}

func (r *Storage) usableLocked(op string) error {
	if r.closed {
		return stack.ErrClosed
	}
	if r.options().FailMode == FailClose && len(r.optimalLocked()) < r.options().WriteQuorum {
		return &stack.OpError{Node: r.path, Op: op, Err: errBelowQuorum}
	}
	return nil
}

// pickLocked chooses an optimal child not in tried by
// read-distribution.
func (r *Storage) pickLocked(tried []*child) *child {
	var buf [4]*child
	cand := buf[:0]
	for _, c := range r.children {
		if c.state == Optimal && !slices.Contains(tried, c) {
			cand = append(cand, c)
		}
	}
	if len(cand) == 0 {
		return nil
	}
	switch r.options().ReadDistribution {
	case ReadFirst:
		return cand[0]
	case ReadLatency:
		best := cand[0]
		for _, c := range cand[1:] {
			if c.latency.Load() < best.latency.Load() {
				best = c
			}
		}
		return best
	}
	return cand[rand.IntN(len(cand))]
}

// read runs f on one optimal child; on a failure it degrades that child
// and runs f again on another, until one answers or none is left.
func (r *Storage) read(ctx context.Context, op string, f func(ctx context.Context, c *child) error) error {
	var tried []*child
	for {
		r.mu.Lock()
		if err := r.usableLocked(op); err != nil {
			r.mu.Unlock()
			return err
		}
		c := r.pickLocked(tried)
		if c == nil {
			r.mu.Unlock()
			return &stack.OpError{Node: r.path, Op: op, Err: errNoChild}
		}
		c.calls++
		r.mu.Unlock()
		tried = append(tried, c)
		cctx, cancel := r.callCtx(ctx)
		begin := time.Now()
		err := f(cctx, c)
		r.mu.Lock()
		if c.calls--; c.calls == 0 && c.idle != nil {
			close(c.idle)
			c.idle = nil
		}
		r.mu.Unlock()
		cancel()
		c.observe(time.Since(begin))
		if r.failed(ctx, c, op, err) {
			continue
		}
		return err
	}
}

// visible returns the first tid past the RAID's last commit. A commit
// being finished may already be on some children and not yet on others:
// reads are bounded by it so that no reader sees a tid another child
// cannot serve yet.
func (r *Storage) visible() stack.Tid {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last + 1
}

// LoadBefore implements stack.Storage on one optimal child, with failover.
func (r *Storage) LoadBefore(ctx context.Context, oid stack.Oid, before stack.Tid) (rev stack.Revision, err error) {
	lim := r.visible()
	err = r.read(ctx, "loadBefore", func(ctx context.Context, c *child) error {
		rev, err = c.st.LoadBefore(ctx, oid, min(before, lim))
		return err
	})
	if rev.NextSerial >= lim {
		rev.NextSerial = 0
	}
	return rev, err
}

// LoadSerial implements stack.Storage on one optimal child, with failover.
func (r *Storage) LoadSerial(ctx context.Context, oid stack.Oid, serial stack.Tid) (data []byte, err error) {
	err = r.read(ctx, "loadSerial", func(ctx context.Context, c *child) error {
		data, err = c.st.LoadSerial(ctx, oid, serial)
		return err
	})
	return data, err
}

// History implements stack.Storage on one optimal child, with failover.
func (r *Storage) History(ctx context.Context, oid stack.Oid, size int) (h []stack.HistoryEntry, err error) {
	lim := r.visible()
	err = r.read(ctx, "history", func(ctx context.Context, c *child) error {
		h, err = c.st.History(ctx, oid, size)
		return err
	})
	for len(h) > 0 && h[0].Tid >= lim {
		h = h[1:]
	}
	return h, err
}

// LastTransaction implements stack.Storage: the tid of the RAID's own last
// commit, not a child call.
func (r *Storage) LastTransaction(ctx context.Context) (stack.Tid, error) {
	if err := r.usable("lastTransaction"); err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last, nil
}

// NewOIDs implements stack.Storage from the RAID's own counter.
func (r *Storage) NewOIDs(ctx context.Context, n int) ([]stack.Oid, error) {
	if err := r.usable("new_oids"); err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, &stack.StorageError{Msg: fmt.Sprintf("new_oids: negative count %d", n)}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	oids := make([]stack.Oid, n)
	for i := range oids {
		oids[i] = r.nextOid
		r.nextOid++
	}
	return oids, nil
}

// Watch implements stack.Storage: one event per RAID commit.
func (r *Storage) Watch(ch chan<- stack.Event) stack.Tid { return r.notifier.Watch(ch) }

// Unwatch implements stack.Storage.
func (r *Storage) Unwatch(ch chan<- stack.Event) { r.notifier.Unwatch(ch) }

// Info implements stack.Storage: the size and length of one optimal child,
// under the RAID's own name. With no optimal child left it answers with the name only (length and
// size unknown), so that a failed RAID can still be registered with and
// managed (zeoraid ctl asks get_info before raid_status).
func (r *Storage) Info(ctx context.Context) (info stack.Info, err error) {
	err = r.read(ctx, "getInfo", func(ctx context.Context, c *child) error {
		info, err = c.st.Info(ctx)
		return err
	})
	if errors.Is(err, errNoChild) {
		info, err = stack.Info{}, nil
	}
	info.Name = r.path
	return info, err
}

// Capabilities implements stack.Storage: what every child supports.
func (r *Storage) Capabilities() stack.Capabilities { return r.caps }

// Close implements stack.Storage. It stops a running recovery and the
// child watchers; the children themselves belong to the tree, which closes
// them after the RAID.
func (r *Storage) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	if r.rec != nil {
		r.rec.cancel()
	}
	r.mu.Unlock()
	close(r.stop)
	r.bg.Wait()
	for _, c := range r.children {
		c.st.Unwatch(c.events)
	}
	r.watch.Wait()
	r.saveCheckpoints()
	r.notifier.Close()
	r.log.Info("RAID closed")
	return nil
}

// watchChild degrades c when it reports a commit the RAID did not make
// (docs/raid.md §6.8).
func (r *Storage) watchChild(c *child) {
	defer r.watch.Done()
	for ev := range c.events {
		r.mu.Lock()
		switch {
		case c.expect[ev.Tid]:
			delete(c.expect, ev.Tid)
		case c.state == Degraded:
		case c.state == Recovering && ev.Tid <= r.last:
			// A remote child connecting (for the first time, or to a
			// server that was away) announces its last transaction, one
			// of the RAID's history or a foreign one from before: the
			// recovery compares the histories and tells.
		case ev.Tid <= c.last:
			// A late event of a transaction the RAID wrote: a child's
			// tids only increase, so a foreign commit comes after c.last.
		default:
			r.degradeLocked(c, "foreign commit "+ev.Tid.String())
		}
		r.mu.Unlock()
	}
}

// expect registers tid as one the RAID writes to c; forget undoes it.
func (r *Storage) expect(c *child, tid stack.Tid) {
	r.mu.Lock()
	c.expect[tid] = true
	r.mu.Unlock()
}

func (r *Storage) forget(c *child, tid stack.Tid) {
	r.mu.Lock()
	delete(c.expect, tid)
	r.mu.Unlock()
}

// majority returns the most frequent value of sigs; a tie goes to the
// value seen first (configuration order).
func majority(sigs []string) string {
	count := map[string]int{}
	best := ""
	for _, s := range sigs {
		count[s]++
	}
	bestN := 0
	for _, s := range sigs {
		if count[s] > bestN {
			best, bestN = s, count[s]
		}
	}
	return best
}

// Iterate implements stack.Iterator on one optimal child; when that child
// fails mid-way the iteration goes on from the next tid on another.
func (r *Storage) Iterate(ctx context.Context, start, stop stack.Tid) (stack.TxnIterator, error) {
	if !r.caps.Iterate {
		return nil, stack.ErrNotSupported
	}
	it := &iterator{r: r, start: start, stop: stop}
	if err := it.open(ctx); err != nil {
		return nil, err
	}
	return it, nil
}

// iterator is a child's iterator that fails over.
type iterator struct {
	r           *Storage
	start, stop stack.Tid
	c           *child
	ti          stack.TxnIterator
	done        bool
}

func (it *iterator) open(ctx context.Context) error {
	return it.r.read(ctx, "iterator", func(cctx context.Context, c *child) error {
		i, err := implements[stack.Iterator](c, c.st)
		if err != nil {
			return err
		}
		// The iterator outlives this call: it gets ctx, not the bounded one.
		if err := cctx.Err(); err != nil {
			return err
		}
		ti, err := i.Iterate(ctx, it.start, it.stop)
		if err != nil {
			return err
		}
		it.ti, it.c = ti, c
		return nil
	})
}

// Next implements stack.TxnIterator.
func (it *iterator) Next(ctx context.Context) (stack.TxnRecord, bool, error) {
	for {
		if it.done {
			return stack.TxnRecord{}, false, nil
		}
		cctx, cancel := it.r.callCtx(ctx)
		rec, ok, err := it.ti.Next(cctx)
		cancel()
		if err == nil {
			if !ok {
				it.done = true
			} else {
				it.start = rec.Tid + 1
			}
			return rec, ok, nil
		}
		if !it.r.failed(ctx, it.c, "iterator", err) {
			return stack.TxnRecord{}, false, err
		}
		_ = it.ti.Close()
		if err := it.open(ctx); err != nil {
			return stack.TxnRecord{}, false, err
		}
	}
}

// Close implements stack.TxnIterator.
func (it *iterator) Close() error { return it.ti.Close() }

// RecordIterNext implements stack.RecordIterator on one optimal child.
func (r *Storage) RecordIterNext(ctx context.Context, from stack.Oid) (rec stack.DataRecord, next stack.Oid, more bool, err error) {
	if !r.caps.RecordIter {
		return rec, 0, false, stack.ErrNotSupported
	}
	err = r.read(ctx, "record_iternext", func(ctx context.Context, c *child) error {
		ri, err := implements[stack.RecordIterator](c, c.st)
		if err != nil {
			return err
		}
		rec, next, more, err = ri.RecordIterNext(ctx, from)
		return err
	})
	return rec, next, more, err
}

// UndoLog implements stack.Undoer on one optimal child.
func (r *Storage) UndoLog(ctx context.Context, first, last int, match func(stack.UndoInfo) bool) (log []stack.UndoInfo, err error) {
	if !r.caps.Undo {
		return nil, stack.ErrNotSupported
	}
	err = r.read(ctx, "undoLog", func(ctx context.Context, c *child) error {
		u, err := implements[stack.Undoer](c, c.st)
		if err != nil {
			return err
		}
		log, err = u.UndoLog(ctx, first, last, match)
		return err
	})
	return log, err
}

// LoadBlob implements stack.Blobber on one optimal child.
func (r *Storage) LoadBlob(ctx context.Context, oid stack.Oid, serial stack.Tid) (path string, err error) {
	if !r.caps.Blobs {
		return "", stack.ErrNotSupported
	}
	err = r.read(ctx, "loadBlob", func(ctx context.Context, c *child) error {
		b, err := implements[stack.Blobber](c, c.st)
		if err != nil {
			return err
		}
		path, err = b.LoadBlob(ctx, oid, serial)
		return err
	})
	return path, err
}

// BlobTempDir implements stack.Blobber: the first child's staging
// directory; the RAID links or copies staged files into every other
// child's at vote.
func (r *Storage) BlobTempDir() string {
	if !r.caps.Blobs {
		return ""
	}
	b, ok := r.children[0].st.(stack.Blobber)
	if !ok {
		return "" // Open refuses such a child
	}
	return b.BlobTempDir()
}

// Pack implements stack.Packer on every optimal child in parallel. It is
// refused while a recovery runs (docs/raid.md §7). Pack is not bounded by
// call-timeout: packing a large storage legitimately takes long.
func (r *Storage) Pack(ctx context.Context, t time.Time, gc bool) error {
	if !r.caps.Pack {
		return stack.ErrNotSupported
	}
	if err := r.usable("pack"); err != nil {
		return err
	}
	r.mu.Lock()
	if r.rec != nil {
		name := r.rec.target.name
		r.mu.Unlock()
		return &stack.StorageError{Msg: fmt.Sprintf("pack refused: the recovery of %q is running", name)}
	}
	r.packing++
	r.packs++
	cs := r.optimalLocked()
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.packing--
		r.mu.Unlock()
	}()
	errs := make([]error, len(cs))
	r.parallel(cs, func(i int, c *child) {
		p, err := implements[stack.Packer](c, c.st)
		if err == nil {
			err = p.Pack(ctx, t, gc)
		}
		errs[i] = err
	})
	var rest []*child
	var sigs []string
	var restErrs []error
	for i, c := range cs {
		if r.failed(ctx, c, "pack", errs[i]) {
			continue
		}
		rest = append(rest, c)
		sigs = append(sigs, errSignature(errs[i]))
		restErrs = append(restErrs, errs[i])
	}
	if len(rest) == 0 {
		return &stack.OpError{Node: r.path, Op: "pack", Err: errNoChild}
	}
	win := majority(sigs)
	var result error
	for i, c := range rest {
		if sigs[i] != win {
			r.degrade(c, reasonInconsistent+"pack")
		} else if result == nil {
			result = restErrs[i]
		}
	}
	return result
}

// errSignature summarises an outcome so that children's answers can be
// compared: equal signatures mean the same answer.
func errSignature(err error) string {
	if err == nil {
		return "ok"
	}
	var (
		cs stack.Conflicts
		ce *stack.ConflictError
		rc *stack.ReadConflictError
		nf *stack.NotFoundError
		ue *stack.UndoError
		se *stack.StorageError
	)
	switch {
	case errors.As(err, &cs):
		keys := make([]string, len(cs))
		for i, c := range cs {
			keys[i] = fmt.Sprintf("%s:%s:%s", c.Oid, c.Committed, c.Read)
		}
		sort.Strings(keys)
		return fmt.Sprintf("conflicts %v", keys)
	case errors.As(err, &ce):
		return fmt.Sprintf("conflicts [%s:%s:%s]", ce.Oid, ce.Committed, ce.Read)
	case errors.As(err, &rc):
		return fmt.Sprintf("readconflict %s:%s:%s", rc.Oid, rc.Committed, rc.Read)
	case errors.As(err, &nf):
		return fmt.Sprintf("notfound %s:%s", nf.Oid, nf.Tid)
	case errors.As(err, &ue):
		return fmt.Sprintf("undo %s", ue.Oid)
	case errors.As(err, &se):
		return "storage " + se.Class
	case errors.Is(err, stack.ErrReadOnly):
		return "readonly"
	case errors.Is(err, stack.ErrNotSupported):
		return "notsupported"
	case errors.Is(err, stack.ErrTxnState):
		return "txnstate"
	}
	return "error " + err.Error()
}

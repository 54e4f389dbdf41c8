package stack

import (
	"context"
	"sync"
	"sync/atomic"
)

// Mount is the stable handle the server holds for one storage name while
// the storage behind it may be replaced by a configuration reload.
//
// It owns three things that must survive such a swap:
//
//   - the commit lock, which serialises the vote..finish window of every
//     transaction on the mount; a swap happens only while holding it, so no
//     storage transaction is ever in flight across a swap;
//   - the invalidation fan-out: while it has watchers, the mount watches
//     its current root and re-publishes the root's events to them,
//     re-subscribing to the new root on a swap (a Reset event tells the
//     watchers when the data behind the name changed, or when events could
//     have been missed);
//   - the leases of the current root to calls in flight (loads, iterators):
//     a root replaced by a swap is reported drained once every lease taken
//     on it, or on any older root, has ended, and only then may its owner
//     close it.
type Mount struct {
	name   string
	gen    atomic.Pointer[generation]
	commit chan struct{} // a one-slot semaphore: holding the token is holding the lock

	mu       sync.Mutex // guards the fan-out below
	watchers map[chan<- Event]bool
	fan      *Notifier     // the mount's own watchers; nil without any
	events   chan Event    // subscription to the current root
	fwdDone  chan struct{} // closed when the forwarder of events has ended
}

// generation is one root of a mount with the leases taken on it.
type generation struct {
	s    Storage
	prev *generation // the root this one replaced (nil for the first)

	mu      sync.Mutex
	leases  int
	retired bool
	idle    chan struct{} // closed when retired and without leases
	drained chan struct{} // closed when idle and prev drained
}

func newGeneration(s Storage, prev *generation) *generation {
	return &generation{s: s, prev: prev, idle: make(chan struct{}), drained: make(chan struct{})}
}

// NewMount returns a mount named name serving s.
func NewMount(name string, s Storage) *Mount {
	m := &Mount{name: name, commit: make(chan struct{}, 1), watchers: map[chan<- Event]bool{}}
	m.gen.Store(newGeneration(s, nil))
	return m
}

// Name is the storage name clients register with.
func (m *Mount) Name() string { return m.name }

// Storage returns the storage currently mounted, without a lease: for
// callers holding the commit lock (no swap can happen meanwhile) and for
// calls that cannot outlive the root (capabilities, names).
func (m *Mount) Storage() Storage { return m.gen.Load().s }

// Lease returns the storage currently mounted and a release function that
// must be called once when the caller no longer uses it. A root replaced
// by Swap is not reported drained while a lease on it (or on an older
// root) is held, so a load or an iterator never sees its storage closed
// under it by a reload.
func (m *Mount) Lease() (Storage, func()) {
	g, leased := m.acquire()
	if !leased {
		return g.s, func() {}
	}
	var once sync.Once
	return g.s, func() { once.Do(g.release) }
}

// Use calls f with the storage currently mounted, under a lease that ends
// when f returns: Lease for a call that is over when Use returns, without
// allocating (the server takes one for every request).
func (m *Mount) Use(f func(Storage) error) error {
	g, leased := m.acquire()
	if leased {
		defer g.release()
	}
	return f(g.s)
}

// acquire returns the current root with a lease taken on it, or, once the
// mount itself was retired (its name is no longer served), its last root
// without a lease: that storage is being closed, calls on it fail.
func (m *Mount) acquire() (g *generation, leased bool) {
	for {
		g := m.gen.Load()
		g.mu.Lock()
		if g.retired {
			g.mu.Unlock()
			if m.gen.Load() == g {
				return g, false
			}
			// Swapped after Load: the newer root is already stored.
			continue
		}
		g.leases++
		g.mu.Unlock()
		return g, true
	}
}

func (g *generation) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.leases--
	if g.retired && g.leases == 0 {
		close(g.idle)
	}
}

// retire marks g replaced and closes g.drained once g has no lease left
// and every older root is drained: a caller that leased an older root may
// have read the newer one through Storage, so leases protect every root
// younger than theirs as well.
func (g *generation) retire() {
	g.mu.Lock()
	g.retired = true
	if g.leases == 0 {
		close(g.idle)
	}
	g.mu.Unlock()
	if isClosed(g.idle) && (g.prev == nil || isClosed(g.prev.drained)) {
		close(g.drained) // already: reported before Swap returns
		return
	}
	go func() {
		if g.prev != nil {
			<-g.prev.drained
		}
		<-g.idle
		close(g.drained)
	}()
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Watch registers ch for the mount's invalidation events, like
// Storage.Watch: at0 is the last tid before the registration, and ch
// receives every later event in strictly increasing tid order, except that
// a Reset event may carry any tid (it restarts the history the watcher
// knows). The events are those of the current root, whichever it is.
func (m *Mount) Watch(ch chan<- Event) (at0 Tid) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.watchers[ch] {
		return m.fan.Last()
	}
	if m.fan == nil {
		m.events, m.fwdDone = make(chan Event, 16), make(chan struct{})
		m.fan = NewNotifier(m.gen.Load().s.Watch(m.events))
		go forward(m.fan, m.events, m.fwdDone)
	}
	m.watchers[ch] = true
	return m.fan.Watch(ch)
}

// Unwatch stops delivery to ch and closes it. When the last watcher
// leaves, the mount stops watching its root.
func (m *Mount) Unwatch(ch chan<- Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.watchers[ch] {
		return
	}
	delete(m.watchers, ch)
	m.fan.Unwatch(ch)
	if len(m.watchers) == 0 {
		m.gen.Load().s.Unwatch(m.events)
		<-m.fwdDone
		m.fan.Close()
		m.fan = nil
	}
}

// forward re-publishes one root's events into fan until the subscription
// ends. An event not newer than the last one published is dropped: right
// after a swap to a root over the same data, the new root may repeat
// commits the old one already reported.
func forward(fan *Notifier, events <-chan Event, done chan struct{}) {
	defer close(done)
	for ev := range events {
		if ev.Reset {
			fan.Reset(ev.Tid)
			continue
		}
		if ev.Tid <= fan.Last() {
			continue
		}
		_ = fan.Publish(ev) // only refused when not newer, checked above
	}
}

// LockCommit takes the mount's commit lock, waiting until it is free or ctx
// is done.
func (m *Mount) LockCommit(ctx context.Context) error {
	select {
	case m.commit <- struct{}{}:
		return nil
	default:
	}
	select {
	case m.commit <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// UnlockCommit releases the commit lock.
func (m *Mount) UnlockCommit() { <-m.commit }

// Swapped is what Swap replaced: the old root and a channel closed once no
// call uses it any more, after which its owner may close it.
type Swapped struct {
	Old     Storage
	Drained <-chan struct{}
	// Reset reports whether the mount's watchers were told to drop what
	// they know (the data changed, or events might have been missed); a
	// mount without watchers tells no one.
	Reset bool
}

// Swap replaces the mounted storage with s. It takes the commit lock,
// waiting at most until ctx is done (the caller holding it already must use
// SwapLocked). dataChanged says that s does not serve the data the old root
// served (another file, another server): the watchers then get a Reset
// event at s's last tid. Without it they get none if s's history continues
// exactly where the old root's events stopped; a reset is sent all the
// same if s is already past that point, since the commits in between
// cannot be named.
func (m *Mount) Swap(ctx context.Context, s Storage, dataChanged bool) (Swapped, error) {
	if err := m.LockCommit(ctx); err != nil {
		return Swapped{}, err
	}
	defer m.UnlockCommit()
	return m.SwapLocked(s, dataChanged), nil
}

// SwapLocked is Swap for a caller that holds the commit lock.
func (m *Mount) SwapLocked(s Storage, dataChanged bool) Swapped {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.gen.Load()
	reset := false
	if m.fan != nil {
		events := make(chan Event, 16)
		at0 := s.Watch(events)
		// End the old subscription and wait until everything it
		// delivered is published, so the decision below sees the old
		// root's last event.
		old.s.Unwatch(m.events)
		<-m.fwdDone
		reset = dataChanged || at0 > m.fan.Last()
		if reset {
			m.fan.Reset(at0)
		}
		m.events, m.fwdDone = events, make(chan struct{})
		go forward(m.fan, events, m.fwdDone)
	}
	m.gen.Store(newGeneration(s, old))
	old.retire()
	return Swapped{Old: old.s, Drained: old.drained, Reset: reset}
}

// Retire ends the mount, whose name is no longer served (a reload removed
// it), and returns a channel closed once no call holds a lease on its
// root any more; its owner then closes the storage. The caller holds the
// commit lock.
func (m *Mount) Retire() <-chan struct{} {
	g := m.gen.Load()
	g.retire()
	return g.drained
}

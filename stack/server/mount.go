package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/zeoraid/zeoraid/stack"
)

// mountState is the server's side of one mounted storage: its registered
// connections, the invalidation queue, the statistics of server_status, and
// the two locks that keep the ordering of docs/protocol.md §6.6:
//
//   - vis, the visibility lock: a load holds it shared from computing its
//     answer until the reply is queued; the invalidation fan-out holds it
//     exclusively while it queues invalidateTransaction on every
//     connection. So a reply computed before a commit became visible is
//     always written before that commit's invalidation.
//   - the Mount's commit lock, held from vote to finish or abort.
//
// Every commit, ours or foreign, reaches clients the same way: the storage
// publishes an Event, and one watcher goroutine per mount fans it out. The
// committer is excluded from its own commit's fan-out; its tpc_finish reply
// waits until the fan-out of its tid is done, so the other clients hear of
// the commit first and the committer never gets an older tid after its own.
type mountState struct {
	srv   *Server
	mount *stack.Mount
	log   logrus.FieldLogger

	vis sync.RWMutex // see above

	mu       sync.Mutex // guards the fields below
	cond     *sync.Cond // signalled when processed or finishing change
	conns    map[*conn]struct{}
	lastTid  stack.Tid    // newest tid fanned out (the clients' view)
	queue    []invalEntry // newest first, at most invalidation-queue-size
	finisher *finishing   // the commit being finished, if any
	stats    stats
	metrics  *mountMetrics

	// loads counts loadBefore calls for stats.loads without taking mu,
	// which every connection's loads would otherwise contend for.
	loads atomic.Int64

	events chan stack.Event
	done   chan struct{}
}

// invalEntry is one recent transaction kept for getInvalidations; oids nil
// marks "the queue knows nothing before this tid".
type invalEntry struct {
	tid  stack.Tid
	oids []stack.Oid
}

// finishing attributes a commit in progress to its connection, so the
// watcher can leave the committer out of its own invalidation.
type finishing struct {
	conn *conn
	tid  stack.Tid     // set when Finish returned
	done chan struct{} // closed when Finish returned
}

// stats are the counters of server_status.
type stats struct {
	loads, stores, commits, aborts, conflicts int64
	activeTxns, waiting                       int
	lockTime                                  time.Time // zero: unlocked
}

func newMountState(srv *Server, m *stack.Mount) *mountState {
	ms := &mountState{
		srv: srv, mount: m,
		log:     srv.log.WithField("storage", m.Name()),
		conns:   map[*conn]struct{}{},
		events:  make(chan stack.Event),
		done:    make(chan struct{}),
		metrics: srv.metrics.forMount(m.Name()),
	}
	ms.cond = sync.NewCond(&ms.mu)
	ms.lastTid = m.Watch(ms.events)
	ms.queue = []invalEntry{{tid: ms.lastTid}}
	go ms.watch()
	return ms
}

// close stops the watcher. The mount's fan-out, not the storage mounted
// now, is unwatched: a reload may have swapped the root since.
func (ms *mountState) close() {
	ms.mount.Unwatch(ms.events)
	<-ms.done
}

// watch fans every committed transaction out to the registered connections.
func (ms *mountState) watch() {
	defer close(ms.done)
	for ev := range ms.events {
		var committer *conn
		ms.mu.Lock()
		for ms.finisher != nil {
			f := ms.finisher
			ms.mu.Unlock()
			<-f.done
			ms.mu.Lock()
			if ms.finisher == f {
				if f.tid == ev.Tid {
					committer = f.conn
				}
				break
			}
		}
		ms.mu.Unlock()

		ms.vis.Lock()
		ms.mu.Lock()
		// A reset restarts the history, at any tid (a reload mounted other
		// data, perhaps older); every other event must be newer.
		if !ev.Reset && ev.Tid <= ms.lastTid {
			ms.mu.Unlock()
			ms.vis.Unlock()
			ms.log.WithField("tid", ev.Tid.String()).Error("storage published a tid that is not newer than the last one; ignored")
			continue
		}
		ms.lastTid = ev.Tid
		if ev.Reset {
			// Nobody knows what changed: clients must drop their caches,
			// and the only way to tell a ZEO 5 client so is to close its
			// connection; it reconnects and verifies against a queue that
			// starts here (docs/protocol.md §6.7).
			ms.queue = []invalEntry{{tid: ev.Tid}}
			conns := make([]*conn, 0, len(ms.conns))
			for c := range ms.conns {
				conns = append(conns, c)
			}
			ms.cond.Broadcast()
			ms.mu.Unlock()
			ms.vis.Unlock()
			ms.log.WithField("tid", ev.Tid.String()).Warn("storage history reset: disconnecting its clients so they drop their caches")
			for _, c := range conns {
				c.close("storage reset: caches must be dropped")
			}
			continue
		}
		ms.pushQueue(invalEntry{tid: ev.Tid, oids: dedupOids(ev.Oids)})
		targets := make([]*conn, 0, len(ms.conns))
		for c := range ms.conns {
			if c != committer {
				targets = append(targets, c)
			}
		}
		ms.cond.Broadcast()
		ms.mu.Unlock()
		for _, c := range targets {
			c.sendAsync("invalidateTransaction", ev.Tid, dedupOids(ev.Oids))
		}
		ms.vis.Unlock()
	}
}

func (ms *mountState) pushQueue(e invalEntry) {
	max := ms.srv.options().InvalidationQueueSize
	if max <= 0 {
		max = 1
	}
	ms.queue = append([]invalEntry{e}, ms.queue...)
	if len(ms.queue) > max {
		ms.queue = ms.queue[:max]
	}
}

// waitProcessed blocks until the fan-out of tid is done, or ctx ends.
func (ms *mountState) waitProcessed(ctx context.Context, tid stack.Tid) error {
	// The wake-up runs on a goroutine of its own if ctx ends: Shutdown
	// counts it from now, and it is uncounted if stopped before it ran.
	ms.srv.wg.Add(1)
	stop := context.AfterFunc(ctx, func() {
		defer ms.srv.wg.Done()
		ms.mu.Lock()
		ms.cond.Broadcast()
		ms.mu.Unlock()
	})
	defer func() {
		if stop() {
			ms.srv.wg.Done()
		}
	}()
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for ms.lastTid < tid {
		if err := ctx.Err(); err != nil {
			return err
		}
		ms.cond.Wait()
	}
	return nil
}

// register adds c to the broadcast set and returns the tid it is current
// at, atomically with respect to the fan-out.
func (ms *mountState) register(c *conn) stack.Tid {
	ms.vis.Lock()
	defer ms.vis.Unlock()
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.conns[c] = struct{}{}
	return ms.lastTid
}

func (ms *mountState) unregister(c *conn) {
	ms.mu.Lock()
	delete(ms.conns, c)
	ms.mu.Unlock()
}

// invalidations answers getInvalidations(tid) from the queue: the oids
// changed after tid and the newest tid, or ok false when the queue does not
// reach back to tid.
func (ms *mountState) invalidations(tid stack.Tid) (latest stack.Tid, oids []stack.Oid, ok bool) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if len(ms.queue) == 0 || ms.queue[len(ms.queue)-1].tid > tid {
		return 0, nil, false
	}
	seen := map[stack.Oid]bool{}
	for _, e := range ms.queue {
		if e.tid <= tid {
			break
		}
		for _, o := range e.oids {
			if !seen[o] {
				seen[o] = true
				oids = append(oids, o)
			}
		}
	}
	return ms.queue[0].tid, oids, true
}

// queueStartsAtStartup reports whether the queue still reaches back to the
// server's start (its oldest entry is the start marker), so that it misses
// older transactions only because the server has not seen them.
func (ms *mountState) queueStartsAtStartup() bool {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return len(ms.queue) > 0 && ms.queue[len(ms.queue)-1].oids == nil
}

func (ms *mountState) last() stack.Tid {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.lastTid
}

// connections returns a snapshot of the registered connections.
func (ms *mountState) connections() []*conn {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	out := make([]*conn, 0, len(ms.conns))
	for c := range ms.conns {
		out = append(out, c)
	}
	return out
}

func (ms *mountState) count(f func(*stats)) {
	ms.mu.Lock()
	f(&ms.stats)
	ms.mu.Unlock()
}

func dedupOids(oids []stack.Oid) []stack.Oid {
	seen := make(map[stack.Oid]bool, len(oids))
	out := make([]stack.Oid, 0, len(oids))
	for _, o := range oids {
		if !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	return out
}

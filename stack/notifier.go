package stack

import (
	"fmt"
	"sync"
)

// Notifier is the Watch/Unwatch fan-out every storage embeds: it hands each
// committed transaction's Event to every watcher, in strictly increasing
// tid order, without ever blocking the committer on a slow watcher.
//
// Each watcher has an unbounded queue drained by its own goroutine, so
// Publish only appends. Watch and Publish take the same mutex, so the at0
// a watcher gets and the events it then receives meet exactly: it sees every
// event with tid > at0 and no other.
//
// Lock ordering: a storage calls Publish after a commit became visible to
// loads, typically while still holding its own commit mutex (so that
// publication order equals commit order). The Notifier takes only its own
// short-lived mutexes and never calls back into the storage, so holding any
// storage lock across Publish, Watch or Unwatch is safe.
type Notifier struct {
	mu       sync.Mutex
	last     Tid
	closed   bool
	watchers map[chan<- Event]*watcher
}

// watcher is one registered channel with its pending queue and the
// goroutine that feeds the channel from it.
type watcher struct {
	ch    chan<- Event
	mu    sync.Mutex
	queue []Event
	wake  chan struct{} // buffered(1): the queue got an event
	stop  chan struct{} // closed by Unwatch or Close
	done  chan struct{} // closed when the goroutine has closed ch and exited
}

// NewNotifier returns a Notifier whose watchers start after last, the tid of
// the storage's last committed transaction (0 for an empty storage).
func NewNotifier(last Tid) *Notifier {
	return &Notifier{last: last, watchers: map[chan<- Event]*watcher{}}
}

// Last returns the tid of the last published event (or the seed).
func (n *Notifier) Last() Tid {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.last
}

// Watch registers ch and returns at0, the tid of the last event published
// before it: ch then receives exactly the events with tid > at0. Watching a
// channel that is already registered changes nothing and returns the
// current last tid. After Close, Watch closes ch at once and returns the
// last tid, so a late watcher sees an ended stream rather than hanging.
func (n *Notifier) Watch(ch chan<- Event) (at0 Tid) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		close(ch)
		return n.last
	}
	if _, dup := n.watchers[ch]; dup {
		return n.last
	}
	w := &watcher{
		ch:   ch,
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	n.watchers[ch] = w
	go w.run()
	return n.last
}

// Unwatch stops delivery to ch, drops the events still queued for it, and
// closes ch before returning. Unwatching an unknown channel does nothing.
func (n *Notifier) Unwatch(ch chan<- Event) {
	n.mu.Lock()
	w, ok := n.watchers[ch]
	delete(n.watchers, ch)
	n.mu.Unlock()
	if ok {
		close(w.stop)
		<-w.done
	}
}

// Publish queues ev for every watcher. It never blocks on a watcher. The
// Oids slice is copied once and shared, read-only, by all watchers. An
// event whose tid does not follow the last published one is refused with
// an error (a storage bug: watchers rely on strictly increasing tids);
// after Close, Publish does nothing.
func (n *Notifier) Publish(ev Event) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	if ev.Tid <= n.last {
		return fmt.Errorf("notifier: event %s does not follow the last published tid %s", ev.Tid, n.last)
	}
	n.last = ev.Tid
	ev.Oids = append([]Oid(nil), ev.Oids...)
	for _, w := range n.watchers {
		w.push(ev)
	}
	return nil
}

// Reset queues a Reset event at tid for every watcher and makes tid the
// last published one, whatever it was before: the history the watchers
// knew is void (a mount now serving other data), so the next events
// follow tid, even when tid is older than what came before.
func (n *Notifier) Reset(tid Tid) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	n.last = tid
	for _, w := range n.watchers {
		w.push(Event{Tid: tid, Reset: true})
	}
}

// Close closes every watcher's channel (dropping undelivered events) and
// waits for their goroutines to exit. Later Watch calls close their channel
// at once; later Publish calls do nothing. Close is idempotent.
func (n *Notifier) Close() {
	n.mu.Lock()
	ws := n.watchers
	n.watchers = map[chan<- Event]*watcher{}
	n.closed = true
	n.mu.Unlock()
	for _, w := range ws {
		close(w.stop)
	}
	for _, w := range ws {
		<-w.done
	}
}

func (w *watcher) push(ev Event) {
	w.mu.Lock()
	w.queue = append(w.queue, ev)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run feeds the channel from the queue until stopped, then closes it.
func (w *watcher) run() {
	defer close(w.done)
	defer close(w.ch)
	for {
		w.mu.Lock()
		q := w.queue
		w.queue = nil
		w.mu.Unlock()
		for _, ev := range q {
			select {
			case w.ch <- ev:
			case <-w.stop:
				return
			}
		}
		select {
		case <-w.wake:
		case <-w.stop:
			return
		}
	}
}

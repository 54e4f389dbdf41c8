package stack_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zeoraid/zeoraid/stack"
)

// watchedStorage is a storage that only publishes events: what a Mount
// touches of its root.
type watchedStorage struct {
	stack.Storage
	n *stack.Notifier
}

func newWatched(last stack.Tid) *watchedStorage {
	return &watchedStorage{n: stack.NewNotifier(last)}
}

func (w *watchedStorage) Watch(ch chan<- stack.Event) stack.Tid { return w.n.Watch(ch) }
func (w *watchedStorage) Unwatch(ch chan<- stack.Event)         { w.n.Unwatch(ch) }

func (w *watchedStorage) commit(t *testing.T, tid stack.Tid) {
	t.Helper()
	if err := w.n.Publish(stack.Event{Tid: tid, Oids: []stack.Oid{stack.Oid(tid)}}); err != nil {
		t.Fatal(err)
	}
}

// next receives one event or fails after a while.
func next(t *testing.T, ch <-chan stack.Event) stack.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("event channel closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	return stack.Event{}
}

func TestMountFansOutAcrossSwaps(t *testing.T) {
	a := newWatched(10)
	m := stack.NewMount("1", a)
	ch := make(chan stack.Event)
	if at0 := m.Watch(ch); at0 != 10 {
		t.Fatalf("at0 %v, want 10", at0)
	}
	a.commit(t, 11)
	if ev := next(t, ch); ev.Tid != 11 || ev.Reset {
		t.Fatalf("got %+v, want tid 11", ev)
	}

	// A root over the same data that continues where a stopped: no reset,
	// and only the new root's events from now on.
	b := newWatched(11)
	sw, err := m.Swap(context.Background(), b, false)
	if err != nil || sw.Old != a || sw.Reset {
		t.Fatalf("swap: %+v, %v", sw, err)
	}
	a.commit(t, 12) // the old root is no longer listened to
	b.commit(t, 12)
	b.commit(t, 13)
	if ev := next(t, ch); ev.Tid != 12 || ev.Reset {
		t.Fatalf("got %+v, want tid 12 from the new root", ev)
	}
	if ev := next(t, ch); ev.Tid != 13 {
		t.Fatalf("got %+v, want tid 13", ev)
	}

	// Other data, even older: one reset at its tid, then its events.
	c := newWatched(5)
	if sw, err = m.Swap(context.Background(), c, true); err != nil || !sw.Reset {
		t.Fatalf("swap to other data: %+v, %v", sw, err)
	}
	if ev := next(t, ch); ev.Tid != 5 || !ev.Reset {
		t.Fatalf("got %+v, want a reset at 5", ev)
	}
	c.commit(t, 6)
	if ev := next(t, ch); ev.Tid != 6 || ev.Reset {
		t.Fatalf("got %+v, want tid 6 after the reset", ev)
	}

	// Same data claimed, but the new root is past the last event: the
	// commits in between cannot be named, so a reset all the same.
	d := newWatched(9)
	if sw, err = m.Swap(context.Background(), d, false); err != nil || !sw.Reset {
		t.Fatalf("swap to a root ahead: %+v, %v", sw, err)
	}
	if ev := next(t, ch); ev.Tid != 9 || !ev.Reset {
		t.Fatalf("got %+v, want a reset at 9", ev)
	}
	// A watcher registered now starts at the new root's history.
	late := make(chan stack.Event, 1)
	if at0 := m.Watch(late); at0 != 9 {
		t.Fatalf("late at0 %v, want 9", at0)
	}
	// When the last watcher leaves, the mount stops watching its root:
	// nothing it started is left running.
	m.Unwatch(ch)
	m.Unwatch(late)
	if _, ok := <-ch; ok {
		t.Fatal("an unwatched channel must be closed")
	}
	goleak.VerifyNone(t)
}

func TestMountRootResetPassesThrough(t *testing.T) {
	a := newWatched(10)
	m := stack.NewMount("1", a)
	ch := make(chan stack.Event)
	m.Watch(ch)
	a.n.Reset(8)
	if ev := next(t, ch); ev.Tid != 8 || !ev.Reset {
		t.Fatalf("got %+v, want the root's reset at 8", ev)
	}
}

func TestMountSwapWaitsForTheCommitLock(t *testing.T) {
	m := stack.NewMount("1", newWatched(0))
	if err := m.LockCommit(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := m.Swap(ctx, newWatched(0), false); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("swap with the commit lock held: %v, want the deadline", err)
	}
	m.UnlockCommit()
	if _, err := m.Swap(context.Background(), newWatched(0), false); err != nil {
		t.Fatal(err)
	}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestMountLeasesHoldTheOldRoot(t *testing.T) {
	a, b, c := newWatched(0), newWatched(0), newWatched(0)
	m := stack.NewMount("1", a)
	st, releaseA := m.Lease()
	if st != a {
		t.Fatal("lease of the wrong root")
	}
	swB, err := m.Swap(context.Background(), b, false)
	if err != nil {
		t.Fatal(err)
	}
	if st, release := m.Lease(); st != b {
		t.Fatal("a lease after the swap must get the new root")
	} else {
		release()
	}
	// b is retired too, with no lease of its own; but the holder of a's
	// lease may have read b as the current root, so b is not drained
	// before a is.
	swC, err := m.Swap(context.Background(), c, false)
	if err != nil {
		t.Fatal(err)
	}
	if closed(swB.Drained) || closed(swC.Drained) {
		t.Fatal("drained while a lease on an older root is held")
	}
	releaseA()
	releaseA() // a second release is harmless
	for _, d := range []<-chan struct{}{swB.Drained, swC.Drained} {
		select {
		case <-d:
		case <-time.After(5 * time.Second):
			t.Fatal("not drained after the last lease ended")
		}
	}
}

func TestMountUnleasedRootDrainsAtOnce(t *testing.T) {
	m := stack.NewMount("1", newWatched(0))
	sw, err := m.Swap(context.Background(), newWatched(0), false)
	if err != nil {
		t.Fatal(err)
	}
	if !closed(sw.Drained) {
		t.Fatal("a root nobody leased must be drained when Swap returns")
	}
}

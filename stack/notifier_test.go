package stack

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func collect(ch <-chan Event) []Event {
	var evs []Event
	for ev := range ch {
		evs = append(evs, ev)
	}
	return evs
}

func TestNotifierDeliversAfterAt0InOrder(t *testing.T) {
	defer goleak.VerifyNone(t)
	n := NewNotifier(10)
	ch := make(chan Event)
	if at0 := n.Watch(ch); at0 != 10 {
		t.Fatalf("at0 = %s, want seed 10", at0)
	}
	// Publish never blocks, even though nobody reads ch yet.
	for tid := Tid(11); tid <= 1000; tid++ {
		if err := n.Publish(Event{Tid: tid, Oids: []Oid{Oid(tid)}}); err != nil {
			t.Fatal(err)
		}
	}
	for want := Tid(11); want <= 1000; want++ {
		ev := <-ch
		if ev.Tid != want || len(ev.Oids) != 1 || ev.Oids[0] != Oid(want) {
			t.Fatalf("got %+v, want tid %s", ev, want)
		}
	}
	n.Unwatch(ch)
	if _, ok := <-ch; ok {
		t.Fatal("channel still open after Unwatch")
	}
	n.Close()
}

func TestNotifierRefusesNonIncreasingTid(t *testing.T) {
	defer goleak.VerifyNone(t)
	n := NewNotifier(5)
	defer n.Close()
	if err := n.Publish(Event{Tid: 5}); err == nil {
		t.Fatal("Publish of tid == last succeeded")
	}
	if err := n.Publish(Event{Tid: 6}); err != nil {
		t.Fatal(err)
	}
	if n.Last() != 6 {
		t.Fatalf("Last = %s", n.Last())
	}
}

func TestNotifierCopiesOids(t *testing.T) {
	defer goleak.VerifyNone(t)
	n := NewNotifier(0)
	ch := make(chan Event, 1)
	n.Watch(ch)
	oids := []Oid{1, 2}
	if err := n.Publish(Event{Tid: 1, Oids: oids}); err != nil {
		t.Fatal(err)
	}
	oids[0] = 99
	if ev := <-ch; ev.Oids[0] != 1 {
		t.Fatalf("watcher saw the publisher's later change: %v", ev.Oids)
	}
	n.Close()
	if _, ok := <-ch; ok {
		t.Fatal("channel open after Close")
	}
}

func TestNotifierCloseClosesAllAndLateWatch(t *testing.T) {
	defer goleak.VerifyNone(t)
	n := NewNotifier(0)
	chs := make([]chan Event, 5)
	for i := range chs {
		chs[i] = make(chan Event) // never read: Close must not hang on them
		n.Watch(chs[i])
	}
	if err := n.Publish(Event{Tid: 1}); err != nil {
		t.Fatal(err)
	}
	n.Close()
	for i, ch := range chs {
		if _, ok := <-ch; ok {
			t.Fatalf("channel %d still open after Close", i)
		}
	}
	late := make(chan Event)
	if at0 := n.Watch(late); at0 != 1 {
		t.Fatalf("late Watch at0 = %s, want 1", at0)
	}
	if _, ok := <-late; ok {
		t.Fatal("Watch after Close returned an open channel")
	}
	if err := n.Publish(Event{Tid: 2}); err != nil {
		t.Fatalf("Publish after Close: %v", err)
	}
	n.Close() // idempotent
}

func TestNotifierDuplicateWatchAndUnknownUnwatch(t *testing.T) {
	defer goleak.VerifyNone(t)
	n := NewNotifier(0)
	ch := make(chan Event, 10)
	n.Watch(ch)
	n.Watch(ch)
	n.Unwatch(make(chan Event))
	if err := n.Publish(Event{Tid: 1}); err != nil {
		t.Fatal(err)
	}
	if ev := <-ch; ev.Tid != 1 {
		t.Fatalf("got %+v", ev)
	}
	if err := n.Publish(Event{Tid: 2}); err != nil {
		t.Fatal(err)
	}
	if ev := <-ch; ev.Tid != 2 {
		t.Fatalf("double Watch: got %+v, want tid 2 once", ev)
	}
	n.Close()
	if evs := collect(ch); len(evs) != 0 {
		t.Fatalf("double Watch delivered extra events %v", evs)
	}
}

// TestNotifierWatchPublishAtomic races watchers joining against a publisher
// and checks each one sees exactly the tids after its at0, none missing and
// none duplicated.
func TestNotifierWatchPublishAtomic(t *testing.T) {
	defer goleak.VerifyNone(t)
	n := NewNotifier(0)
	const last = 2000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for tid := Tid(1); tid <= last; tid++ {
			if err := n.Publish(Event{Tid: tid}); err != nil {
				t.Error(err)
				return
			}
			if tid%100 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	errs := make(chan string, 40)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			time.Sleep(time.Duration(i) * time.Millisecond)
			ch := make(chan Event)
			at0 := n.Watch(ch)
			want := at0 + 1
			for want <= last {
				ev := <-ch
				if ev.Tid != want {
					errs <- "watcher got " + ev.Tid.String() + ", want " + want.String()
					break
				}
				want++
			}
			n.Unwatch(ch)
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	n.Close()
}

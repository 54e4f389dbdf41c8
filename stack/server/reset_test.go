package server_test

import (
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/stack"
)

// resettable is a storage whose watchers can be sent a Reset event, as a
// zeoclient does when it cannot tell what changed while disconnected.
type resettable struct {
	stack.Storage
	n *stack.Notifier
}

func (r *resettable) Watch(ch chan<- stack.Event) stack.Tid { return r.n.Watch(ch) }
func (r *resettable) Unwatch(ch chan<- stack.Event)         { r.n.Unwatch(ch) }

// A Reset event disconnects the storage's clients (so they drop their
// caches) and restarts the invalidation queue.
func TestResetDisconnectsClients(t *testing.T) {
	r := &resettable{Storage: mappingstorage.New("m", nil), n: stack.NewNotifier(0)}
	ts2 := startServerOn(t, r)
	c, _ := ts2.client(t)
	if err := r.n.Publish(stack.Event{Tid: 5, Reset: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client still connected after a Reset event")
	}
	c2, _ := ts2.client(t)
	if last, err := c2.LastTransaction(ctx10(t)); err != nil || last != 5 {
		t.Fatalf("lastTransaction after reset = %s, %v", last, err)
	}
	r2, err := c2.Call(ctx10(t), "getInvalidations", stack.Tid(1))
	if err != nil || r2 != nil {
		t.Fatalf("getInvalidations from before the reset = %v, %v; want None", r2, err)
	}
}

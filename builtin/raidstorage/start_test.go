package raidstorage_test

import (
	"strings"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/stack"
)

// A child that cannot tell its last tid at first (a remote server still
// connecting) is asked again until call-timeout: one that answers in time
// starts optimal, one that never does starts degraded "could not open".
func TestStartWaitsWithinCallTimeout(t *testing.T) {
	slow, dead := newFaulty(), newFaulty()
	slow.set("lastTransaction", fault{err: errIO})
	dead.set("lastTransaction", fault{err: errIO})
	go func() {
		time.Sleep(300 * time.Millisecond)
		slow.set("lastTransaction", fault{})
	}()
	o := opts()
	o.CallTimeout = 1500 * time.Millisecond
	began := time.Now()
	r, _ := newRAID(t, o, mapping(), slow, dead)
	if took := time.Since(began); took < o.CallTimeout {
		t.Errorf("Open took %s: it did not give the dead child call-timeout (%s)", took, o.CallTimeout)
	}
	if st, _, _ := r.ChildState("2"); st != raidstorage.Optimal {
		t.Errorf("the child that answered after 300ms is %s, want optimal", st)
	}
	if st, reason, _ := r.ChildState("3"); st != raidstorage.Degraded || !strings.HasPrefix(reason, "could not open: ") {
		t.Errorf("the child that never answered is %s %q, want degraded \"could not open: …\"", st, reason)
	}
}

// noRestore is a child whose capabilities are unknown while it is away:
// it reports none.
type noRestore struct{ *faulty }

func (n noRestore) Capabilities() stack.Capabilities { return stack.Capabilities{} }

// The capabilities are those of the children that answered at start: an
// unreachable child does not fail Open, and its recovery checks it.
func TestUnreachableChildDoesNotFailOpen(t *testing.T) {
	away := noRestore{newFaulty()}
	away.set("lastTransaction", fault{err: errIO})
	o := opts()
	o.CallTimeout = 200 * time.Millisecond
	r, _ := newRAID(t, o, mapping(), away)
	if !r.Capabilities().Restore || !r.Capabilities().Undo {
		t.Fatalf("capabilities %+v: want the reachable child's", r.Capabilities())
	}
	if st, _, _ := r.ChildState("2"); st != raidstorage.Degraded {
		t.Fatalf("the unreachable child is %s", st)
	}
	away.set("lastTransaction", fault{})
	if err := r.Recover("2", false); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, reason, _ := r.ChildState("2")
		if st == raidstorage.Degraded {
			if !strings.Contains(reason, "cannot be a mirror of this RAID: it has no restore support") {
				t.Fatalf("reason %q, want the missing restore support", reason)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the child without restore support is %s after its recovery", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

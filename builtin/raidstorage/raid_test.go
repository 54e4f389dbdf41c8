package raidstorage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/stack"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newRAID opens a RAID named main over children named 1, 2, …; the RAID
// and the children are closed at the end of the test.
func newRAID(t *testing.T, opts raidstorage.Options, children ...stack.Storage) (*raidstorage.Storage, *test.Hook) {
	t.Helper()
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	var names []string
	for i := range children {
		names = append(names, fmt.Sprint(i+1))
	}
	r, err := raidstorage.Open(context.Background(), raidstorage.Config{Path: "main", Names: names, Children: children, Options: opts, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Close()
		for _, c := range children {
			c.Close()
		}
	})
	return r, hook
}

func opts() raidstorage.Options {
	o := raidstorage.DefaultOptions()
	o.CallTimeout = 2 * time.Second
	return o
}

func mapping() *mappingstorage.Storage { return mappingstorage.New("m", nil) }

// commit stores data for each oid (at its current serial) in one
// transaction through s.
func commit(t *testing.T, s stack.Storage, data string, oids ...stack.Oid) stack.Tid {
	t.Helper()
	tid, err := tryCommit(ctxT(t), s, stack.TxnMeta{User: []byte("/ tester"), Description: []byte(data)}, data, oids...)
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	return tid
}

func tryCommit(ctx context.Context, s stack.Storage, meta stack.TxnMeta, data string, oids ...stack.Oid) (stack.Tid, error) {
	txn, err := s.Begin(ctx, meta)
	if err != nil {
		return 0, err
	}
	for _, oid := range oids {
		var serial stack.Tid
		if rev, err := s.LoadBefore(ctx, oid, stack.MaxTid); err == nil {
			serial = rev.Serial
		}
		if err := txn.Store(ctx, oid, serial, []byte(data)); err != nil {
			txn.Abort(ctx)
			return 0, err
		}
	}
	if _, err := txn.Vote(ctx); err != nil {
		txn.Abort(ctx)
		return 0, err
	}
	return txn.Finish(ctx)
}

func wantState(t *testing.T, r *raidstorage.Storage, name string, state raidstorage.State, reasonPrefix string) {
	t.Helper()
	st, reason, ok := r.ChildState(name)
	if !ok || st != state || !strings.HasPrefix(reason, reasonPrefix) {
		t.Fatalf("child %s: %s %q, want %s %q…", name, st, reason, state, reasonPrefix)
	}
}

// waitState polls until child name is in state, or fails after 30s.
func waitState(t *testing.T, r *raidstorage.Storage, name string, state raidstorage.State) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if st, _, _ := r.ChildState(name); st == state {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	st, reason, _ := r.ChildState(name)
	t.Fatalf("child %s still %s (%s), want %s", name, st, reason, state)
}

// identical checks that every pair of children has the same history up
// to last.
func identical(t *testing.T, last stack.Tid, children ...stack.Storage) {
	t.Helper()
	for i := 1; i < len(children); i++ {
		res, err := stack.CompareHistories(ctxT(t), children[0], children[i], 0, 0, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if res.Diff != nil || res.Last != last {
			t.Fatalf("child 1 and child %d: %+v (diff %+v), want identical up to %s", i+1, res, res.Diff, last)
		}
	}
}

func TestMirror(t *testing.T) {
	a, b, c := mapping(), mapping(), mapping()
	r, _ := newRAID(t, opts(), a, b, c)
	ctx := ctxT(t)
	var last stack.Tid
	for i := 0; i < 5; i++ {
		last = commit(t, r, fmt.Sprint("v", i), 1, stack.Oid(i+2))
	}
	identical(t, last, a, b, c)
	for _, ch := range []stack.Storage{a, b, c} {
		rev, err := ch.LoadBefore(ctx, 1, stack.MaxTid)
		if err != nil || string(rev.Data) != "v4" || rev.Serial != last {
			t.Fatalf("child load = %q %s, %v; want v4 at %s", rev.Data, rev.Serial, err, last)
		}
	}
	if r.Status() != raidstorage.StatusOptimal {
		t.Fatalf("status %s", r.Status())
	}
}

// A child failing (or hanging past call-timeout) at one method is
// degraded with the method's reason; the commit or read still succeeds.
func TestChildFailure(t *testing.T) {
	cases := []struct {
		method, reason string
		fault          fault
	}{
		{"tpc_begin", "tpc_begin failed: input/output error", fault{err: errIO}},
		{"store", "store failed: input/output error", fault{err: errIO}},
		{"tpc_vote", "tpc_vote failed: input/output error", fault{err: errIO}},
		{"tpc_vote", "tpc_vote failed: context deadline exceeded", fault{hang: true}},
		{"tpc_finish", "tpc_finish failed: input/output error", fault{err: errIO}},
		{"tpc_finish", "tpc_finish failed: context deadline exceeded", fault{hang: true}},
		{"loadBefore", "loadBefore failed: input/output error", fault{err: errIO}},
		{"loadBefore", "loadBefore failed: context deadline exceeded", fault{hang: true}},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			o := opts()
			o.CallTimeout = 200 * time.Millisecond
			o.ReadDistribution = raidstorage.ReadFirst
			bad := newFaulty()
			good := mapping()
			r, _ := newRAID(t, o, bad, good)
			t1 := commit(t, r, "a", 1)
			bad.set(tc.method, tc.fault)
			if tc.method == "loadBefore" {
				rev, err := r.LoadBefore(ctxT(t), 1, stack.MaxTid)
				if err != nil || string(rev.Data) != "a" {
					t.Fatalf("load = %q, %v", rev.Data, err)
				}
			} else {
				t2 := commit(t, r, "b", 1)
				if rev, err := good.LoadBefore(ctxT(t), 1, stack.MaxTid); err != nil || rev.Serial != t2 {
					t.Fatalf("healthy child: %+v, %v", rev, err)
				}
				if last, _ := r.LastTransaction(ctxT(t)); last != t2 || t2 <= t1 {
					t.Fatalf("last %s, commit %s", last, t2)
				}
			}
			wantState(t, r, "1", raidstorage.Degraded, tc.reason)
			wantState(t, r, "2", raidstorage.Optimal, "")
			if r.Status() != raidstorage.StatusDegraded {
				t.Fatalf("status %s", r.Status())
			}
			// The next commit goes on with the healthy child alone.
			commit(t, r, "c", 1)
		})
	}
}

func TestConflictUnanimous(t *testing.T) {
	a, b := mapping(), mapping()
	r, _ := newRAID(t, opts(), a, b)
	ctx := ctxT(t)
	t1 := commit(t, r, "a", 1)
	commit(t, r, "b", 1)
	txn, err := r.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Store(ctx, 1, t1, []byte("stale")); err != nil {
		t.Fatal(err)
	}
	_, err = txn.Vote(ctx)
	txn.Abort(ctx)
	var cs stack.Conflicts
	if !errors.As(err, &cs) || len(cs) != 1 || cs[0].Oid != 1 || cs[0].Read != t1 || string(cs[0].Data) != "stale" {
		t.Fatalf("vote = %v, want the conflict on oid 1", err)
	}
	if r.Status() != raidstorage.StatusOptimal {
		t.Fatalf("a unanimous conflict degraded a child: %v", r.Details())
	}
	commit(t, r, "c", 1)
}

// A child whose vote disagrees with the majority is degraded "inconsistent
// vote" and the majority's answer wins.
func TestInconsistentVote(t *testing.T) {
	odd := newFaulty()
	r, _ := newRAID(t, opts(), mapping(), odd, mapping())
	commit(t, r, "a", 1)
	odd.set("tpc_vote", fault{err: &stack.ReadConflictError{Oid: 1}})
	commit(t, r, "b", 1)
	wantState(t, r, "2", raidstorage.Degraded, "inconsistent vote")
	wantState(t, r, "1", raidstorage.Optimal, "")
}

func TestReadFailoverUntilFailed(t *testing.T) {
	o := opts()
	o.ReadDistribution = raidstorage.ReadFirst
	cs := []*faulty{newFaulty(), newFaulty(), newFaulty()}
	r, _ := newRAID(t, o, cs[0], cs[1], cs[2])
	ctx := ctxT(t)
	commit(t, r, "a", 1)
	for i, c := range cs {
		c.set("loadBefore", fault{err: errIO})
		rev, err := r.LoadBefore(ctx, 1, stack.MaxTid)
		if i < 2 {
			if err != nil || string(rev.Data) != "a" {
				t.Fatalf("after %d children died: %q, %v", i+1, rev.Data, err)
			}
			continue
		}
		if err == nil || !stack.IsBackendFailure(err) || !strings.Contains(err.Error(), "no optimal child") {
			t.Fatalf("with every child dead: %v, want a failure naming it", err)
		}
	}
	if r.Status() != raidstorage.StatusFailed {
		t.Fatalf("status %s, want failed", r.Status())
	}
	if _, err := r.Begin(ctx, stack.TxnMeta{}); !errors.Is(err, stack.ErrReadOnly) {
		t.Fatalf("begin on a failed RAID: %v, want ReadOnlyError", err)
	}
}

func TestForeignCommit(t *testing.T) {
	a, b := mapping(), mapping()
	r, _ := newRAID(t, opts(), a, b)
	commit(t, r, "a", 1)
	foreign := commit(t, b, "intruder", 7)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if st, _, _ := r.ChildState("2"); st == raidstorage.Degraded {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	wantState(t, r, "2", raidstorage.Degraded, "foreign commit "+foreign.String())
	wantState(t, r, "1", raidstorage.Optimal, "")
}

// Start-up with children in mixed states (docs/raid.md §4).
func TestStartupStates(t *testing.T) {
	ctx := ctxT(t)
	full, behind, broken, twin, other := newFaulty(), mapping(), newFaulty(), mapping(), mapping()
	t1 := commit(t, full, "a", 1)
	for _, s := range []stack.Storage{behind, twin, other} {
		if _, err := tryCommit(ctx, s, stack.TxnMeta{Tid: t1, User: []byte("/ tester"), Description: []byte("a")}, "a", 1); err != nil {
			t.Fatal(err)
		}
	}
	t2 := commit(t, full, "b", 1)
	if _, err := tryCommit(ctx, twin, stack.TxnMeta{Tid: t2, User: []byte("/ tester"), Description: []byte("b")}, "b", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := tryCommit(ctx, other, stack.TxnMeta{Tid: t2, User: []byte("/ tester"), Description: []byte("b")}, "different", 1); err != nil {
		t.Fatal(err)
	}
	broken.set("lastTransaction", fault{err: errIO})
	r, _ := newRAID(t, opts(), full, behind, broken, twin, other)
	wantState(t, r, "1", raidstorage.Optimal, "")
	wantState(t, r, "2", raidstorage.Degraded, raidstorage.ReasonMissing)
	wantState(t, r, "3", raidstorage.Degraded, "could not open: input/output error")
	wantState(t, r, "4", raidstorage.Optimal, "")
	wantState(t, r, "5", raidstorage.Degraded, "diverged at "+t2.String())
	if last, _ := r.LastTransaction(ctx); last != t2 || r.Status() != raidstorage.StatusDegraded {
		t.Fatalf("last %s status %s", last, r.Status())
	}
	d := r.Details()
	if d["1"] != "optimal" || d["2"] != "failed: missing transactions" {
		t.Fatalf("details %v", d)
	}
	// The oid counter starts past every optimal child's.
	oids, err := r.NewOIDs(ctx, 1)
	if err != nil || oids[0] <= 1 {
		t.Fatalf("new oid %v, %v", oids, err)
	}
}

func TestWriteQuorumAndFailMode(t *testing.T) {
	o := opts()
	o.WriteQuorum = 2
	r, _ := newRAID(t, o, mapping(), mapping())
	ctx := ctxT(t)
	commit(t, r, "a", 1)
	if err := r.Disable(ctx, "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Begin(ctx, stack.TxnMeta{}); !errors.Is(err, stack.ErrReadOnly) {
		t.Fatalf("begin below quorum: %v, want ReadOnlyError", err)
	}
	if _, err := r.LoadBefore(ctx, 1, stack.MaxTid); err != nil {
		t.Fatalf("read below quorum (read-only mode): %v", err)
	}
	if err := r.Recover("2", false); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, "2", raidstorage.Optimal)
	commit(t, r, "b", 1) // read-write again by itself

	o.FailMode = raidstorage.FailClose
	rc, _ := newRAID(t, o, mapping(), mapping())
	if err := rc.Disable(ctx, "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.LoadBefore(ctx, 1, stack.MaxTid); err == nil || !stack.IsBackendFailure(err) {
		t.Fatalf("read in fail-mode close: %v, want a failure", err)
	}
}

func TestManagementCalls(t *testing.T) {
	r, _ := newRAID(t, opts(), mapping(), mapping())
	ctx := ctxT(t)
	ext := r.Extensions()
	call := func(name string, args ...any) (any, error) { return ext[name](ctx, args) }
	if v, err := call("raid_status"); err != nil || v != "optimal" {
		t.Fatalf("raid_status = %v, %v", v, err)
	}
	if _, err := call("raid_disable", "9"); err == nil {
		t.Fatal("disable of an unknown child accepted")
	}
	if _, err := call("raid_recover", "1"); err == nil || !strings.Contains(err.Error(), "not degraded") {
		t.Fatalf("recover of an optimal child: %v", err)
	}
	if v, err := call("raid_disable", "2"); err != nil || v != "disabled '2'" {
		t.Fatalf("raid_disable = %v, %v", v, err)
	}
	if _, err := call("raid_disable", "1"); err == nil || !strings.Contains(err.Error(), "last optimal") {
		t.Fatalf("disable of the last optimal child: %v", err)
	}
	v, err := call("raid_details")
	if err != nil {
		t.Fatal(err)
	}
	if d := v.(map[string]any); d["1"] != "optimal" || d["2"] != "failed: disabled by controller" {
		t.Fatalf("raid_details = %v", d)
	}
	if v, err := call("raid_status"); err != nil || v != "degraded" {
		t.Fatalf("raid_status = %v, %v", v, err)
	}
	info, err := call("raid_info")
	if err != nil {
		t.Fatal(err)
	}
	ch := info.(map[string]any)["children"].(map[string]any)["2"].(map[string]any)
	if ch["state"] != "degraded" || ch["reason"] != raidstorage.ReasonDisabled || ch["lag"] != int64(0) {
		t.Fatalf("raid_info child 2 = %v", ch)
	}
	if v, err := call("raid_recover", "2"); err != nil || v != "recovering '2'" {
		t.Fatalf("raid_recover = %v, %v", v, err)
	}
	waitState(t, r, "2", raidstorage.Optimal)
	commit(t, r, "x", 1)
	v, err = call("raid_verify", "1", "2")
	if err != nil {
		t.Fatal(err)
	}
	if m := v.(map[string]any); m["identical"] != true || m["transactions"] != int64(1) {
		t.Fatalf("raid_verify = %v", m)
	}
}

func TestUndoMirrored(t *testing.T) {
	a, b := mapping(), mapping()
	r, _ := newRAID(t, opts(), a, b)
	ctx := ctxT(t)
	commit(t, r, "a1", 1)
	commit(t, r, "a2", 1, 2)
	log, err := r.UndoLog(ctx, 0, -10, nil)
	if err != nil || len(log) != 2 {
		t.Fatalf("undoLog %v, %v", log, err)
	}
	events := make(chan stack.Event, 4)
	r.Watch(events)
	defer r.Unwatch(events)
	txn, err := r.Begin(ctx, stack.TxnMeta{Description: []byte("undo")})
	if err != nil {
		t.Fatal(err)
	}
	// The children undo at vote: Undo has no oids yet, Vote has them.
	oids, err := txn.(stack.UndoTxn).Undo(ctx, log[0].ID)
	if err != nil || len(oids) != 0 {
		t.Fatalf("undo = %v, %v; want no oids before vote", oids, err)
	}
	oids, err = txn.Vote(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sortOids(oids)) != "[0x0000000000000001 0x0000000000000002]" {
		t.Fatalf("vote returned %v, want the undone oids 0x01 0x02", oids)
	}
	tid, err := txn.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev.Tid != tid || fmt.Sprint(sortOids(ev.Oids)) != "[0x0000000000000001 0x0000000000000002]" {
			t.Fatalf("undo's event = %s %v, want %s [1 2]", ev.Tid, ev.Oids, tid)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event for the undo")
	}
	identical(t, tid, a, b)
	for _, c := range []stack.Storage{a, b} {
		if rev, err := c.LoadBefore(ctx, 1, stack.MaxTid); err != nil || string(rev.Data) != "a1" || rev.Serial != tid {
			t.Fatalf("child after undo: %q %s, %v", rev.Data, rev.Serial, err)
		}
	}
	if r.Status() != raidstorage.StatusOptimal {
		t.Fatalf("status %s", r.Status())
	}
}

func TestPackOnAllChildren(t *testing.T) {
	a, b := mapping(), mapping()
	r, _ := newRAID(t, opts(), a, b)
	ctx := ctxT(t)
	t1 := commit(t, r, "a1", 1)
	commit(t, r, "a2", 1)
	time.Sleep(20 * time.Millisecond)
	if err := r.Pack(ctx, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	for _, c := range []stack.Storage{a, b} {
		if _, err := c.LoadSerial(ctx, 1, t1); err == nil {
			t.Fatal("a child kept a revision the pack removes")
		}
	}
}

func sortOids(oids []stack.Oid) []stack.Oid {
	out := slices.Clone(oids)
	slices.Sort(out)
	return out
}

// TestUndoErrorAtVote: undoing an unknown transaction fails at vote with
// the children's UndoError, degrading nobody.
func TestUndoErrorAtVote(t *testing.T) {
	a, b := mapping(), mapping()
	r, _ := newRAID(t, opts(), a, b)
	ctx := ctxT(t)
	commit(t, r, "a1", 1)
	txn, err := r.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Abort(ctx)
	if _, err := txn.(stack.UndoTxn).Undo(ctx, []byte("no such transaction")); err != nil {
		t.Fatalf("undo = %v; want the error at vote", err)
	}
	_, err = txn.Vote(ctx)
	var ue *stack.UndoError
	if !errors.As(err, &ue) {
		t.Fatalf("vote = %v, want an UndoError", err)
	}
	if r.Status() != raidstorage.StatusOptimal {
		t.Fatalf("status %s after a logical undo error: %v", r.Status(), r.Details())
	}
}

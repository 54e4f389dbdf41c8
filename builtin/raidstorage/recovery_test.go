package raidstorage_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/stack"
)

// preload commits n transactions directly on every storage of ss with the
// same tids, as a RAID would have.
func preload(t *testing.T, n int, ss ...stack.Storage) stack.Tid {
	t.Helper()
	ctx := ctxT(t)
	var tid stack.Tid
	for i := 0; i < n; i++ {
		tid = stack.NewTid(tid, time.Now())
		for _, s := range ss {
			if _, err := tryCommit(ctx, s, stack.TxnMeta{Tid: tid, User: []byte("/ loader")}, fmt.Sprint("d", i), stack.Oid(i%7+1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return tid
}

func TestRecoverEmptyChild(t *testing.T) {
	src, empty := mapping(), mapping()
	last := preload(t, 50, src)
	r, hook := newRAID(t, opts(), src, empty)
	wantState(t, r, "2", raidstorage.Degraded, raidstorage.ReasonMissing)
	if err := r.Recover("2", false); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, "2", raidstorage.Optimal)
	identical(t, last, src, empty)
	if copied := copiedCount(t, hook); copied != 50 {
		t.Fatalf("copied %d transactions, want 50", copied)
	}
	// The recovered child takes part in commits again.
	tid := commit(t, r, "after", 1)
	identical(t, tid, src, empty)
}

// copiedCount reads the number of copied transactions from the log line
// of the finished recovery.
func copiedCount(t *testing.T, hook *test.Hook) int64 {
	t.Helper()
	for _, e := range hook.AllEntries() {
		if strings.HasPrefix(e.Message, "recovery finished") {
			return e.Data["copied"].(int64)
		}
	}
	t.Fatal("no recovery finished log line")
	return 0
}

func TestRecoverBrieflyAbsentChild(t *testing.T) {
	a, b := mapping(), mapping()
	preload(t, 100, a, b)
	r, hook := newRAID(t, opts(), a, b)
	ctx := ctxT(t)
	if err := r.Disable(ctx, "2"); err != nil {
		t.Fatal(err)
	}
	var last stack.Tid
	for i := 0; i < 3; i++ {
		last = commit(t, r, fmt.Sprint("while away ", i), 1)
	}
	if err := r.Recover("2", false); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, "2", raidstorage.Optimal)
	identical(t, last, a, b)
	if copied := copiedCount(t, hook); copied != 3 {
		t.Fatalf("copied %d transactions, want only the 3 missed ones", copied)
	}
	for _, e := range hook.AllEntries() {
		if e.Message == "recovery: histories agree up to here; copying the rest" && e.Data["tid"] == "" {
			t.Fatal("no start tid logged")
		}
	}
}

func TestRecoverDivergedChildNeedsRebuild(t *testing.T) {
	ctx := ctxT(t)
	a, b := mapping(), mapping()
	t1 := preload(t, 3, a, b)
	bad, err := tryCommit(ctx, b, stack.TxnMeta{Tid: t1 + 10}, "theirs", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tryCommit(ctx, a, stack.TxnMeta{Tid: t1 + 20}, "ours", 1); err != nil {
		t.Fatal(err)
	}
	r, _ := newRAID(t, opts(), a, b)
	wantState(t, r, "2", raidstorage.Degraded, raidstorage.ReasonMissing)
	if err := r.Recover("2", false); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, "2", raidstorage.Degraded)
	wantState(t, r, "2", raidstorage.Degraded, "recovery failed: diverged at "+bad.String())
	// A rebuild starts the child over empty and copies everything.
	if err := r.Recover("2", true); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, "2", raidstorage.Optimal)
	identical(t, t1+20, a, b)
}

// restoreOnly is a child with no optional interface but restore: it
// cannot be emptied.
type restoreOnly struct{ stack.Storage }

func (restoreOnly) Capabilities() stack.Capabilities { return stack.Capabilities{Restore: true} }

// A child that cannot be emptied (a remote server) is refused a rebuild.
func TestRebuildNeedsAnEmptier(t *testing.T) {
	a, b := mapping(), mapping()
	preload(t, 2, a)
	r, _ := newRAID(t, opts(), a, restoreOnly{b})
	wantState(t, r, "2", raidstorage.Degraded, raidstorage.ReasonMissing)
	if err := r.Recover("2", true); err == nil || !strings.Contains(err.Error(), "cannot be emptied") {
		t.Fatalf("rebuild of a child that cannot be emptied: %v", err)
	}
}

func TestRecoverWhileCommitting(t *testing.T) {
	src, target := mapping(), mapping()
	preload(t, 300, src)
	r, _ := newRAID(t, opts(), src, target)
	ctx := ctxT(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var commits atomic.Int64
	for w := 0; w < 5; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := tryCommit(ctx, r, stack.TxnMeta{}, "w", stack.Oid(100+w)); err != nil {
					t.Error(err)
					return
				}
				commits.Add(1)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	if err := r.Recover("2", false); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, "2", raidstorage.Optimal)
	time.Sleep(20 * time.Millisecond) // commits go on on both children
	close(stop)
	wg.Wait()
	if commits.Load() == 0 {
		t.Fatal("no commit while recovering")
	}
	last, _ := r.LastTransaction(ctx)
	identical(t, last, src, target)
}

func TestRecoverSourceDies(t *testing.T) {
	src, other, target := newFaulty(), mapping(), mapping()
	preload(t, 40, src, other)
	r, _ := newRAID(t, opts(), src, other, target)
	src.set("next", fault{err: errIO, after: 10})
	if err := r.Recover("3", false); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, "3", raidstorage.Degraded)
	wantState(t, r, "3", raidstorage.Degraded, `recovery failed: source "1": input/output error`)
	wantState(t, r, "1", raidstorage.Degraded, "iterator failed: input/output error")
	wantState(t, r, "2", raidstorage.Optimal, "")
	// Another attempt copies from the remaining optimal child.
	if err := r.Recover("3", false); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, "3", raidstorage.Optimal)
}

func TestPackRefusedDuringRecovery(t *testing.T) {
	src, target := mapping(), newFaulty()
	preload(t, 20, src)
	r, _ := newRAID(t, opts(), src, target)
	target.set("tpc_begin", fault{slow: 20 * time.Millisecond, after: 1})
	if err := r.Recover("2", false); err != nil {
		t.Fatal(err)
	}
	var se *stack.StorageError
	if err := r.Pack(ctxT(t), time.Now(), false); !errors.As(err, &se) || !strings.Contains(err.Error(), "recovery") {
		t.Fatalf("pack during recovery: %v, want a refusal", err)
	}
	if err := r.Recover("2", false); err == nil {
		t.Fatal("a second recovery started while one runs")
	}
	target.set("tpc_begin", fault{})
	waitState(t, r, "2", raidstorage.Optimal)
	if err := r.Pack(ctxT(t), time.Now(), false); err != nil {
		t.Fatalf("pack after recovery: %v", err)
	}
}

func TestAutoRecover(t *testing.T) {
	raidstorage.SetAutoRecoverInterval(t, 20*time.Millisecond)
	o := opts()
	o.AutoRecover = true
	src, target := mapping(), mapping()
	last := preload(t, 5, src)
	r, _ := newRAID(t, o, src, target)
	waitState(t, r, "2", raidstorage.Optimal)
	identical(t, last, src, target)
	// A child disabled by the controller stays disabled.
	if err := r.Disable(context.Background(), "2"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	wantState(t, r, "2", raidstorage.Degraded, raidstorage.ReasonDisabled)
}

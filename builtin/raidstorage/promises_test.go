package raidstorage_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/stack"
)

// slowTarget is a mappingstorage whose restores each take delay: a
// recovery target slower than the clients' commits.
type slowTarget struct {
	*mappingstorage.Storage
	delay time.Duration
}

func (s slowTarget) Begin(ctx context.Context, meta stack.TxnMeta) (stack.Txn, error) {
	t, err := s.Storage.Begin(ctx, meta)
	if err != nil {
		return nil, err
	}
	return slowTxn{t, s.delay}, nil
}

type slowTxn struct {
	stack.Txn
	delay time.Duration
}

func (t slowTxn) Restore(ctx context.Context, oid stack.Oid, data []byte, prevTxn stack.Tid) error {
	time.Sleep(t.delay) // the slowness under test, not an ordering
	return t.Txn.(stack.RestoreTxn).Restore(ctx, oid, data, prevTxn)
}

// TestRecoveryConvergesWithSlowTarget: writers commit many times faster
// than the target can absorb; the recovery delays their commits (shown
// as commit_delay_ms by raid_info, and felt by the writers) and still
// finishes, with identical histories.
func TestRecoveryConvergesWithSlowTarget(t *testing.T) {
	src := mapping()
	target := slowTarget{mapping(), time.Millisecond}
	preload(t, 200, src)
	r, _ := newRAID(t, opts(), src, target)
	ctx := ctxT(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var commits atomic.Int64
	var slowest atomic.Int64 // nanoseconds
	// Each writer commits at most every 2 ms: together about five times
	// what the target restores.
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pace := time.NewTicker(2 * time.Millisecond)
			defer pace.Stop()
			for {
				select {
				case <-stop:
					return
				case <-pace.C:
				}
				began := time.Now()
				if _, err := tryCommit(ctx, r, stack.TxnMeta{}, "w", stack.Oid(100+w)); err != nil {
					t.Error(err)
					return
				}
				if d := int64(time.Since(began)); d > slowest.Load() {
					slowest.Store(d)
				}
				commits.Add(1)
			}
		}()
	}
	for commits.Load() < 500 {
		time.Sleep(time.Millisecond)
	}
	if err := r.Recover("2", false); err != nil {
		t.Fatal(err)
	}
	maxDelay := 0.0
	deadline := time.Now().Add(50 * time.Second)
	for {
		st, reason, _ := r.ChildState("2")
		if st == raidstorage.Optimal {
			break
		}
		if st == raidstorage.Degraded || time.Now().After(deadline) {
			t.Fatalf("recovery did not finish: %s %s (commits %d)", st, reason, commits.Load())
		}
		info := r.InfoMap()
		if d, _ := info["commit_delay_ms"].(float64); d > maxDelay {
			maxDelay = d
		}
		time.Sleep(2 * time.Millisecond)
	}
	during := commits.Load()
	close(stop)
	wg.Wait()
	if maxDelay <= 0 {
		t.Fatal("raid_info never showed a commit delay while the target fell behind")
	}
	if time.Duration(slowest.Load()) < time.Duration(maxDelay*float64(time.Millisecond)) {
		t.Fatalf("the slowest commit took %s, less than the delay %.1f ms raid_info showed", time.Duration(slowest.Load()), maxDelay)
	}
	if r.InfoMap()["commit_delay_ms"].(float64) != 0 {
		t.Fatal("commits still delayed after the recovery")
	}
	last, _ := r.LastTransaction(ctx)
	identical(t, last, src, target.Storage)
	t.Logf("recovery finished after %d commits; commit delay up to %.1f ms, slowest commit %s", during, maxDelay, time.Duration(slowest.Load()))
}

// TestCheckpointSavedInStateDir: with state-dir, the RAID keeps each
// child's checkpoint in a file there; a child degraded while optimal is
// saved at the RAID's last tid, and a new RAID over the same children
// (a restart) starts that child's comparison there.
func TestCheckpointSavedInStateDir(t *testing.T) {
	dir := t.TempDir()
	o := opts()
	o.StateDir = filepath.Join(dir, "state")
	a, b := mapping(), mapping()
	r, _ := newRAID(t, o, a, b)
	for i := range 5 {
		commit(t, r, "x", stack.Oid(i+1))
	}
	at, _ := r.LastTransaction(ctxT(t))
	if err := r.Disable(ctxT(t), "2"); err != nil {
		t.Fatal(err)
	}
	commit(t, r, "after", 1)
	r.Close()
	var doc struct {
		Children map[string]string `json:"children"`
	}
	path := filepath.Join(o.StateDir, "raid-main.checkpoints.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Children["2"] != at.String() {
		t.Fatalf("saved checkpoint of 2 = %q, want %s (its tid when disabled): %s", doc.Children["2"], at, data)
	}
	r2, hook := newRAID(t, o, a, b)
	wantState(t, r2, "2", raidstorage.Degraded, raidstorage.ReasonMissing)
	if err := r2.Recover("2", false); err != nil {
		t.Fatal(err)
	}
	waitState(t, r2, "2", raidstorage.Optimal)
	verified := int64(-1)
	for _, e := range hook.AllEntries() {
		if e.Message == "recovery: histories agree up to here; copying the rest" {
			verified, _ = e.Data["verified"].(int64)
		}
	}
	if verified != 1 {
		t.Fatalf("the recovery after the restart verified %d transactions, want 1 (from the checkpoint on)", verified)
	}
	last, _ := r2.LastTransaction(ctxT(t))
	identical(t, last, a, b)
}

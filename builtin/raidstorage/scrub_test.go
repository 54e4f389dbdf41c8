package raidstorage_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/stack"
)

// waitScrub polls the RAID's report until ok holds, or fails after 30s.
func waitScrub(t *testing.T, r *raidstorage.Storage, ok func(stack.ScrubReport) bool) stack.ScrubReport {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if sc := r.MirrorReport().Scrub; ok(sc) {
			return sc
		}
		time.Sleep(5 * time.Millisecond)
	}
	sc := r.MirrorReport().Scrub
	t.Fatalf("scrub did not get there: %+v", sc)
	return sc
}

// Two children that agree on their last transaction but not on an older
// one open optimal (the start-up rule compares only the last); the scrub
// finds the older difference and degrades the second child, naming the
// differing tid. A recovery compares from the start, so a plain one
// finds the divergence too; a rebuild brings the child back.
func TestScrubDegradesADifferingChild(t *testing.T) {
	ctx := ctxT(t)
	a, b := mapping(), mapping()
	t1 := commit(t, a, "one", 1)
	if _, err := tryCommit(ctx, b, stack.TxnMeta{Tid: t1, User: []byte("/ tester"), Description: []byte("one")}, "ONE", 1); err != nil {
		t.Fatal(err)
	}
	t2 := commit(t, a, "two", 2)
	if _, err := tryCommit(ctx, b, stack.TxnMeta{Tid: t2, User: []byte("/ tester"), Description: []byte("two")}, "two", 2); err != nil {
		t.Fatal(err)
	}
	o := opts()
	o.ScrubInterval = 10 * time.Millisecond
	r, hook := newRAID(t, o, a, b)
	waitState(t, r, "2", raidstorage.Degraded)
	wantState(t, r, "2", raidstorage.Degraded, "inconsistent history at "+t1.String()+": ")
	wantState(t, r, "1", raidstorage.Optimal, "")
	sc := waitScrub(t, r, func(sc stack.ScrubReport) bool { return sc.Diffs == 1 && sc.Runs > 0 })
	if sc.LastOK || sc.Verified != 0 || !sc.Enabled {
		t.Fatalf("scrub report after the difference: %+v", sc)
	}
	found := false
	for _, e := range hook.AllEntries() {
		if e.Message == "scrub found a difference" && e.Data["tid"] == t1.String() {
			found = true
		}
	}
	if !found {
		t.Fatal("the difference was not logged with its tid")
	}
	// With one optimal child the scrub has nothing to compare: it passes.
	waitScrub(t, r, func(sc stack.ScrubReport) bool { return sc.LastOK && sc.Verified == t2 })
	if err := r.Recover("2", false); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, "2", raidstorage.Degraded)
	wantState(t, r, "2", raidstorage.Degraded, "recovery failed: diverged at "+t1.String())
	if err := r.Recover("2", true); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, "2", raidstorage.Optimal)
	identical(t, t2, a, b)
}

// The scrub verifies incrementally: from the last verified tid on, up to
// the RAID's last tid, as commits go on; raid_info shows it.
func TestScrubIncremental(t *testing.T) {
	o := opts()
	o.ScrubInterval = 10 * time.Millisecond
	a, b, c := mapping(), mapping(), mapping()
	r, _ := newRAID(t, o, a, b, c)
	last := commit(t, r, "x", 1)
	waitScrub(t, r, func(sc stack.ScrubReport) bool { return sc.LastOK && sc.Verified == last })
	runs := r.MirrorReport().Scrub.Runs
	for i := range 5 {
		last = commit(t, r, "y", stack.Oid(i+2))
	}
	sc := waitScrub(t, r, func(sc stack.ScrubReport) bool { return sc.LastOK && sc.Verified == last })
	if sc.Runs <= runs || sc.Diffs != 0 {
		t.Fatalf("scrub report %+v (runs before %d)", sc, runs)
	}
	info := r.InfoMap()["scrub"].(map[string]any)
	if info["verified_tid"] != last.String() || info["enabled"] != true || info["differences"] != int64(0) {
		t.Fatalf("raid_info scrub %v", info)
	}
	for _, name := range []string{"1", "2", "3"} {
		wantState(t, r, name, raidstorage.Optimal, "")
	}
}

// Off unless configured: no pass runs.
func TestScrubOffByDefault(t *testing.T) {
	r, _ := newRAID(t, opts(), mapping(), mapping())
	commit(t, r, "x", 1)
	if sc := r.MirrorReport().Scrub; sc.Enabled || sc.Runs != 0 {
		t.Fatalf("scrub ran without scrub-interval: %+v", sc)
	}
}

// The throttle holds a comparison to scrub-rate transactions per second.
func TestScrubPacer(t *testing.T) {
	pace := raidstorage.Pacer(200)
	start := time.Now()
	for n := 1; n <= 20; n++ {
		if err := pace(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < 95*time.Millisecond {
		t.Fatalf("20 transactions at 200/s took %s, want about 100ms", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := raidstorage.Pacer(1)(ctx, 10); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("a cancelled pace returned %v", err)
	}
}

// scrub-interval and scrub-rate are checked.
func TestScrubOptionsValidate(t *testing.T) {
	o := raidstorage.DefaultOptions()
	o.ScrubInterval = -time.Second
	if err := o.Validate(2); err == nil || !strings.Contains(err.Error(), "scrub-interval") {
		t.Fatalf("negative scrub-interval: %v", err)
	}
	o = raidstorage.DefaultOptions()
	o.ScrubRate = 0
	if err := o.Validate(2); err == nil || !strings.Contains(err.Error(), "scrub-rate") {
		t.Fatalf("zero scrub-rate: %v", err)
	}
}

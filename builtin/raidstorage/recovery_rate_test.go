//go:build bench

// The recovery rate is measured only when asked for:
//
//	go test -tags bench -run TestRecoveryRate -v ./builtin/raidstorage
//
// It logs figures and asserts only that the recovery under load
// converges.

package raidstorage_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/stack"
)

// copyAndSync copies src to dst with cp and syncs the copy, the
// reference a recovery is compared with.
func copyAndSync(t *testing.T, src, dst string) time.Duration {
	t.Helper()
	began := time.Now()
	if out, err := exec.Command("cp", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if out, err := exec.Command("sync", dst).CombinedOutput(); err != nil {
		t.Fatalf("sync: %v %s", err, out)
	}
	took := time.Since(began)
	os.Remove(dst)
	return took
}

// recoverInto recovers an empty filestorage at dst from the filestorage
// at src through a RAID, while writers goroutines commit through it (one
// commit every 5 ms each), and returns how long the recovery took.
func recoverInto(t *testing.T, src, dst string, writers int) (time.Duration, int64) {
	t.Helper()
	a, err := openFile(src)
	if err != nil {
		t.Fatal(err)
	}
	b, err := openFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := newRAID(t, raidstorage.DefaultOptions(), a, b)
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var commits atomic.Int64
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pace := time.NewTicker(5 * time.Millisecond)
			defer pace.Stop()
			for {
				select {
				case <-stop:
					return
				case <-pace.C:
				}
				if _, err := tryCommit(ctx, r, stack.TxnMeta{}, "load", stack.Oid(10000+w)); err != nil {
					t.Error(err)
					return
				}
				commits.Add(1)
			}
		}()
	}
	began := time.Now()
	if err := r.Recover("2", false); err != nil {
		t.Fatal(err)
	}
	deadline := began.Add(10 * time.Minute)
	for {
		st, reason, _ := r.ChildState("2")
		if st == raidstorage.Optimal {
			break
		}
		if st == raidstorage.Degraded || time.Now().After(deadline) {
			t.Fatalf("recovery did not finish: %s %s", st, reason)
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(began)
	close(stop)
	wg.Wait()
	last, _ := r.LastTransaction(ctx)
	identical(t, last, a, b)
	r.Close()
	a.Close()
	b.Close()
	return took, commits.Load()
}

// TestRecoveryRate compares the recovery of a 200 MB Data.fs into an
// empty filestorage child (in bulk: many transactions per fsync) with
// cp and sync of the same file, measured side by side, idle and while 4
// writers commit through the RAID.
func TestRecoveryRate(t *testing.T) {
	dir := t.TempDir()
	srcPath := filepath.Join(dir, "src.fs")
	s, err := openFile(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	fillBulk(t, s, 10000) // 10,000 transactions of 4 records of 5,000 bytes
	s.Close()
	fi, err := os.Stat(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	mb := float64(fi.Size()) / 1e6
	var report string
	for round := range 2 {
		cp := copyAndSync(t, srcPath, filepath.Join(dir, "copy.fs"))
		for _, writers := range []int{0, 4} {
			dst := filepath.Join(dir, fmt.Sprintf("dst-%d-%d.fs", round, writers))
			took, commits := recoverInto(t, srcPath, dst, writers)
			os.Remove(dst)
			os.Remove(dst + ".index")
			report += fmt.Sprintf("  round %d, %d writers: cp+sync %s (%.0f MB/s); recovery %s (%.0f MB/s, %d commits meanwhile): %.0f%% of cp+sync\n",
				round+1, writers, cp.Round(time.Millisecond), mb/cp.Seconds(), took.Round(time.Millisecond), mb/took.Seconds(), commits, 100*cp.Seconds()/took.Seconds())
		}
	}
	t.Logf("recovery of a %.0f MB Data.fs into an empty filestorage child (goal: >= 50%% of cp+sync idle):\n%s", mb, report)
}

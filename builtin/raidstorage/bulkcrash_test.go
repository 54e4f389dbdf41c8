package raidstorage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/builtin/filestorage"
	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// bulkCrashEnv names the directory of a re-executed test binary that
// recovers dir/2/Data.fs from dir/1/Data.fs in bulk until it is killed
// (TestBulkRecoveryCrash).
const bulkCrashEnv = "ZEORAID_RAID_BULK_CRASH_CHILD"

func openFile(path string) (*filestorage.Storage, error) {
	return filestorage.Open(path, filestorage.Options{Path: zconfig.ExistingDirPath(path)}, nil)
}

// crashOptions are the RAID's options in the crash test: checkpoints in
// dir/state.
func crashOptions(dir string) raidstorage.Options {
	o := raidstorage.DefaultOptions()
	o.StateDir = filepath.Join(dir, "state")
	return o
}

// bulkCrashChild opens the RAID over the two Data.fs files and recovers
// child 2, then waits to be killed.
func bulkCrashChild(dir string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "child:", err); return 3 }
	src, err := openFile(filepath.Join(dir, "1", "Data.fs"))
	if err != nil {
		return fail(err)
	}
	dst, err := openFile(filepath.Join(dir, "2", "Data.fs"))
	if err != nil {
		return fail(err)
	}
	log := logrus.New()
	log.SetOutput(os.Stderr)
	r, err := raidstorage.Open(context.Background(), raidstorage.Config{Path: "main", Names: []string{"1", "2"},
		Children: []stack.Storage{src, dst}, Options: crashOptions(dir), Log: log})
	if err != nil {
		return fail(err)
	}
	if err := r.Recover("2", false); err != nil {
		return fail(err)
	}
	fmt.Println("recovering")
	for {
		if st, reason, _ := r.ChildState("2"); st != raidstorage.Recovering {
			return fail(fmt.Errorf("child 2 is %s (%s) before the kill", st, reason))
		}
		time.Sleep(time.Millisecond)
	}
}

// savedCheckpoint reads child 2's checkpoint from the state file (0 when
// none was saved).
func savedCheckpoint(t *testing.T, dir string) stack.Tid {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "state", "raid-main.checkpoints.json"))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Children map[string]string `json:"children"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(doc.Children["2"], 0, 64)
	if doc.Children["2"] != "" && err != nil {
		t.Fatal(err)
	}
	return stack.Tid(n)
}

// TestBulkRecoveryCrash kills (SIGKILL) a process whose RAID recovers
// an empty filestorage child in bulk (many transactions per fsync), twice
// in the middle of the copy. After each kill the target reopens at a
// whole transaction of the source, the saved checkpoint is within what
// it has, and the next recovery resumes from there: in the end the
// histories are identical and the last recovery compared only the
// transactions after the checkpoint.
func TestBulkRecoveryCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 30 MB and kills processes")
	}
	dir := t.TempDir()
	for _, d := range []string{"1", "2"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	srcPath, dstPath := filepath.Join(dir, "1", "Data.fs"), filepath.Join(dir, "2", "Data.fs")
	src, err := openFile(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	const txns = 1500
	fillBulk(t, src, txns)
	srcLast, _ := src.LastTransaction(context.Background())
	src.Close()
	fi, err := os.Stat(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	var prevCheckpoint stack.Tid
	for round, frac := range []float64{0.3, 0.7} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), bulkCrashEnv+"="+dir)
		var stderr limitedBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		for {
			if st, err := os.Stat(dstPath); err == nil && float64(st.Size()) > frac*float64(fi.Size()) {
				break
			}
			select {
			case err := <-exited:
				t.Fatalf("round %d: the recovering process ended by itself (%v):\n%s", round, err, stderr.String())
			case <-time.After(time.Millisecond):
			}
		}
		cmd.Process.Kill()
		<-exited

		src, err := openFile(srcPath)
		if err != nil {
			t.Fatal(err)
		}
		dst, err := openFile(dstPath)
		if err != nil {
			t.Fatalf("round %d: the target does not reopen after the kill: %v", round, err)
		}
		last, _ := dst.LastTransaction(context.Background())
		res, err := stack.CompareHistories(context.Background(), src, dst, 0, last, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if res.Diff != nil || res.Last != last || last == 0 || last >= srcLast {
			t.Fatalf("round %d: after the kill the target ends at %s, source last %s: %+v (diff %+v); want a whole source transaction before the end",
				round, last, srcLast, res, res.Diff)
		}
		ck := savedCheckpoint(t, dir)
		if ck > last || ck < prevCheckpoint {
			t.Fatalf("round %d: saved checkpoint %s, target ends at %s, earlier checkpoint %s", round, ck, last, prevCheckpoint)
		}
		t.Logf("round %d: killed with the target at %d of %d transactions (%.0f%% of the bytes); checkpoint saved at transaction %d",
			round, res.Transactions, txns, frac*100, countUpTo(t, src, ck))
		prevCheckpoint = ck
		src.Close()
		dst.Close()
	}
	if prevCheckpoint == 0 {
		t.Fatal("no checkpoint was saved before the kills")
	}

	src, err = openFile(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := openFile(dstPath)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := dst.LastTransaction(context.Background())
	r, hook := newRAID(t, crashOptions(dir), src, dst)
	wantState(t, r, "2", raidstorage.Degraded, raidstorage.ReasonMissing)
	if err := r.Recover("2", false); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, "2", raidstorage.Optimal)
	identical(t, srcLast, src, dst)
	var verified int64 = -1
	for _, e := range hook.AllEntries() {
		if e.Message == "recovery: histories agree up to here; copying the rest" {
			verified, _ = e.Data["verified"].(int64)
		}
	}
	want := int64(countUpTo(t, src, before) - countUpTo(t, src, prevCheckpoint) + 1)
	if verified != want {
		t.Fatalf("the resumed recovery verified %d transactions, want %d (from the checkpoint to the target's end)", verified, want)
	}
}

// countUpTo counts s's transactions up to tid.
func countUpTo(t *testing.T, s stack.Storage, tid stack.Tid) int {
	t.Helper()
	if tid == 0 {
		return 0
	}
	it, _ := stack.AsIterator(s)
	ti, err := it.Iterate(context.Background(), 0, tid)
	if err != nil {
		t.Fatal(err)
	}
	defer ti.Close()
	n := 0
	for {
		_, ok, err := ti.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return n
		}
		n++
	}
}

// fillBulk commits n transactions of 4 records of 5,000 bytes on 500
// objects, in bulk (one fsync at the end).
func fillBulk(t *testing.T, s *filestorage.Storage, n int) {
	t.Helper()
	ctx := context.Background()
	serials := map[stack.Oid]stack.Tid{}
	rec := make([]byte, 5000)
	for i := range n {
		txn, err := s.BeginBulk(ctx, stack.TxnMeta{Description: []byte(fmt.Sprint("txn ", i))})
		if err != nil {
			t.Fatal(err)
		}
		oids := make([]stack.Oid, 4)
		for j := range oids {
			oids[j] = stack.Oid(1 + (i*4+j)%500)
			rec[0], rec[1], rec[2] = byte(i), byte(i>>8), byte(j)
			if err := txn.Store(ctx, oids[j], serials[oids[j]], rec); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := txn.Vote(ctx); err != nil {
			t.Fatal(err)
		}
		tid, err := txn.Finish(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range oids {
			serials[o] = tid
		}
	}
	if err := s.SyncBulk(ctx); err != nil {
		t.Fatal(err)
	}
}

// limitedBuffer keeps the first 64 KB written to it (a child's stderr).
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 64<<10 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }

//go:build interop && bench

// The RAID benchmarks run only when asked for, with the bench build tag
// (besides interop, which every test here needs):
//
//	go test -tags interop,bench -run 'TestRAIDBench|TestRAIDRecoveryRate' -v ./interop
//
// They log figures and assert nothing about timing.

package interop

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/builtin/filestorage"
	"github.com/zeoraid/zeoraid/interop/pyenv"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// benchLine is one phase line of `zeoraid bench`.
var benchLine = regexp.MustCompile(`(?m)^(\S+(?: \S+)?)\s+(\d+) ops\s+(\d+) op/s\s+p50 (\S+)\s+p99 (\S+)\s+errors (\d+)$`)

// runBench runs `zeoraid bench -a addr` and returns its phase lines.
func runBench(t *testing.T, label, addr string) string {
	t.Helper()
	out, code := runZeoraid(t, "bench", "-a", addr, "-d", "4s", "-c", "4")
	if code != 0 || !benchLine.MatchString(out) {
		t.Fatalf("%s: zeoraid bench = exit %d: %s", label, code, out)
	}
	var b strings.Builder
	for _, m := range benchLine.FindAllStringSubmatch(out, -1) {
		fmt.Fprintf(&b, "  %-28s %-12s %7s op/s  p50 %-10s p99 %-10s errors %s\n", label, m[1], m[3], m[4], m[5], m[6])
	}
	return b.String()
}

// TestRAIDBench measures, with `zeoraid bench`, a RAID
// of two runzeo children against one runzeo directly, and a RAID of two
// filestorages against one filestorage, and logs the numbers; it asserts
// nothing about timing.
func TestRAIDBench(t *testing.T) {
	var report strings.Builder

	direct := startChild(t, "direct")
	report.WriteString(runBench(t, "runzeo directly", direct.addr))
	direct.kill()

	rs := newRAIDSetup(t, 2, raidOptions{reads: "random"})
	report.WriteString(runBench(t, "RAID of 2 runzeo", rs.addr()))
	for _, c := range rs.children {
		c.kill()
	}
	rs.srv.stop()

	dir := t.TempDir()
	one := startServer(t, filepath.Join(mkdir(t, dir, "one")), fmt.Sprintf("<filestorage 1>\n  path %s\n</filestorage>", filepath.Join(dir, "one", "Data.fs")), "127.0.0.1:0", Z5)
	report.WriteString(runBench(t, "zeoraid, 1 filestorage", one.addr))
	one.stop()

	raid := startServer(t, mkdir(t, dir, "raid"), fmt.Sprintf(
		"<raidstorage 1>\n  <filestorage 1>\n    path %s\n  </filestorage>\n  <filestorage 2>\n    path %s\n  </filestorage>\n</raidstorage>",
		filepath.Join(mkdir(t, dir, "raid", "1"), "Data.fs"), filepath.Join(mkdir(t, dir, "raid", "2"), "Data.fs")), "127.0.0.1:0", Z5)
	report.WriteString(runBench(t, "zeoraid, RAID of 2 fs", raid.addr))
	raid.stop()
	t.Logf("zeoraid bench -d 4s -c 4 (4 connections; small = 1 object, large = 100 objects per commit):\n%s", report.String())
}

// bigDataFS writes a Data.fs of about size bytes at path with the Go
// FileStorage: transactions of 4 records of 5,000 bytes, on 2,000 objects.
// It returns the number of transactions.
func bigDataFS(t *testing.T, path string, size int64) int {
	t.Helper()
	s, err := filestorage.Open(path, filestorage.Options{Path: zconfig.ExistingDirPath(path)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	serials := map[stack.Oid]stack.Tid{}
	rec := make([]byte, 5000)
	txns := 0
	for written := int64(0); written < size; written += 4 * int64(len(rec)) {
		txn, err := s.Begin(ctx, stack.TxnMeta{User: []byte("bench"), Description: []byte(fmt.Sprint("txn ", txns))})
		if err != nil {
			t.Fatal(err)
		}
		var oids []stack.Oid
		for len(oids) < 4 {
			o := stack.Oid(rng.IntN(2000) + 1)
			if !containsOid(oids, o) {
				oids = append(oids, o)
			}
		}
		for _, o := range oids {
			for i := range rec {
				rec[i] = byte(rng.Uint32())
			}
			if err := txn.Store(ctx, o, serials[o], rec); err != nil {
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
		txns++
	}
	return txns
}

func containsOid(oids []stack.Oid, o stack.Oid) bool {
	for _, x := range oids {
		if x == o {
			return true
		}
	}
	return false
}

// TestRAIDRecoveryRate measures how fast a recovery
// copies a 1 GB Data.fs into an empty filestorage child, idle and while 4
// clients commit, against a plain file copy of the same Data.fs; it logs
// MB/s and transactions/s and asserts nothing about timing.
func TestRAIDRecoveryRate(t *testing.T) {
	py := pyenv.Python(t)
	dir := t.TempDir()
	src := filepath.Join(mkdir(t, dir, "src"), "Data.fs")
	began := time.Now()
	txns := bigDataFS(t, src, 1<<30)
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	mb := float64(fi.Size()) / 1e6
	t.Logf("generated %s: %.0f MB, %d transactions in %s", src, mb, txns, time.Since(began).Round(time.Millisecond))

	began = time.Now()
	if out, err := exec.Command("cp", src, filepath.Join(dir, "copy.fs")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if out, err := exec.Command("sync").CombinedOutput(); err != nil {
		t.Fatalf("sync: %v %s", err, out)
	}
	cp := time.Since(began)
	os.Remove(filepath.Join(dir, "copy.fs"))
	t.Logf("plain file copy (cp + sync): %s, %.0f MB/s", cp.Round(time.Millisecond), mb/cp.Seconds())

	for _, load := range []bool{false, true} {
		run := mkdir(t, dir, fmt.Sprint("run-", load))
		one := filepath.Join(mkdir(t, run, "1"), "Data.fs")
		if err := os.Link(src, one); err != nil {
			t.Fatal(err)
		}
		mkdir(t, run, "2")
		rs := &raidSetup{t: t, py: py, dir: run}
		rs.conf = fmt.Sprintf("<raidstorage 1>\n  <filestorage 1>\n    path %s\n  </filestorage>\n  <filestorage 2>\n    path %s\n  </filestorage>\n</raidstorage>",
			one, filepath.Join(run, "2", "Data.fs"))
		rs.srv = startServer(t, run, rs.conf, "127.0.0.1:0", Z5)
		if d := details(t, rs.addr()); d["2"] != "degraded: missing transactions" {
			t.Fatalf("the empty child is %q", d["2"])
		}
		var wait func() map[string][][]any
		if load {
			wait = runClients(t, rs, 4, 20, 0)
			time.Sleep(2 * time.Second)
		}
		began := time.Now()
		if out, code := ctl(t, rs.addr(), "-t", "1m", "recover", "2"); code != 0 {
			t.Fatalf("recover: exit %d: %s", code, out)
		}
		took := time.Since(began)
		copied := copiedByRecovery(t, rs.srv)
		label := "idle"
		if load {
			acked := wait()
			label = fmt.Sprintf("while 4 clients commit (%d commits)", checkAcked(t, rs, acked))
		}
		t.Logf("recovery of the 1 GB Data.fs into an empty filestorage child, %s: %s, %.0f MB/s, %.0f transactions/s (%d copied); %.2fx the plain copy's time",
			label, took.Round(time.Millisecond), mb/took.Seconds(), float64(copied)/took.Seconds(), copied, took.Seconds()/cp.Seconds())
		rs.srv.stop()
	}
}

//go:build interop

package interop

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/builtin/filestorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
	"github.com/zeoraid/zeoraid/zconfig"
)

// haltClient is a Go ZEO client of storage 1 at addr.
func haltClient(t *testing.T, addr string) *zeoproto.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	network, address := zeoproto.SplitAddress(addr)
	c, err := zeoproto.Dial(ctx, network, address, zeoproto.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(ctx, "1", false); err != nil {
		t.Fatal(err)
	}
	return c
}

// beginStoreVote sends tpc_begin and a store of oid at serial, and votes.
func beginStoreVote(t *testing.T, c *zeoproto.Client, id int64, oid stack.Oid, serial stack.Tid, data string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.CallAsync(ctx, "tpc_begin", id, []byte("halt test"), []byte(data), zeoproto.Dict{}, nil, " "); err != nil {
		t.Fatal(err)
	}
	if err := c.CallAsync(ctx, "storea", oid, serial, []byte(data), id); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Call(ctx, "vote", id); err != nil {
		t.Fatalf("vote: %v", err)
	} else if s, _ := zeoproto.Seq(r); len(s) > 0 {
		t.Fatalf("vote: conflicts %v", s)
	}
}

// TestRAIDCatchUpAfterKillBetweenFinishes: zeoraid, serving a RAID of two
// filestorages with auto-recover, is killed (SIGKILL) between its
// children's tpc_finish (the RAID halts there on
// ZEORAID_TEST_HALT_AFTER_FIRST_FINISH), so that child 2 is one
// transaction behind child 1. Restarted, it finds child 2 behind, catches
// it up by itself at once, and says so in its log; both Data.fs end
// identical, with the interrupted transaction.
func TestRAIDCatchUpAfterKillBetweenFinishes(t *testing.T) {
	dir := t.TempDir()
	paths := []string{filepath.Join(mkdir(t, dir, "1"), "Data.fs"), filepath.Join(mkdir(t, dir, "2"), "Data.fs")}
	conf := fmt.Sprintf("<raidstorage 1>\n  auto-recover true\n  state-dir %s\n  <filestorage 1>\n    path %s\n  </filestorage>\n  <filestorage 2>\n    path %s\n  </filestorage>\n</raidstorage>",
		filepath.Join(dir, "state"), paths[0], paths[1])
	srvDir := mkdir(t, dir, "srv")

	// A few commits first, then a clean stop.
	srv := startServer(t, srvDir, conf, "127.0.0.1:0", Z5)
	c := haltClient(t, srv.addr)
	var serial stack.Tid
	for i := range 3 {
		beginStoreVote(t, c, int64(i+1), 1, serial, fmt.Sprint("before ", i))
		r, err := c.Call(context.Background(), "tpc_finish", int64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := r.([]byte)
		if serial, err = stack.TidFromBytes(b); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	srv.stop()

	// The commit that is interrupted between the two finishes.
	halted := filepath.Join(dir, "halted")
	t.Setenv("ZEORAID_TEST_HALT_AFTER_FIRST_FINISH", halted)
	srv = startServer(t, srvDir, conf, srv.addr, Z5)
	c = haltClient(t, srv.addr)
	beginStoreVote(t, c, 1, 1, serial, "interrupted")
	finished := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), "tpc_finish", int64(1))
		finished <- err
	}()
	waitFile(t, halted, 30*time.Second)
	if err := srv.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	srv.cmd.Wait()
	if err := <-finished; err == nil {
		t.Fatal("tpc_finish was answered by a server killed before the second child's finish")
	}
	c.Close()
	b, err := os.ReadFile(halted)
	if err != nil {
		t.Fatal(err)
	}
	interrupted := strings.TrimSpace(string(b))

	// Restarted without the hook: child 2 is behind and catches up.
	t.Setenv("ZEORAID_TEST_HALT_AFTER_FIRST_FINISH", "")
	logStart := fileSize(t, srv.log)
	srv = startServer(t, srvDir, conf, srv.addr, Z5)
	waitState(t, srv.addr, "2", "optimal", 5*time.Second) // auto-recover checks every 10s after the start
	srv.stop()
	logText := readFrom(t, srv.log, logStart)
	for _, want := range []string{"child degraded at start", "missing transactions", "auto-recover: catching up a degraded child",
		"child behind at start: its recovery compares histories from the saved checkpoint", "recovery finished: child optimal"} {
		if !strings.Contains(logText, want) {
			t.Errorf("the log after the restart does not say %q:\n%s", want, logText)
		}
	}

	var stores []stack.Storage
	for _, p := range paths {
		s, err := filestorage.Open(p, filestorage.Options{Path: zconfig.ExistingDirPath(p), ReadOnly: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores = append(stores, s)
	}
	res, err := stack.CompareHistories(context.Background(), stores[0], stores[1], 0, 0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if res.Diff != nil || res.Transactions != 4 || res.Last.String() != interrupted {
		t.Fatalf("children after the catch-up: %+v (diff %+v); want 4 identical transactions ending with the interrupted %s", res, res.Diff, interrupted)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// readFrom returns path's content from offset on.
func readFrom(t *testing.T, path string, offset int64) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[min(offset, int64(len(b))):])
}

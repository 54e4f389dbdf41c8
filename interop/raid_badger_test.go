//go:build interop

package interop

// Mixed mirrors: a RAID whose halves share no code, one a FileStorage
// (Python's runzeo, or zeoraid's own <filestorage>), the other a
// <badgerstorage>, with Python applications committing through zeoraid.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/zeoraid/zeoraid/builtin/all" // the children opened directly
	"github.com/zeoraid/zeoraid/interop/pyenv"
	"github.com/zeoraid/zeoraid/stack"
)

// badgerServer is a zeoraid process serving storage 1 as a
// <badgerstorage> with a blob directory: a RAID child behind a
// <zeoclient>, killed and replaced like a runzeo child.
type badgerServer struct {
	t    *testing.T
	dir  string
	srv  *server
	addr string
}

// startBadgerChild starts a zeoraid with an empty Badger storage on a
// port of its own; it is stopped at the end of the test.
func startBadgerChild(t *testing.T, name string) *zeoChild {
	t.Helper()
	b := &badgerServer{t: t, dir: t.TempDir()}
	b.run("127.0.0.1:0")
	return &zeoChild{t: t, name: name, addr: b.addr, srv: b}
}

func (b *badgerServer) data() string { return filepath.Join(b.dir, "data") }

func (b *badgerServer) run(addr string) {
	b.t.Helper()
	mkdir(b.t, b.data(), "blobs")
	conf := fmt.Sprintf("<badgerstorage 1>\n  path %s\n  blob-dir %s\n</badgerstorage>",
		filepath.Join(b.data(), "badger"), filepath.Join(b.data(), "blobs"))
	b.srv = startServer(b.t, b.dir, conf, addr, Z5)
	b.addr = b.srv.addr
}

func (b *badgerServer) Kill() {
	_ = b.srv.cmd.Process.Kill()
	_ = b.srv.cmd.Wait()
}

func (b *badgerServer) Restart() error { b.run(b.addr); return nil }

func (b *badgerServer) Replace() error {
	if err := os.RemoveAll(b.data()); err != nil {
		return err
	}
	b.run(b.addr)
	return nil
}

func (b *badgerServer) Signal(sig syscall.Signal) { _ = b.srv.cmd.Process.Signal(sig) }

// TestRAIDBadgerChaos is the chaos test with a mixed mirror: child 1 is a
// Python runzeo with a FileStorage, child 2 a zeoraid with a Badger
// storage. Rounds alternate: the child is killed, replaced by an empty
// server on its address and recovered from the other one, while 4 client
// processes commit; every acknowledged commit stays readable and both
// histories end identical.
func TestRAIDBadgerChaos(t *testing.T) {
	t.Parallel()
	rs := &raidSetup{t: t, py: pyenv.Python(t), dir: t.TempDir()}
	rs.children = []*zeoChild{startChild(t, "1"), startBadgerChild(t, "2")}
	rs.conf = raidConf(rs.dir, raidOptions{reads: "random"}, rs.children...)
	rs.srv = startServer(t, rs.dir, rs.conf, "127.0.0.1:0", Z5)
	chaos(t, rs, chaosSeconds(t)/2)
}

// TestRAIDMixedLocal: zeoraid serves a RAID of its own <filestorage 1>
// and <badgerstorage 2>. While Python clients commit, each child in turn
// is disabled and recovered from the other, then the FileStorage child is
// rebuilt from nothing (its old file kept as Data.fs.old); zeoraid check
// finds them identical, and so does comparing the two directories after
// the server stopped.
func TestRAIDMixedLocal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fsDir, bgDir := mkdir(t, dir, "fs"), mkdir(t, dir, "bg")
	children := fmt.Sprintf(`  <filestorage 1>
    path %s/Data.fs
    blob-dir %s/blobs
  </filestorage>
  <badgerstorage 2>
    path %s/badger
    blob-dir %s/blobs
  </badgerstorage>
`, fsDir, fsDir, bgDir, bgDir)
	conf := "<raidstorage 1>\n  read-distribution random\n  auto-recover false\n" + children + "</raidstorage>\n"
	rs := &raidSetup{t: t, py: pyenv.Python(t), dir: dir, conf: conf}
	rs.srv = startServer(t, dir, conf, "127.0.0.1:0", Z5)
	const seconds = 30
	wait := runClients(t, rs, 4, seconds, 0.02)
	began := time.Now()
	// disable answers with the RAID's new state: degraded (2).
	step := func(args ...string) string {
		t.Helper()
		out, code := ctl(t, rs.addr(), args...)
		if want := map[bool]int{true: 2, false: 0}[args[0] == "disable"]; code != want {
			b, _ := os.ReadFile(rs.srv.log)
			t.Fatalf("ctl %v: exit %d: %s\n%s", args, code, out, tail(b, 4000))
		}
		return out
	}
	for _, name := range []string{"1", "2"} {
		time.Sleep(3 * time.Second)
		step("disable", name)
		waitState(t, rs.addr(), name, "degraded", 10*time.Second)
		time.Sleep(2 * time.Second) // the other child takes commits alone
		if out := step("recover", name); !strings.Contains(out, "'"+name+"' is optimal") {
			t.Fatalf("recover %s: %s", name, out)
		}
	}
	step("disable", "1")
	if out := step("recover", "1", "rebuild"); !strings.Contains(out, "'1' is optimal") {
		t.Fatalf("rebuild 1: %s", out)
	}
	if _, err := os.Stat(filepath.Join(fsDir, "Data.fs.old")); err != nil {
		t.Errorf("the rebuilt child's old file: %v", err)
	}
	if left := seconds*time.Second - time.Since(began); left < 5*time.Second {
		t.Logf("the steps took %s of the clients' %d s", time.Since(began), seconds)
	}
	n := checkAcked(t, rs, wait())
	wantStatus(t, rs.addr(), "optimal", 0)
	if out, code := runZeoraid(t, "check", "-t", "2m", "-a", rs.addr()); code != 0 || !strings.Contains(out, "identical") {
		t.Fatalf("zeoraid check = exit %d: %s", code, out)
	}
	rs.srv.stop()

	// The two directories, opened on their own, hold the same history.
	pair := filepath.Join(dir, "pair.conf")
	text := strings.NewReplacer("<filestorage 1>", "<filestorage a>", "<badgerstorage 2>", "<badgerstorage b>").Replace(children)
	if err := os.WriteFile(pair, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := stack.LoadStorageConfig(pair)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tree, err := stack.Build(ctx, cfg, stack.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	res, err := stack.CompareHistories(ctx, tree.Roots["a"].Storage, tree.Roots["b"].Storage, 0, 0, time.Minute)
	if err != nil || res.Diff != nil {
		t.Fatalf("the children compared directly: %+v %v", res.Diff, err)
	}
	if res.Transactions < n {
		t.Fatalf("%d transactions on the children, %d commits acknowledged", res.Transactions, n)
	}
	t.Logf("%d commits acknowledged; %d transactions identical on the filestorage and the badger child", n, res.Transactions)
}

//go:build interop

package interop

// The example storage plugin (examples/plugins/sqlitestorage) with real
// processes and Python clients: a RAID child beside a filestorage, its
// process killed and recovered both ways, and ZEO's own storage suites
// against a <sqlitestorage> served by zeoraid.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/interop/pyenv"
)

var (
	pluginOnce sync.Once
	pluginErr  error
)

// sqlitePlugin builds zeoraid-plugin-sqlite next to the zeoraid binary,
// one of the directories zeoraid searches for plugins (and where
// `zeoraid types`, which the forker asks, finds it).
func sqlitePlugin(t *testing.T) {
	t.Helper()
	pluginOnce.Do(func() {
		build := exec.Command("go", "build", "-o", filepath.Join(filepath.Dir(zeoraidBin), "zeoraid-plugin-sqlite"), "./examples/plugins/sqlitestorage/cmd/zeoraid-plugin-sqlite")
		build.Dir = pyenv.Top()
		if out, err := build.CombinedOutput(); err != nil {
			pluginErr = fmt.Errorf("building the sqlite plugin: %v\n%s", err, out)
		}
	})
	if pluginErr != nil {
		t.Fatal(pluginErr)
	}
}

// pluginPIDs are the sqlite plugin processes whose parent is ppid.
func pluginPIDs(t *testing.T, ppid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm is cut to 15 bytes.
		s := string(stat)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		fields := strings.Fields(s[end+1:])
		if !strings.HasPrefix("zeoraid-plugin-sqlite", s[open+1:end]) || len(fields) < 2 || fields[1] != strconv.Itoa(ppid) {
			continue
		}
		out = append(out, pid)
	}
	return out
}

// TestRAIDPluginChild: zeoraid serves a RAID of its own <filestorage 1>
// and a <sqlitestorage 2> of the example plugin. While Python clients
// commit, the plugin process is killed (SIGKILL): the RAID degrades child
// 2 and the clients see nothing; zeoraid starts the plugin again, and
// `ctl recover 2` brings it back. Then child 1 is disabled while the
// plugin child serves alone, and recovered from it. zeoraid check finds
// the children identical, and every acknowledged commit reads back.
func TestRAIDPluginChild(t *testing.T) {
	t.Parallel()
	sqlitePlugin(t)
	dir := t.TempDir()
	fsDir, sqDir := mkdir(t, dir, "fs"), mkdir(t, dir, "sq")
	conf := fmt.Sprintf(`%%import sqlite
<raidstorage 1>
  read-distribution random
  auto-recover false
  <filestorage 1>
    path %s/Data.fs
    blob-dir %s/blobs
  </filestorage>
  <sqlitestorage 2>
    path %s/Data.sqlite
    blob-dir %s/blobs
  </sqlitestorage>
</raidstorage>
`, fsDir, fsDir, sqDir, sqDir)
	rs := &raidSetup{t: t, py: pyenv.Python(t), dir: dir, conf: conf}
	rs.srv = startServer(t, dir, conf, "127.0.0.1:0", Z5)
	serverLog := func() string {
		b, _ := os.ReadFile(rs.srv.log)
		return tail(b, 4000)
	}
	step := func(want int, args ...string) string {
		t.Helper()
		out, code := ctl(t, rs.addr(), args...)
		if code != want {
			t.Fatalf("ctl %v: exit %d: %s\n%s", args, code, out, serverLog())
		}
		return out
	}
	pids := pluginPIDs(t, rs.srv.cmd.Process.Pid)
	if len(pids) != 1 {
		t.Fatalf("plugin processes of the server: %v, want one", pids)
	}
	const seconds = 30
	wait := runClients(t, rs, 4, seconds, 0.02)
	began := time.Now()

	time.Sleep(3 * time.Second) // commits reach both children
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitState(t, rs.addr(), "2", "degraded", 20*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for {
		now := pluginPIDs(t, rs.srv.cmd.Process.Pid)
		if len(now) == 1 && now[0] != pids[0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plugin was not started again: %v\n%s", now, serverLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out := step(0, "recover", "2"); !strings.Contains(out, "'2' is optimal") {
		t.Fatalf("recover 2: %s", out)
	}

	time.Sleep(2 * time.Second)
	step(2, "disable", "1")
	waitState(t, rs.addr(), "1", "degraded", 10*time.Second)
	time.Sleep(2 * time.Second) // the plugin child takes commits alone
	if out := step(0, "recover", "1"); !strings.Contains(out, "'1' is optimal") {
		t.Fatalf("recover 1 from the plugin child: %s", out)
	}
	if left := seconds*time.Second - time.Since(began); left < 5*time.Second {
		t.Logf("the steps took %s of the clients' %d s", time.Since(began), seconds)
	}
	n := checkAcked(t, rs, wait())
	wantStatus(t, rs.addr(), "optimal", 0)
	if out, code := runZeoraid(t, "check", "-t", "2m", "-a", rs.addr()); code != 0 || !strings.Contains(out, "identical") {
		t.Fatalf("zeoraid check = exit %d: %s", code, out)
	}
	t.Logf("%d commits acknowledged through a plugin child killed and recovered", n)
}

// sqliteSuiteFailures are the tests of ZEO's suites that cannot pass
// against a <sqlitestorage>, with the reason.
func sqliteSuiteFailures(classes ...string) map[string]string {
	out := map[string]string{}
	for _, c := range classes {
		for k, v := range undoConflictResolution(c) {
			out[k] = v
		}
	}
	return out
}

// TestSQLiteSuites runs ZEO's storage suites through Python's client with
// every <filestorage> the tests ask for served as a <sqlitestorage> of
// the example plugin (the forker's ZEORAID_BACKEND=sqlite): undo, pack,
// iteration, blobs, conflicts and invalidations across the plugin
// boundary.
func TestSQLiteSuites(t *testing.T) {
	t.Parallel()
	sqlitePlugin(t)
	python := pyenv.Python(t)
	runVariants(t, python, map[Encoding]suiteVariant{
		Z5: {env: "ZEORAID_BACKEND=sqlite", classes: chainClasses[1:], expected: sqliteSuiteFailures("FileStorageTests", "BlobAdaptedFileStorageTests"), least: 150},
		M5: {env: "ZEORAID_BACKEND=sqlite", classes: chainClasses[1:2], expected: sqliteSuiteFailures("FileStorageTests"), least: 80},
	})
}

//go:build interop

package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/zeoraid/zeoraid/interop/pyenv"
)

// pyHistory commits an object and changes it five times through Python's
// ZEO client, as an application does.
const pyHistory = `
import sys, ZEO, transaction
from persistent.mapping import PersistentMapping
host, port = sys.argv[1].rsplit(':', 1)
db = ZEO.DB((host, int(port)), storage=sys.argv[2])
conn = db.open()
root = conn.root()
root['x'] = PersistentMapping()
transaction.commit()
for i in range(5):
    root['x']['n'] = i
    transaction.commit()
print(len(db.history(root['x']._p_oid, size=100)))
db.close()
`

// pyRead reads the object back through Python's ZEO client: its history
// length and its value.
const pyRead = `
import sys, ZEO
host, port = sys.argv[1].rsplit(':', 1)
db = ZEO.DB((host, int(port)), storage=sys.argv[2])
root = db.open().root()
print(len(db.history(root['x']._p_oid, size=100)), root['x']['n'])
db.close()
`

// pyReadFile reads a Data.fs the same way, with Python's FileStorage.
const pyReadFile = `
import sys
from ZODB import DB
from ZODB.FileStorage import FileStorage
db = DB(FileStorage(sys.argv[1], read_only=True))
root = db.open().root()
print(len(db.history(root['x']._p_oid, size=100)), root['x']['n'])
db.close()
`

func runPy(t *testing.T, script string, args ...string) string {
	t.Helper()
	return strings.TrimSpace(string(pyenv.Run(t, append([]string{"-c", script}, args...)...)))
}

func packCLI(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(append([]string{"pack"}, args...), &stdout, &stderr); code != 0 {
		t.Fatalf("zeoraid pack %v: exit %d\n%s%s", args, code, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// zeoraid pack packs runzeo as zeopack does: -d keeps what is younger,
// a pack to now leaves one revision, and Python reads the current state.
func TestPackRunzeo(t *testing.T) {
	rz := pyenv.StartRunzeo(t, pyenv.RunzeoOptions{})
	if got := runPy(t, pyHistory, rz.Addr, "1"); got != "6" {
		t.Fatalf("history before pack: %s", got)
	}
	packCLI(t, "-d", "1", rz.Addr)
	if got := runPy(t, pyRead, rz.Addr, "1"); got != "6 4" {
		t.Fatalf("after a pack to a day ago: %s", got)
	}
	out := packCLI(t, rz.Addr+":1")
	if !strings.Contains(out, `packed storage "1" at `+rz.Addr) {
		t.Fatalf("pack output %q", out)
	}
	if got := runPy(t, pyRead, rz.Addr, "1"); got != "1 4" {
		t.Fatalf("after a pack to now: %s", got)
	}
}

// On a zeoraid RAID every child is packed: Python reads the RAID, and
// each Data.fs on its own, with one revision left.
func TestPackZeoraidRAID(t *testing.T) {
	exe := buildBinary(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "zeo.conf")
	fs1, fs2 := filepath.Join(dir, "1.fs"), filepath.Join(dir, "2.fs")
	must(t, os.WriteFile(conf, []byte(fmt.Sprintf("<zeo>\n  address 127.0.0.1:0\n</zeo>\n<raidstorage main>\n  <filestorage 1>\n    path %s\n  </filestorage>\n  <filestorage 2>\n    path %s\n  </filestorage>\n</raidstorage>\n", fs1, fs2)), 0o644))
	cmd, addr := startServe(t, exe, dir, "-C", conf, "--no-watch")
	if got := runPy(t, pyHistory, addr, "main"); got != "6" {
		t.Fatalf("history before pack: %s", got)
	}
	host, port, _ := net.SplitHostPort(addr)
	out := packCLI(t, "-h", host, "-p", port, "-S", "main")
	if !strings.Contains(out, `packed storage "main"`) || !strings.Contains(out, " -> ") {
		t.Fatalf("pack output %q", out)
	}
	if got := runPy(t, pyRead, addr, "main"); got != "1 4" {
		t.Fatalf("RAID after pack: %s", got)
	}
	must(t, cmd.Process.Signal(syscall.SIGTERM))
	if err := cmd.Wait(); err != nil {
		t.Fatalf("zeoraid exit: %v", err)
	}
	for _, fs := range []string{fs1, fs2} {
		if got := runPy(t, pyReadFile, fs); got != "1 4" {
			t.Fatalf("%s after pack: %s", fs, got)
		}
	}
}

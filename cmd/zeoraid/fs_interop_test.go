//go:build interop

package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/zeoraid/zeoraid/interop/pyenv"
)

// writeWithPython makes a Data.fs with real ZODB: a root, a child, a
// change and its undo (a backpointer record).
const writeWithPython = `
import sys, transaction, ZODB
from persistent.mapping import PersistentMapping
from ZODB.FileStorage import FileStorage
db = ZODB.DB(FileStorage(sys.argv[1]))
conn = db.open()
root = conn.root()
root['child'] = PersistentMapping({'n': 1})
transaction.commit()
root['x'] = 1
transaction.commit()
db.undo(db.undoLog(0, 1)[0]['id'])
transaction.commit()
db.close()
`

func pythonFile(t *testing.T) (string, string) {
	t.Helper()
	py := pyenv.Python(t)
	path := filepath.Join(t.TempDir(), "Data.fs")
	if out, err := exec.Command(py, "-c", writeWithPython, path).CombinedOutput(); err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	return py, path
}

func fstest(t *testing.T, py, path string) bool {
	t.Helper()
	out, _ := exec.Command(py, "-m", "ZODB.scripts.fstest", path).CombinedOutput()
	return len(bytes.TrimSpace(out)) == 0
}

func TestFSCheckAndDump(t *testing.T) {
	py, path := pythonFile(t)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"fs", "check", path}, &stdout, &stderr); code != 0 {
		t.Fatalf("fs check on a Python file: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "4 transactions") || !strings.Contains(stdout.String(), "no errors detected") {
		t.Errorf("fs check summary: %q", stdout.String())
	}

	stdout.Reset()
	if code := run([]string{"fs", "dump", path}, &stdout, &stderr); code != 0 {
		t.Fatalf("fs dump: exit %d: %s", code, stderr.String())
	}
	dump := stdout.String()
	if n := strings.Count(dump, "\ntxn ") + strings.Count(dump[:4], "txn "); n != 4 {
		t.Errorf("dump shows %d transactions, want 4:\n%s", n, dump)
	}
	if !strings.HasPrefix(dump, "txn pos=4 ") || !strings.Contains(dump, `description="initial database creation"`) {
		t.Errorf("dump does not start with the first transaction at 4:\n%s", dump)
	}
	// The undo wrote oid 0 as a backpointer; find it and oid 1's record.
	back := regexp.MustCompile(`rec pos=(\d+) oid=0x0000000000000000 tid=\S+ prev=\d+ back=(\d+)`).FindStringSubmatch(dump)
	child := regexp.MustCompile(`rec pos=(\d+) oid=0x0000000000000001 `).FindStringSubmatch(dump)
	if back == nil || child == nil {
		t.Fatalf("dump lacks the undo's backpointer or the child's record:\n%s", dump)
	}

	// Damage the backpointer so it names the child's record: fstest.py
	// does not look at backpointers, fs check must.
	bpos, _ := strconv.ParseInt(back[1], 10, 64)
	cpos, _ := strconv.ParseInt(child[1], 10, 64)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(b)
	binary.BigEndian.PutUint64(bad[bpos+42:], uint64(cpos))
	badBack := filepath.Join(t.TempDir(), "back.fs")
	os.WriteFile(badBack, bad, 0o644)
	if !fstest(t, py, badBack) {
		t.Fatalf("fstest.py should not notice a wrong backpointer")
	}

	// Damage a trailer: both notice.
	bad = bytes.Clone(b)
	bad[len(bad)-1] ^= 0xff
	badTrailer := filepath.Join(t.TempDir(), "trailer.fs")
	os.WriteFile(badTrailer, bad, 0o644)
	if fstest(t, py, badTrailer) {
		t.Fatalf("fstest.py should notice a damaged trailer")
	}

	for _, c := range []struct{ file, want string }{
		{badBack, "offset " + back[1] + ": backpointer to " + child[1] + " names oid 0x0000000000000001, not 0x0000000000000000"},
		{badTrailer, "redundant transaction length check failed"},
	} {
		stdout.Reset()
		stderr.Reset()
		code := run([]string{"fs", "check", path, c.file}, &stdout, &stderr)
		if code != 1 {
			t.Errorf("fs check %s: exit %d, want 1", c.file, code)
		}
		if !strings.Contains(stdout.String(), path+": 4 transactions") {
			t.Errorf("the good file's summary is missing: %q", stdout.String())
		}
		if !strings.Contains(stderr.String(), c.want) {
			t.Errorf("fs check %s: stderr %q, want %q", c.file, stderr.String(), c.want)
		}
	}
	if code := run([]string{"fs", "dump", badTrailer}, &stdout, &stderr); code != 1 {
		t.Errorf("fs dump of a damaged file: exit %d, want 1", code)
	}
}

//go:build interop

package sqlitestorage_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/interop/pyenv"
	"github.com/zeoraid/zeoraid/stack"
)

// pythonClient drives the server with Python's ZEO ClientStorage: it
// commits a counter and a blob, undoes a transaction, reads the history,
// packs, and reads everything back through a second client with a blob
// cache of its own. It prints what it saw as JSON.
const pythonClient = `
import json, sys, time, ZEO, transaction, ZODB.blob
from ZODB.utils import u64
addr, blobs = sys.argv[1], sys.argv[2]
host, port = addr.rsplit(':', 1)
db = ZEO.DB((host, int(port)), storage='main', blob_dir=blobs + '/a', shared_blob_dir=False)
conn = db.open()
root = conn.root()
root['n'] = 1
root['blob'] = ZODB.blob.Blob(b'blob one')
transaction.get().note(u'first')
transaction.commit()
root['n'] = 2
transaction.get().note(u'second')
transaction.commit()
with root['blob'].open('w') as f:
    f.write(b'blob two')
transaction.get().note(u'third')
transaction.commit()
log = db.undoLog(0, 10)
db.undo(log[0]['id'])  # the blob goes back to 'blob one'
transaction.commit()
conn.sync()
out = {'n': root['n'], 'blob': root['blob'].open().read().decode(),
       'history': len(db.history(root._p_oid, 10)),
       'undo_log': [e['description'] for e in db.undoLog(0, 10)]}
time.sleep(0.01)
db.pack()
out['undo_log_after_pack'] = len(db.undoLog(0, 10))
out['last'] = u64(db.lastTransaction())
conn.close()
db.close()
db = ZEO.DB((host, int(port)), storage='main', blob_dir=blobs + '/b', shared_blob_dir=False)
c = db.open()
out['reread'] = [c.root()['n'], c.root()['blob'].open().read().decode()]
db.close()
print(json.dumps(out))
`

// TestPythonClientThroughPlugin serves a <sqlitestorage> through
// `zeoraid serve` and %import, the plugin found next to the
// configuration, and drives it with Python's ZEO client; the file is then
// opened in process and must hold what the client committed.
func TestPythonClientThroughPlugin(t *testing.T) {
	python := pyenv.Python(t)
	dir := t.TempDir()
	for _, b := range [][2]string{
		{"zeoraid", "github.com/zeoraid/zeoraid/cmd/zeoraid"},
		{"zeoraid-plugin-sqlite", "./cmd/zeoraid-plugin-sqlite"},
	} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, b[0]), b[1]).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b[1], err, out)
		}
	}
	o := testOptions(t)
	conf := filepath.Join(dir, "zeo.conf")
	must(t, os.WriteFile(conf, []byte(fmt.Sprintf(`%%import sqlite
<zeo>
  address 127.0.0.1:0
</zeo>
<sqlitestorage main>
  path %s
  blob-dir %s
</sqlitestorage>
`, o.Path, o.BlobDir)), 0o644))
	ready := filepath.Join(dir, "ready")
	var log syncBuffer
	serve := exec.Command(filepath.Join(dir, "zeoraid"), "serve", "-C", conf, "--ready-file", ready)
	serve.Stdout, serve.Stderr = &log, &log
	must(t, serve.Start())
	done := make(chan error, 1)
	go func() { done <- serve.Wait() }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = serve.Process.Signal(syscall.SIGTERM)
			<-done
		}
	}
	defer stop()
	var addr []byte
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(ready); err == nil && len(b) > 0 {
			addr = bytes.TrimSpace(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("zeoraid serve did not start within 60s:\n%s", log.String())
		}
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("zeoraid serve exited (%v):\n%s", err, log.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	out, err := exec.Command(python, "-c", pythonClient, string(addr), filepath.Join(dir, "client-blobs")).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("python client: %v\n%s\nserver log:\n%s", err, stderr, log.String())
	}
	var got struct {
		N         int      `json:"n"`
		Blob      string   `json:"blob"`
		History   int      `json:"history"`
		UndoLog   []string `json:"undo_log"`
		AfterPack int      `json:"undo_log_after_pack"`
		Last      uint64   `json:"last"`
		Reread    []any    `json:"reread"`
	}
	must(t, json.Unmarshal(out, &got))
	if got.N != 2 || got.Blob != "blob one" || got.History != 3 || len(got.UndoLog) != 5 || got.AfterPack != 0 {
		t.Errorf("the Python client saw %+v; want n 2, the undone blob, 3 root revisions, 5 undoable transactions (the database creation and the undo too), none after pack", got)
	}
	if fmt.Sprint(got.Reread) != "[2 blob one]" {
		t.Errorf("a second client read %v", got.Reread)
	}
	stop()

	s := open(t, o)
	defer s.Close()
	ctx := context.Background()
	if last, err := s.LastTransaction(ctx); err != nil || last != stack.Tid(got.Last) {
		t.Errorf("reopened in process, LastTransaction = %s, %v; the client saw %s", last, err, stack.Tid(got.Last))
	}
	if r, err := s.LoadBefore(ctx, 0, stack.MaxTid); err != nil || !r.Found() {
		t.Errorf("the root reopened in process: %+v, %v", r, err)
	}
}

// syncBuffer is the server's output, written by exec's copying goroutine
// while the test may read it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

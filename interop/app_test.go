//go:build interop

package interop

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/interop/pyenv"
)

// server is a zeoraid process started by a test.
type server struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	log  string
}

// startServer runs zeoraid serve with conf (its address line written by
// this function: address on ADDR) in encoding enc and waits until it
// listens.
func startServer(t *testing.T, dir, storageConf, address string, enc Encoding) *server {
	t.Helper()
	conf := filepath.Join(dir, "zeo.conf")
	text := fmt.Sprintf("<zeo>\naddress %s\n</zeo>\n\n%s\n", address, storageConf)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(dir, "ready")
	os.Remove(ready)
	logPath := filepath.Join(dir, "server.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(zeoraidBin, "serve", "-C", conf, "--ready-file", ready)
	cmd.Env = env(enc)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, log: logPath}
	t.Cleanup(s.stop)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(ready); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			s.addr = strings.TrimSpace(string(b))
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop()
	b, _ := os.ReadFile(logPath)
	t.Fatalf("zeoraid did not start:\n%s", b)
	return nil
}

// stop sends SIGTERM and waits; it may be called more than once.
func (s *server) stop() {
	if s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			b, _ := os.ReadFile(s.log)
			s.t.Errorf("zeoraid exited with %v; log:\n%s", err, tail(b, 4000))
		}
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
		s.t.Error("zeoraid did not stop within 30s of SIGTERM")
	}
}

// agent is one app_agent.py process.
type agent struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
}

func startAgent(t *testing.T, python, name, addr string, enc Encoding) *agent {
	t.Helper()
	return launchAgent(t, name, enc, python, pyenv.Script("app_agent.py"), addr)
}

// launchAgent starts a Python agent process (python and its arguments) that
// reads one JSON command per line and answers one JSON line each; it is
// stopped when the test ends.
func launchAgent(t *testing.T, name string, enc Encoding, python string, args ...string) *agent {
	t.Helper()
	cmd := exec.Command(python, args...)
	cmd.Env = env(enc)
	cmd.Stderr = &prefixWriter{t: t, prefix: name + ": "}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &agent{t: t, name: name, cmd: cmd, in: in, out: bufio.NewScanner(out)}
	a.out.Buffer(make([]byte, 1<<20), 64<<20)
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return a
}

// do sends one command and returns its answer, failing t on an error.
func (a *agent) do(cmd map[string]any) map[string]any {
	a.t.Helper()
	r := a.try(cmd)
	if ok, _ := r["ok"].(bool); !ok {
		a.t.Fatalf("%s: %v: %v", a.name, cmd, r["error"])
	}
	return r
}

// try sends one command and returns its answer, errors included.
func (a *agent) try(cmd map[string]any) map[string]any {
	a.t.Helper()
	b, _ := json.Marshal(cmd)
	if _, err := fmt.Fprintf(a.in, "%s\n", b); err != nil {
		a.t.Fatalf("%s: writing %v: %v", a.name, cmd, err)
	}
	if !a.out.Scan() {
		a.t.Fatalf("%s: no answer to %v: %v", a.name, cmd, a.out.Err())
	}
	var r map[string]any
	if err := json.Unmarshal(a.out.Bytes(), &r); err != nil {
		a.t.Fatalf("%s: bad answer %q: %v", a.name, a.out.Bytes(), err)
	}
	return r
}

// prefixWriter logs a process's stderr through t.
type prefixWriter struct {
	t      *testing.T
	prefix string
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.t.Log(w.prefix + line)
	}
	return len(p), nil
}

// TestApplication runs two application processes (ZODB.DB over
// ClientStorage) against one zeoraid in both encodings.
func TestApplication(t *testing.T) {
	t.Parallel()
	python := pyenv.Python(t)
	for _, enc := range []Encoding{Z5, M5} {
		t.Run(string(enc), func(t *testing.T) {
			t.Parallel()
			runApplication(t, python, enc, "ZEO 6")
		})
	}
}

// runApplication is the application scenario: invalidations between
// processes, a BTree conflict resolved by the client, a 5 MB object, 1,000
// small transactions, and reconnection after a server restart (with the
// data kept when zeoraid has <filestorage>, else an empty new database).
func runApplication(t *testing.T, python string, enc Encoding, label string) {
	dir := t.TempDir()
	durable := storageTypes(t)["filestorage"]
	storage := "<mappingstorage 1>\n</mappingstorage>"
	if durable {
		storage = fmt.Sprintf("<filestorage 1>\npath %s\n</filestorage>", filepath.Join(dir, "Data.fs"))
	}
	srv := startServer(t, dir, storage, "127.0.0.1:0", enc)
	a := startAgent(t, python, "A", srv.addr, enc)
	// A creates the database root first; two processes creating it at
	// once conflict inside ZODB.DB().
	info := a.do(map[string]any{"op": "info"})
	b := startAgent(t, python, "B", srv.addr, enc)

	t.Logf("%s client: ZEO %v, ZODB %v, protocol %v", label, info["zeo"], info["zodb"], info["protocol"])
	if p, _ := info["protocol"].(string); p != "?" && p != string(enc) {
		t.Errorf("client speaks %q, want %s", p, enc)
	}

	// Invalidations: B sees what A commits, without reopening.
	if got := b.do(map[string]any{"op": "get", "key": "color"})["value"]; got != nil {
		t.Fatalf("B sees color=%v before anyone set it", got)
	}
	a.do(map[string]any{"op": "set", "key": "color", "value": "red"})
	if got := b.do(map[string]any{"op": "wait", "key": "color", "value": "red", "timeout": 10})["value"]; got != "red" {
		t.Fatalf("B sees color=%v after A set red", got)
	}
	b.do(map[string]any{"op": "set", "key": "color", "value": "blue"})
	if got := a.do(map[string]any{"op": "wait", "key": "color", "value": "blue", "timeout": 10})["value"]; got != "blue" {
		t.Fatalf("A sees color=%v after B set blue", got)
	}

	// A BTree conflict: both insert into the same (only) bucket from the
	// same starting state; B commits second, gets the conflict from vote
	// and resolves it in the client.
	before := b.do(map[string]any{"op": "resolved"})["resolved"].(float64)
	a.do(map[string]any{"op": "prepare_insert", "keys": []string{"a1", "a2"}})
	b.do(map[string]any{"op": "prepare_insert", "keys": []string{"b1", "b2"}})
	a.do(map[string]any{"op": "commit"})
	if r := b.try(map[string]any{"op": "commit"}); r["ok"] != true {
		t.Fatalf("B's commit of a resolvable BTree conflict failed: %v", r["error"])
	}
	if after := b.do(map[string]any{"op": "resolved"})["resolved"].(float64); after <= before {
		t.Errorf("B resolved no conflict (count %v → %v): the test did not provoke one", before, after)
	}
	// B sees its own commit at once; A sees it once B's invalidation has
	// reached A's client, which ZEO delivers asynchronously.
	for _, ag := range []*agent{b, a} {
		var keys any
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			keys = ag.do(map[string]any{"op": "tree_keys"})["keys"]
			if fmt.Sprint(keys) == "[a1 a2 b1 b2]" || ag == b || time.Now().After(deadline) {
				break
			}
		}
		if fmt.Sprint(keys) != "[a1 a2 b1 b2]" {
			t.Errorf("%s sees tree keys %v, want [a1 a2 b1 b2]", ag.name, keys)
		}
	}

	// A 5 MB object written by A, read back by B.
	sum := a.do(map[string]any{"op": "big", "size": 5 << 20, "seed": 42})["sha256"]
	got := b.do(map[string]any{"op": "big_digest"})
	if got["sha256"] != sum || got["size"].(float64) != 5<<20 {
		t.Errorf("B reads the big object as %v bytes, sha256 %v; want %d, %v", got["size"], got["sha256"], 5<<20, sum)
	}

	// 1,000 small transactions by A; B sees the final count.
	n := a.do(map[string]any{"op": "many", "n": 1000})["n"].(float64)
	if n != 1000 {
		t.Errorf("counter after 1000 transactions = %v", n)
	}
	// B's invalidations arrive asynchronously: it sees the count once they
	// did.
	var seen float64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		seen = b.do(map[string]any{"op": "counter"})["n"].(float64)
		if seen == 1000 || time.Now().After(deadline) {
			break
		}
	}
	if seen != 1000 {
		t.Errorf("B sees counter %v, want 1000", seen)
	}

	// Restart the server on the same address; both clients reconnect.
	addr := srv.addr
	srv.stop()
	srv = startServer(t, dir, storage, addr, enc)
	var value any
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := b.try(map[string]any{"op": "get", "key": "color"})
		if r["ok"] == true {
			value = r["value"]
			break
		}
		if !durable {
			// The new database is older than the clients' caches, so
			// ZEO clients refuse it (docs/protocol.md §6.2).
			t.Logf("mappingstorage: after the restart B cannot use the new, empty database: %v", r["error"])
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("B did not reconnect after the restart: %v", r["error"])
		}
		time.Sleep(100 * time.Millisecond)
	}
	if durable {
		if r := a.do(map[string]any{"op": "connected", "timeout": 30}); r["connected"] != true {
			t.Fatal("A did not reconnect after the restart")
		}
		if value != "blue" {
			t.Errorf("after the restart B sees color=%v, want blue (filestorage keeps it)", value)
		}
		if got := a.do(map[string]any{"op": "counter"})["n"].(float64); got != 1000 {
			t.Errorf("after the restart A sees counter %v, want 1000", got)
		}
		a.do(map[string]any{"op": "set", "key": "color", "value": "green"})
		if got := b.do(map[string]any{"op": "wait", "key": "color", "value": "green", "timeout": 10})["value"]; got != "green" {
			t.Errorf("after the restart B sees color=%v, want green", got)
		}
	} else {
		t.Logf("mappingstorage: after the restart B sees color=%v in the new, empty database", value)
	}
}

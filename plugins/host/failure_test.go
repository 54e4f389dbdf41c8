package host_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/plugins/host"
	"github.com/zeoraid/zeoraid/stack"
)

// commit stores oid=data in one transaction and returns its tid.
func commit(t testing.TB, s stack.Storage, oid stack.Oid, serial stack.Tid, data string) stack.Tid {
	t.Helper()
	ctx := context.Background()
	tx, err := s.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Store(ctx, oid, serial, []byte(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Vote(ctx); err != nil {
		t.Fatal(err)
	}
	tid, err := tx.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return tid
}

func fastRestarts() host.Options {
	return host.Options{RestartMin: 10 * time.Millisecond, RestartMax: 100 * time.Millisecond}
}

func timeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// A plugin killed while a call is in flight: the call fails as a backend
// failure, the host starts the plugin again, and the storage (a
// persistent one) is usable again with its data; its watchers saw no gap.
func TestCrashRestart(t *testing.T) {
	dir := t.TempDir()
	log, logs := newLog(t)
	s := open(t, fmt.Sprintf("<testfile>\n  path %s\n</testfile>\n", filepath.Join(dir, "Data.fs")), log, fastRestarts())
	defer s.Close()
	ctx := context.Background()
	ch := make(chan stack.Event, 16)
	s.Watch(ch)
	tid1 := commit(t, s, 0, 0, "one")
	if ev := <-ch; ev.Tid != tid1 {
		t.Fatalf("event %v, want %s", ev, tid1)
	}
	old := s.PID()

	// An iteration keeps a stream open in the plugin: it is in flight
	// when the process is killed.
	it, err := s.Iterate(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _, err = it.Next(ctx)
	if err == nil || !stack.IsBackendFailure(err) {
		t.Fatalf("in-flight call after SIGKILL: %v (backend failure %v)", err, stack.IsBackendFailure(err))
	}
	it.Close()
	logs.await(timeout(t, 30*time.Second), t, "restarted", message("plugin restarted"))
	if n := s.Restarts(); n != 1 {
		t.Fatalf("Restarts() = %d after one restart", n)
	}
	if pid := s.PID(); pid == old || pid == 0 {
		t.Fatalf("pid after restart %d (was %d)", pid, old)
	}
	rev, err := s.LoadBefore(ctx, 0, stack.MaxTid)
	if err != nil || string(rev.Data) != "one" || rev.Serial != tid1 {
		t.Fatalf("load after restart: %+v %v", rev, err)
	}
	tid2 := commit(t, s, 0, tid1, "two")
	if ev := <-ch; ev.Tid != tid2 || ev.Reset {
		t.Fatalf("event after restart %+v, want %s", ev, tid2)
	}
}

// A calls made while the plugin is down fails at once as a backend
// failure; an in-memory plugin restarted empty is refused until a
// replacement is accepted (as a RAID recovery does).
func TestRestartBehind(t *testing.T) {
	log, logs := newLog(t)
	s := open(t, "<testmapping>\n</testmapping>\n", log, host.Options{RestartMin: time.Hour})
	defer s.Close()
	ctx := context.Background()
	commit(t, s, 0, 0, "lost")
	if err := syscall.Kill(s.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	logs.await(timeout(t, 30*time.Second), t, "lost", message("plugin process lost; restarting it"))
	_, err := s.LastTransaction(ctx)
	if !stack.IsBackendFailure(err) || !strings.Contains(err.Error(), "plugin process is down") {
		t.Fatalf("call while down: %v", err)
	}
	logs.await(timeout(t, 30*time.Second), t, "restarted", message("plugin restarted"))
	_, err = s.LastTransaction(ctx)
	if !stack.IsBackendFailure(err) || !strings.Contains(err.Error(), "refusing it") {
		t.Fatalf("call on a storage behind: %v", err)
	}
	s.AcceptReplacement(true)
	if last, err := s.LastTransaction(ctx); err != nil || last != 0 {
		t.Fatalf("accepted replacement: %s %v", last, err)
	}
	s.AcceptReplacement(false)
}

// A call the plugin does not answer is cut off by its context's deadline,
// which crosses to the plugin; it is a backend failure, and the plugin
// stays up.
func TestDeadline(t *testing.T) {
	s := open(t, "<testmapping>\n  block-oid 7\n</testmapping>\n", nil, host.Options{})
	defer s.Close()
	pid := s.PID()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.LoadBefore(ctx, 7, stack.MaxTid)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || !stack.IsBackendFailure(err) {
		t.Fatalf("blocked call: %v", err)
	}
	if took > 5*time.Second {
		t.Fatalf("blocked call returned after %s", took)
	}
	if _, err := s.LastTransaction(context.Background()); err != nil || s.PID() != pid {
		t.Fatalf("after the deadline: %v, pid %d (was %d)", err, s.PID(), pid)
	}
}

// Close runs the plugin storage's own Close before the process is
// stopped.
func TestCloseBeforeKill(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "closed")
	s := open(t, fmt.Sprintf("<testmapping>\n  close-marker %s\n</testmapping>\n", marker), nil, host.Options{})
	pid := s.PID()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(marker); err != nil || string(b) != "closed\n" {
		t.Fatalf("close marker: %q %v", b, err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("plugin process %d after Close: %v", pid, err)
	}
	if _, err := s.LastTransaction(context.Background()); !errors.Is(err, stack.ErrClosed) {
		t.Fatalf("call after Close: %v", err)
	}
	// The storage's Close error comes back through the host's own Close
	// call (go-plugin's shutdown would close it too, but silently).
	bad := filepath.Join(t.TempDir(), "missing", "closed")
	s = open(t, fmt.Sprintf("<testmapping>\n  close-marker %s\n</testmapping>\n", bad), nil, host.Options{})
	if err := s.Close(); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("Close of a storage whose Close fails: %v", err)
	}
}

// A host killed with SIGKILL leaves no plugin behind: the plugin sees its
// stdin close and exits by itself.
func TestOrphanExits(t *testing.T) {
	cmd := exec.Command(orphanHost, testPlugin)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Fscan(out, &pid); err != nil || pid <= 0 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("plugin pid from the host: %d %v", pid, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("plugin %d still running 10s after its host was killed", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// A plugin that writes to stdout before its handshake and odd lines to
// stderr starts anyway; every line is logged as it was written.
func TestNoisyPlugin(t *testing.T) {
	t.Setenv("TESTPLUGIN_NOISE", "1")
	log, logs := newLog(t)
	s := open(t, "<testmapping>\n</testmapping>\n", log, host.Options{})
	if _, err := s.LastTransaction(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The lines written before Serve are all in the log once the storage
	// answers; Close waits for the process's stderr to end.
	s.Close()
	for _, line := range []string{"noise on stdout before the handshake", `{"@level":1}`, `{"@message":5,"@timestamp":"yesterday","@level":["x"]}`, `[1,2,3]`, "plain text on stderr"} {
		found := logs.find(func(e *logrus.Entry) bool { return e.Message == line || e.Data["line"] == line })
		if found == nil {
			t.Errorf("line %q not logged verbatim", line)
		}
	}
	warn := logs.find(message("a warning from the plugin"))
	if warn == nil || warn.Level != logrus.WarnLevel || warn.Data["k"] != "v" || warn.Data["node"] != "main" {
		t.Errorf("plugin's JSON warning: %+v", warn)
	}
}

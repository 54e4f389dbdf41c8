package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// buildBinary compiles zeoraid once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "zeoraid")
	out, err := exec.Command("go", "build", "-o", exe, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return exe
}

// startServe runs `zeoraid serve` with args and waits for its address.
func startServe(t *testing.T, exe, dir string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	ready := filepath.Join(dir, "ready")
	os.Remove(ready)
	cmd := exec.Command(exe, append([]string{"serve", "--ready-file", ready}, args...)...)
	cmd.Dir = dir
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	must(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	must(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	for i := 0; i < 500; i++ {
		if b, err := os.ReadFile(ready); err == nil {
			return cmd, strings.TrimSpace(string(b))
		}
		time.Sleep(20 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
	t.Fatalf("server did not start:\n%s", log)
	return nil, ""
}

// serve writes its pid file, serves, and on SIGTERM shuts down cleanly:
// exit status 0, pid file and unix socket removed.
func TestServeLifecycle(t *testing.T) {
	exe := buildBinary(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "zeo.sock")
	pid := filepath.Join(dir, "zeo.pid")
	conf := filepath.Join(dir, "zeo.conf")
	must(t, os.WriteFile(conf, []byte("<zeo>\n  address "+sock+"\n  pid-filename "+pid+"\n</zeo>\n<mappingstorage/>\n"), 0o644))
	cmd, addr := startServe(t, exe, dir, "-C", conf)
	if addr != sock {
		t.Fatalf("listening on %q, want %q", addr, sock)
	}
	b, err := os.ReadFile(pid)
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(cmd.Process.Pid) {
		t.Fatalf("pid file %q, %v", b, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := zeoproto.Dial(ctx, "unix", sock, zeoproto.ClientOptions{})
	must(t, err)
	if _, err := c.Register(ctx, "1", false); err != nil {
		t.Fatal(err)
	}
	must(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("client still connected after SIGTERM")
	}
	err = cmd.Wait()
	if err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	for _, f := range []string{pid, sock} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s still exists after shutdown", f)
		}
	}
}

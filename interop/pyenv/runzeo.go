package pyenv

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// runzeoWrapper is runzeo.py: ZEO.runzeo that writes the address it bound
// to file descriptor 3. It is embedded so that the zeoraid binary
// (`zeoraid bench -compare`) can start runzeo outside a checkout.
//
//go:embed runzeo.py
var runzeoWrapper string

// startTimeout bounds one start of runzeo: the Python start-up, opening
// the storages and binding the socket.
const startTimeout = time.Minute

// RunzeoOptions say what a runzeo serves and how it is configured.
type RunzeoOptions struct {
	// Storages names the FileStorages to serve, each in its own directory
	// of the data directory (default: one, named "1").
	Storages []string
	// Blobs gives every FileStorage a blob directory.
	Blobs bool
	// Config, when set, is served instead of Storages: storage sections
	// taken verbatim, with paths of the caller's choosing.
	Config string
	// Msgpack makes the server speak M5 ($ZEO_MSGPACK=1), else Z5.
	Msgpack bool
	// ClientConflictResolution sets client-conflict-resolution: vote
	// returns every conflict to the client, as zeoraid's server does.
	ClientConflictResolution bool
	// InvalidationQueueSize sets invalidation-queue-size (0: runzeo's
	// default).
	InvalidationQueueSize int
	// Dir holds the configuration and the data directories. StartRunzeo
	// defaults it to a temporary directory of the test.
	Dir string
}

// Runzeo is a running Python ZEO server. At the first start it binds
// port 0 on the loopback interface and reports the port the kernel gave
// it, so no other process can take the port between its choice and its
// use. Restart and Replace bind that same port again (runzeo sets
// SO_REUSEADDR, so connections of the killed process in TIME_WAIT do not
// stand in the way): clients configured with Addr reconnect to the new
// process.
type Runzeo struct {
	// Addr is where the server listens, host:port.
	Addr string

	ctx    context.Context
	python string
	opts   RunzeoOptions
	logs   lockedBuffer

	mu     sync.Mutex
	gen    int    // data directories made so far
	data   string // the current data directory
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartRunzeoContext starts python's ZEO.runzeo with the options; the
// process is killed when ctx is done. o.Dir is required.
func StartRunzeoContext(ctx context.Context, python string, o RunzeoOptions) (*Runzeo, error) {
	if o.Dir == "" {
		return nil, fmt.Errorf("runzeo: no directory for the configuration and data")
	}
	if o.Config == "" && len(o.Storages) == 0 {
		o.Storages = []string{"1"}
	}
	r := &Runzeo{ctx: ctx, python: python, opts: o}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.start(true); err != nil {
		return nil, err
	}
	return r, nil
}

// StartRunzeo starts runzeo with the test's virtualenv, failing t if it
// cannot; the server is killed at the end of the test, and its output is
// logged if the test failed.
func StartRunzeo(t TB, o RunzeoOptions) *Runzeo {
	t.Helper()
	py := Python(t)
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	r, err := StartRunzeoContext(context.Background(), py, o)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		r.Kill()
		if t.Failed() {
			t.Logf("runzeo at %s, output:\n%s", r.Addr, tail(r.Logs(), 5000))
		}
	})
	return r
}

// StorageDir is the directory of the FileStorage name in the current
// data directory (Data.fs, and blobs when Blobs is set).
func (r *Runzeo) StorageDir(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return filepath.Join(r.data, name)
}

// BlobDir is the server's blob directory of the FileStorage name.
func (r *Runzeo) BlobDir(name string) string {
	return filepath.Join(r.StorageDir(name), "blobs")
}

// Pid is the process id of the running server, 0 when none runs: for
// reading its processor time and memory from /proc (`zeoraid bench`).
func (r *Runzeo) Pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Logs returns everything the server processes wrote so far.
func (r *Runzeo) Logs() string { return r.logs.String() }

// Kill ends the server with SIGKILL (a stopped process too) and waits
// until it is gone. Killing a server that is not running does nothing.
func (r *Runzeo) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kill()
}

func (r *Runzeo) kill() {
	if r.cmd == nil {
		return
	}
	// SIGKILL ends a stopped process too; SIGCONT first would let it
	// run for a moment and answer what it had buffered.
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.exited
	r.cmd = nil
}

// Stop ends the server with SIGTERM, as an operator would, and waits for
// it; after 15 seconds it is killed.
func (r *Runzeo) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
		r.cmd = nil
	case <-time.After(15 * time.Second):
		r.kill()
	}
}

// Signal sends sig (SIGSTOP, SIGCONT, …) to the running server.
func (r *Runzeo) Signal(sig syscall.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		_ = r.cmd.Process.Signal(sig)
	}
}

// Restart kills the server if it runs and starts it again on the same
// address and the same data: the same server back after a crash.
func (r *Runzeo) Restart() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kill()
	return r.start(false)
}

// Replace kills the server if it runs and starts a new one on the same
// address with new, empty storages: the replacement of a failed server.
func (r *Runzeo) Replace() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.opts.Config != "" {
		return fmt.Errorf("runzeo: cannot replace storages given as configuration text")
	}
	r.kill()
	return r.start(true)
}

// start writes the configuration (in a new data directory when fresh)
// and runs the server until it reports its address. r.mu is held.
func (r *Runzeo) start(fresh bool) error {
	if fresh || r.data == "" {
		r.gen++
		r.data = filepath.Join(r.opts.Dir, fmt.Sprintf("data%d", r.gen))
		for _, d := range append([]string{""}, r.opts.Storages...) {
			if err := os.MkdirAll(filepath.Join(r.data, d), 0o755); err != nil {
				return fmt.Errorf("runzeo: %w", err)
			}
		}
	}
	conf := filepath.Join(r.data, "zeo.conf")
	if err := os.WriteFile(conf, []byte(r.config()), 0o644); err != nil {
		return fmt.Errorf("runzeo: %w", err)
	}
	report, reportW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("runzeo: %w", err)
	}
	defer report.Close()
	cmd := exec.CommandContext(r.ctx, r.python, "-c", runzeoWrapper, "-C", conf)
	cmd.Dir = r.opts.Dir
	cmd.Env = append(os.Environ(), "ZEO_MSGPACK=")
	if r.opts.Msgpack {
		cmd.Env = append(os.Environ(), "ZEO_MSGPACK=1")
	}
	cmd.Stdout, cmd.Stderr = &r.logs, &r.logs
	cmd.ExtraFiles = []*os.File{reportW} // descriptor 3
	err = cmd.Start()
	reportW.Close()
	if err != nil {
		return fmt.Errorf("runzeo: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	r.cmd, r.exited = cmd, exited

	// The report ends when the server closes it after writing the address,
	// or when the process dies before.
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(report)
		got <- strings.TrimSpace(string(b))
	}()
	var addr string
	select {
	case addr = <-got:
	case <-time.After(startTimeout):
		r.kill()
		<-got
		return fmt.Errorf("runzeo did not listen within %v:\n%s", startTimeout, tail(r.Logs(), 3000))
	}
	if addr == "" {
		r.kill()
		return fmt.Errorf("runzeo exited before listening:\n%s", tail(r.Logs(), 3000))
	}
	if r.Addr != "" && addr != r.Addr {
		r.kill()
		return fmt.Errorf("runzeo listens on %s after a restart, want %s", addr, r.Addr)
	}
	if r.Addr == "" {
		r.Addr = addr
	}
	return nil
}

// config is the zeo.conf of the next start: port 0 the first time, the
// port then bound afterwards.
func (r *Runzeo) config() string {
	addr := r.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<zeo>\n  address %s\n", addr)
	if r.opts.ClientConflictResolution {
		b.WriteString("  client-conflict-resolution true\n")
	}
	if r.opts.InvalidationQueueSize > 0 {
		fmt.Fprintf(&b, "  invalidation-queue-size %d\n", r.opts.InvalidationQueueSize)
	}
	b.WriteString("</zeo>\n")
	if r.opts.Config != "" {
		b.WriteString(r.opts.Config)
		return b.String()
	}
	for _, name := range r.opts.Storages {
		d := filepath.Join(r.data, name)
		fmt.Fprintf(&b, "<filestorage %s>\n  path %s\n", name, filepath.Join(d, "Data.fs"))
		if r.opts.Blobs {
			fmt.Fprintf(&b, "  blob-dir %s\n", filepath.Join(d, "blobs"))
		}
		b.WriteString("</filestorage>\n")
	}
	return b.String()
}

// lockedBuffer collects a child's output from its copying goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

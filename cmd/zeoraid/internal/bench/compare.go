package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zeoraid/zeoraid/interop/pyenv"
)

// Server is a ZEO server process started for a comparison.
type Server struct {
	Name   string
	Addr   string
	dir    string // its configuration and data, when the report started it
	cmd    *exec.Cmd
	runzeo *pyenv.Runzeo
}

// Pid is the server's process id (0 once stopped).
func (s *Server) Pid() int {
	if s.runzeo != nil {
		return s.runzeo.Pid()
	}
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Stop ends the server with SIGTERM and waits for it.
func (s *Server) Stop() {
	if s.runzeo != nil {
		s.runzeo.Stop()
		return
	}
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

// StorageConfig returns the storage section both servers get: "mapping"
// (in memory) or "file" (a FileStorage in dir).
func StorageConfig(kind, dir string) (string, error) {
	switch kind {
	case "mapping":
		return "<mappingstorage 1>\n</mappingstorage>\n", nil
	case "file":
		return fmt.Sprintf("<filestorage 1>\n  path %s\n</filestorage>\n", filepath.Join(dir, "Data.fs")), nil
	}
	return "", fmt.Errorf("unknown storage kind %q (want mapping or file)", kind)
}

// StartRunzeo starts Python's ZEO server (ZEO.runzeo) on a loopback port
// of the kernel's choice with the given storage section, in dir.
func StartRunzeo(ctx context.Context, python, storage, dir string) (*Server, error) {
	r, err := pyenv.StartRunzeoContext(ctx, python, pyenv.RunzeoOptions{Config: storage, Dir: dir})
	if err != nil {
		return nil, err
	}
	return &Server{Name: "runzeo", Addr: r.Addr, runzeo: r}, nil
}

// StartZeoraid starts `zeoraid serve` (the binary at exe) on a free port
// with the given storage section, in dir.
func StartZeoraid(ctx context.Context, exe, storage, dir string) (*Server, error) {
	conf := filepath.Join(dir, "zeoraid.conf")
	text := "<zeo>\n  address 127.0.0.1:0\n</zeo>\n" + storage
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, err
	}
	ready := filepath.Join(dir, "ready")
	cmd := exec.CommandContext(ctx, exe, "serve", "-C", conf, "--ready-file", ready)
	cmd.Dir = dir
	logs := &tailBuffer{}
	cmd.Stdout, cmd.Stderr = io.Discard, logs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("zeoraid: %w", err)
	}
	s := &Server{Name: "zeoraid", cmd: cmd}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(ready); err == nil {
			s.Addr = strings.TrimSpace(string(b))
			return s, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Stop()
	return nil, fmt.Errorf("zeoraid did not report its address in %s:\n%s", ready, logs.String())
}

// tailBuffer keeps the last 4 kB written to it: a server's log, for the
// error when it does not start.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = append(t.b[:0], t.b[len(t.b)-4096:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// PrintComparison writes a table of both results and zeoraid/runzeo ratios
// (above 1 means zeoraid is better: more operations per second, lower
// latency).
func PrintComparison(w io.Writer, py, gor Result) {
	fmt.Fprintf(w, "%-11s %12s %12s %7s   %10s %10s %7s   %10s %10s\n",
		"phase", "runzeo op/s", "zeoraid op/s", "ratio", "runzeo p50", "zeoraid", "ratio", "runzeo p99", "zeoraid")
	for _, name := range []string{PhaseLoad, PhaseSmall, PhaseLarge} {
		a, b := py.Phase(name), gor.Phase(name)
		fmt.Fprintf(w, "%-11s %12.0f %12.0f %6.2fx   %10v %10v %6.2fx   %10v %10v\n",
			name, a.PerSecond(), b.PerSecond(), ratio(b.PerSecond(), a.PerSecond()),
			a.P50.Round(time.Microsecond), b.P50.Round(time.Microsecond), ratio(float64(a.P50), float64(b.P50)),
			a.P99.Round(time.Microsecond), b.P99.Round(time.Microsecond))
	}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

package bench

import (
	"bufio"
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/zeoraid/zeoraid/stack"
)

// pyClient is pyclient.py: one real Python ZODB client (ClientStorage)
// that loads or commits for a while on a signal and reports its count.
//
//go:embed pyclient.py
var pyClient string

// PythonPhase runs n Python client processes against the server at addr
// doing mode ("load": loads of oids that always reach the server;
// "commit": one-object commits) for d, and measures the server process
// pid's processor time from the moment every client is connected until
// the last has finished.
func PythonPhase(ctx context.Context, python, addr string, pid int, oids []stack.Oid, mode string, n int, d time.Duration, dir string) (Phase, error) {
	name := "python-" + mode
	oidFile := filepath.Join(dir, "oids")
	var b strings.Builder
	for _, o := range oids {
		fmt.Fprintf(&b, "%x\n", uint64(o))
	}
	if err := os.WriteFile(oidFile, []byte(b.String()), 0o644); err != nil {
		return Phase{Name: name}, err
	}
	type proc struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Scanner
		errs  *strings.Builder
	}
	var procs []*proc
	defer func() {
		for _, p := range procs {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	}()
	for range n {
		cmd := exec.CommandContext(ctx, python, "-c", pyClient, addr, mode, strconv.FormatFloat(d.Seconds(), 'f', 3, 64), oidFile)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return Phase{Name: name}, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return Phase{Name: name}, err
		}
		errs := &strings.Builder{}
		cmd.Stderr = errs
		if err := cmd.Start(); err != nil {
			return Phase{Name: name}, fmt.Errorf("python client: %w", err)
		}
		p := &proc{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout), errs: errs}
		procs = append(procs, p)
	}
	line := func(p *proc) (string, error) {
		if p.out.Scan() {
			return strings.TrimSpace(p.out.Text()), nil
		}
		_ = p.cmd.Wait()
		return "", fmt.Errorf("python client ended: %v\n%s", p.out.Err(), tail(p.errs.String(), 2000))
	}
	for _, p := range procs {
		if l, err := line(p); err != nil || l != "ready" {
			return Phase{Name: name}, fmt.Errorf("python client did not get ready (%q): %v", l, err)
		}
	}
	cpu := startCPU(pid)
	start := time.Now()
	for _, p := range procs {
		if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
			return Phase{Name: name}, err
		}
	}
	ph := Phase{Name: name}
	for _, p := range procs {
		l, err := line(p)
		if err != nil {
			return ph, err
		}
		k, err := strconv.Atoi(l)
		if err != nil {
			return ph, fmt.Errorf("python client reported %q", l)
		}
		ph.Ops += k
	}
	ph.Elapsed = time.Since(start)
	var err error
	if ph.CPU, err = cpu.stop(); err != nil {
		return ph, err
	}
	if ph.Ops == 0 {
		return ph, fmt.Errorf("%s: the Python clients did nothing", name)
	}
	return ph, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

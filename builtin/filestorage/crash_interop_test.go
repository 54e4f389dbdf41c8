//go:build interop

package filestorage

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/interop/pyenv"
	"github.com/zeoraid/zeoraid/stack"
)

// ack is one store the child reported as committed.
type ack struct {
	tid     stack.Tid
	oid     stack.Oid
	n, size int
}

// TestCrashSafety kills a committing child process with SIGKILL at random
// points, 55 times on the same Data.fs. After every kill the file must
// reopen, every store the child acknowledged must load (by serial, and as
// the current revision unless a later acknowledged store replaced it),
// and on a sample of runs Python's fstest must find the reopened file
// clean.
func TestCrashSafety(t *testing.T) {
	const runs = 55
	dir := t.TempDir()
	path := filepath.Join(dir, "Data.fs")
	py := "" // fetched on first use
	latest := map[stack.Oid]ack{}
	var acked, truncated, fstested int
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	start := time.Now()
	for run := 0; run < runs; run++ {
		before, _ := os.Stat(path)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		must(t, cmd.Start())
		// Let the child get through its open and a few commits, then kill
		// it wherever it is.
		time.Sleep(time.Duration(20+rng.IntN(250)) * time.Millisecond)
		must(t, cmd.Process.Signal(syscall.SIGKILL))
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("run %d: child ended by itself (%v): %s", run, err, stderr.String())
		}
		sizeAtKill := int64(0)
		if fi, err := os.Stat(path); err == nil {
			sizeAtKill = fi.Size()
		}
		lines := strings.Split(stdout.String(), "\n")
		lines = lines[:len(lines)-1] // a line cut by the kill is not acknowledged
		for _, line := range lines {
			var a ack
			if _, err := fmt.Sscanf(line, "%d %d %d %d", &a.tid, &a.oid, &a.n, &a.size); err != nil {
				t.Fatalf("run %d: child line %q: %v", run, line, err)
			}
			latest[a.oid] = a
			acked++
		}

		s, err := Open(path, Options{}, nil)
		if err != nil {
			t.Fatalf("run %d: reopen after SIGKILL: %v", run, err)
		}
		ctx := context.Background()
		for oid, a := range latest {
			want := crashData(oid, a.n, a.size)
			data, err := s.LoadSerial(ctx, oid, a.tid)
			if err != nil || !bytes.Equal(data, want) {
				t.Fatalf("run %d: acknowledged store of oid %d in %s lost: %v", run, oid, a.tid, err)
			}
			r, err := s.LoadBefore(ctx, oid, stack.MaxTid)
			must(t, err)
			if r.Serial < a.tid {
				t.Fatalf("run %d: oid %d current revision %s is older than the acknowledged %s", run, oid, r.Serial, a.tid)
			}
		}
		info, err := s.Info(ctx)
		must(t, err)
		must(t, s.Close())
		if info.Size < sizeAtKill {
			truncated++
		}
		if before != nil && info.Size < before.Size() {
			t.Fatalf("run %d: the file shrank below its size before the run (%d < %d)", run, info.Size, before.Size())
		}
		if run%5 == 0 {
			if py == "" {
				py = pyenv.Python(t)
			}
			out, err := exec.Command(py, "-m", "ZODB.scripts.fstest", path).CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out)) != 0 {
				t.Fatalf("run %d: fstest after reopen: %v\n%s", run, err, out)
			}
			fstested++
		}
	}
	var sb strings.Builder
	must(t, Check(path, &sb))
	if acked < runs {
		t.Errorf("only %d acknowledged stores over %d runs: the child hardly committed", acked, runs)
	}
	t.Logf("%d runs in %v: %d acknowledged stores, %d kills left a tail that reopen cut, fstest clean on %d runs; %s",
		runs, time.Since(start).Round(time.Millisecond), acked, truncated, fstested, strings.TrimSpace(sb.String()))
}

package filestorage

import (
	"bufio"
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

// crashChildEnv names the Data.fs a re-executed test binary commits to
// in a loop until it is killed (TestCrashSafety).
const crashChildEnv = "ZEORAID_FS_CRASH_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		os.Exit(crashChild(path))
	}
	if path := os.Getenv(openChildEnv); path != "" {
		os.Exit(openChild(path))
	}
	if path := os.Getenv(packChildEnv); path != "" {
		os.Exit(packChild(path))
	}
	os.Exit(m.Run())
}

// crashData is the record the child writes for the n-th store.
func crashData(oid stack.Oid, n, size int) []byte {
	return append([]byte(fmt.Sprintf("oid %d store %d ", oid, n)), bytes.Repeat([]byte{'x'}, size)...)
}

// crashChild opens the Data.fs (recovering whatever the last kill left)
// and commits forever: one to three stores of varied size per
// transaction, to old and new oids. Only after Finish returns does it
// print "tid oid n size" (tid as a decimal number) for each store, so every printed line is an
// acknowledged commit.
func crashChild(path string) int {
	ctx := context.Background()
	s, err := Open(path, Options{}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		return 3
	}
	out := bufio.NewWriter(os.Stdout)
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
	for n := 0; ; n++ {
		tx, err := s.Begin(ctx, stack.TxnMeta{Description: []byte(fmt.Sprintf("crash %d", n))})
		if err != nil {
			fmt.Fprintln(os.Stderr, "child begin:", err)
			return 3
		}
		type store struct {
			oid  stack.Oid
			size int
		}
		var stores []store
		for k := rng.IntN(3); k >= 0; k-- {
			oid := stack.Oid(rng.IntN(40))
			if k == 0 && rng.IntN(4) == 0 {
				oids, _ := s.NewOIDs(ctx, 1)
				oid = oids[0]
			}
			if len(stores) > 0 && stores[len(stores)-1].oid == oid {
				continue
			}
			var serial stack.Tid
			if h, err := s.History(ctx, oid, 1); err == nil {
				serial = h[0].Tid
			}
			size := rng.IntN(3000)
			if err := tx.Store(ctx, oid, serial, crashData(oid, n, size)); err != nil {
				fmt.Fprintln(os.Stderr, "child store:", err)
				return 3
			}
			stores = append(stores, store{oid, size})
		}
		if _, err := tx.Vote(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "child vote:", err)
			return 3
		}
		tid, err := tx.Finish(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child finish:", err)
			return 3
		}
		for _, st := range stores {
			fmt.Fprintf(out, "%d %d %d %d\n", uint64(tid), st.oid, n, st.size)
		}
		out.Flush()
	}
}

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

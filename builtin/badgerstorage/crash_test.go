package badgerstorage_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/builtin/badgerstorage"
	"github.com/zeoraid/zeoraid/builtin/zeoclient"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// buildZeoraid compiles the zeoraid binary into dir.
func buildZeoraid(t *testing.T, dir string) string {
	t.Helper()
	exe := filepath.Join(dir, "zeoraid")
	out, err := exec.Command("go", "build", "-o", exe, "github.com/zeoraid/zeoraid/cmd/zeoraid").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return exe
}

// server is one `zeoraid serve` process.
type server struct {
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan error
}

// startServer runs `zeoraid serve -C conf` and waits until it listens,
// or until it exits (then the error says why).
func startServer(t *testing.T, exe, conf, ready string) (*server, error) {
	t.Helper()
	os.Remove(ready)
	srv := &server{log: &bytes.Buffer{}, done: make(chan error, 1)}
	srv.cmd = exec.Command(exe, "serve", "-C", conf, "--ready-file", ready)
	srv.cmd.Stdout, srv.cmd.Stderr = srv.log, srv.log
	must(t, srv.cmd.Start())
	go func() { srv.done <- srv.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(ready); err == nil {
			return srv, nil
		}
		select {
		case err := <-srv.done:
			return nil, fmt.Errorf("zeoraid serve exited (%v):\n%s", err, srv.log)
		case <-time.After(10 * time.Millisecond):
		}
	}
	srv.kill()
	return nil, fmt.Errorf("zeoraid serve did not start within 30s:\n%s", srv.log)
}

// kill SIGKILLs the server and waits for it.
func (s *server) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// crashConf is a server configuration with a small-memory badgerstorage,
// so that one transaction in four spans several Badger batches.
func crashConf(sock, db string) string {
	return fmt.Sprintf(`<zeo>
  address %s
</zeo>
<badgerstorage 1>
  path %s
  memtable-size 2MB
  block-cache-size 2MB
  index-cache-size 2MB
  value-threshold 16KB
  value-log-file-size 8MB
</badgerstorage>
`, sock, db)
}

// crashRecord is the data of record i of commit n; its size varies so
// that some records go to the value log.
func crashRecord(n, i, size int) []byte {
	return append([]byte(fmt.Sprintf("commit %d record %d ", n, i)), bytes.Repeat([]byte{'x'}, size)...)
}

// acked is a commit the server acknowledged.
type acked struct {
	tid   stack.Tid
	n     int
	oids  []stack.Oid
	sizes []int
}

// TestCrashSafety SIGKILLs `zeoraid serve` with a badgerstorage at a
// random moment while a ZEO client (the zeoclient backend) commits
// through it, 50 times on the same directory. The commits are small, or
// big enough (up to 900KB) to span several Badger batches. After every
// kill the directory must reopen; every acknowledged commit must be
// there, whole; and no transaction may be partial: each has exactly the
// records its description announces. On the first run, a second server
// on the same directory must fail with a clear error.
func TestCrashSafety(t *testing.T) {
	const runs = 50
	dir := t.TempDir()
	exe := buildZeoraid(t, dir)
	db := filepath.Join(dir, "db")
	sock := filepath.Join(dir, "zeo.sock")
	conf := filepath.Join(dir, "zeo.conf")
	must(t, os.WriteFile(conf, []byte(crashConf(sock, db)), 0o644))
	rng := rand.New(rand.NewPCG(5, uint64(time.Now().UnixNano())))
	var all []acked
	var allocated []stack.Oid // every oid the client got, committed or not
	var windows []crashWindow // where each run's checks start
	commitNo := 0
	bigAcked, halfWritten := 0, 0
	start := time.Now()
	for run := 0; run < runs; run++ {
		srv, err := startServer(t, exe, conf, filepath.Join(dir, "ready"))
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if run == 0 {
			second := filepath.Join(dir, "second.conf")
			must(t, os.WriteFile(second, []byte(crashConf(sock+"2", db)), 0o644))
			if s2, err := startServer(t, exe, second, filepath.Join(dir, "ready2")); err == nil {
				s2.kill()
				t.Fatal("a second zeoraid serve opened the same Badger directory")
			} else if !strings.Contains(err.Error(), "in use by another process") {
				t.Fatalf("the second server's error does not say the directory is in use: %v", err)
			}
		}
		if run == 0 {
			windows = append(windows, crashWindow{})
		}
		ctx, cancel := context.WithCancel(context.Background())
		cl, err := zeoclient.Open(ctx, "crash", zeoclient.Options{
			Server: []zconfig.ConnectAddress{{Network: "unix", Path: sock}}, Storage: "1", Wait: true,
		}, quiet())
		if err != nil {
			t.Fatalf("run %d: connect: %v\n%s", run, err, srv.log)
		}
		var mu sync.Mutex
		var runAcks []acked
		first := make(chan struct{})
		var committing sync.WaitGroup
		committing.Add(1)
		seeds := rand.New(rand.NewPCG(rng.Uint64(), uint64(run)))
		go func() {
			defer committing.Done()
			for ctx.Err() == nil {
				mu.Lock()
				n := commitNo
				commitNo++
				mu.Unlock()
				a, err := crashCommit(ctx, cl, n, seeds.Uint64(), &allocated)
				if err != nil {
					return
				}
				mu.Lock()
				runAcks = append(runAcks, a)
				if len(runAcks) == 1 {
					close(first)
				}
				mu.Unlock()
			}
		}()
		select {
		case <-first:
		case <-time.After(30 * time.Second):
			t.Fatalf("run %d: no commit within 30s\n%s", run, srv.log)
		}
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond) // a random moment to die
		srv.kill()
		cancel()
		committing.Wait()
		cl.Close()
		mu.Lock()
		for _, a := range runAcks {
			if len(a.oids) > 20 {
				bigAcked++
			}
		}
		all = append(all, runAcks...)
		mu.Unlock()

		o := badgerstorage.DefaultOptions(db)
		o.MemTableSize, o.BlockCacheSize, o.IndexCacheSize = 2<<20, 2<<20, 2<<20
		o.ValueThreshold, o.ValueLogSize = 16<<10, 8<<20
		var reopenLog bytes.Buffer
		log := logrus.New()
		log.SetOutput(&reopenLog)
		log.SetLevel(logrus.WarnLevel)
		s, err := badgerstorage.Open(o, "reopen", log)
		if err != nil {
			t.Fatalf("run %d: reopen after SIGKILL: %v", run, err)
		}
		if strings.Contains(reopenLog.String(), "left uncommitted") {
			halfWritten++
		}
		// Each run checks what the last two runs wrote (a transaction
		// half-written by one kill shows only once the next run has
		// committed past it); every tenth run and the last check all.
		from := windows[max(run-1, 0)]
		if run%10 == 9 || run == runs-1 {
			from = crashWindow{}
		}
		verifyCrash(t, run, s, all[from.acks:], allocated[from.oids:], from.tid)
		windows = append(windows, crashWindow{acks: len(all), oids: len(allocated), tid: lastTid(t, s)})
		must(t, s.Close())
	}
	if len(all) < runs || bigAcked == 0 {
		t.Fatalf("only %d acknowledged commits (%d big) in %d runs", len(all), bigAcked, runs)
	}
	t.Logf("%d runs in %v: %d acknowledged commits, %d of them spanning Badger batches; %d kills left a half-written transaction that reopen removed",
		runs, time.Since(start).Round(time.Millisecond), len(all), bigAcked, halfWritten)
}

// crashWindow marks what was written before a run: how many acknowledged
// commits and allocated oids, and the last tid.
type crashWindow struct {
	acks, oids int
	tid        stack.Tid
}

func lastTid(t *testing.T, s stack.Storage) stack.Tid {
	tid, err := s.LastTransaction(context.Background())
	must(t, err)
	return tid
}

// crashCommit commits commit n: mostly one to three small records, every
// fourth 30 to 90 records of up to 10KB (several Badger batches). The
// description announces the number of records.
func crashCommit(ctx context.Context, s stack.Storage, n int, seed uint64, allocated *[]stack.Oid) (acked, error) {
	rng := rand.New(rand.NewPCG(seed, uint64(n)))
	k := 1 + rng.IntN(3)
	small := true
	if rng.IntN(4) == 0 {
		k, small = 30+rng.IntN(61), false
	}
	oids, err := s.NewOIDs(ctx, k)
	if err != nil {
		return acked{}, err
	}
	*allocated = append(*allocated, oids...)
	tx, err := s.Begin(ctx, stack.TxnMeta{Description: []byte(fmt.Sprintf("crash %d %d", n, k))})
	if err != nil {
		return acked{}, err
	}
	a := acked{n: n, oids: oids}
	for i, oid := range oids {
		size := rng.IntN(200)
		if !small {
			size = rng.IntN(10 << 10)
		}
		if err := tx.Store(ctx, oid, 0, crashRecord(n, i, size)); err != nil {
			tx.Abort(ctx)
			return acked{}, err
		}
		a.sizes = append(a.sizes, size)
	}
	if _, err := tx.Vote(ctx); err != nil {
		tx.Abort(ctx)
		return acked{}, err
	}
	if a.tid, err = tx.Finish(ctx); err != nil {
		return acked{}, err
	}
	return a, nil
}

// verifyCrash checks a reopened directory: every acknowledged commit
// given loads whole, every transaction after `after` has the records it
// announces, and none of the oids given shows a revision of a
// transaction that did not commit.
func verifyCrash(t *testing.T, run int, s *badgerstorage.Storage, all []acked, allocated []stack.Oid, after stack.Tid) {
	t.Helper()
	ctx := context.Background()
	for _, a := range all {
		for i, oid := range a.oids {
			data, err := s.LoadSerial(ctx, oid, a.tid)
			if err != nil || !bytes.Equal(data, crashRecord(a.n, i, a.sizes[i])) {
				t.Fatalf("run %d: acknowledged commit %d (%s) lost record %d: %v", run, a.n, a.tid, i, err)
			}
		}
	}
	committed := map[stack.Tid]bool{}
	it, err := s.Iterate(ctx, after+1, 0)
	must(t, err)
	defer it.Close()
	for {
		rec, ok, err := it.Next(ctx)
		must(t, err)
		if !ok {
			break
		}
		committed[rec.Tid] = true
		var n, k int
		if _, err := fmt.Sscanf(string(rec.Description), "crash %d %d", &n, &k); err != nil {
			t.Fatalf("run %d: transaction %s: description %q", run, rec.Tid, rec.Description)
		}
		if len(rec.Records) != k {
			t.Fatalf("run %d: transaction %s (commit %d) has %d of its %d records", run, rec.Tid, n, len(rec.Records), k)
		}
	}
	for _, oid := range allocated {
		r, err := s.LoadBefore(ctx, oid, stack.MaxTid)
		if err == nil && r.Serial > after && !committed[r.Serial] {
			t.Fatalf("run %d: object %s shows revision %s of a transaction that did not commit", run, oid, r.Serial)
		}
	}
}

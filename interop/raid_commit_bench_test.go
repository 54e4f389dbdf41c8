//go:build interop && bench

package interop

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// commitWorker is one connection of the mirrored-commit measurement,
// committing new revisions of objects of its own (so that no two
// workers conflict).
type commitWorker struct {
	c    *zeoproto.Client
	rng  *rand.Rand
	txn  int64
	oids []stack.Oid
	tids []stack.Tid // the serial of each of oids
	data []byte
}

func dialCommitWorker(t *testing.T, addr string, objects int) *commitWorker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	network, address := zeoproto.SplitAddress(addr)
	c, err := zeoproto.Dial(ctx, network, address, zeoproto.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(ctx, "1", false); err != nil {
		t.Fatal(err)
	}
	w := &commitWorker{c: c, rng: rand.New(rand.NewPCG(rand.Uint64(), 1)), data: make([]byte, 200)}
	for len(w.oids) < objects {
		oids, err := c.NewOIDs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		w.oids = append(w.oids, oids...)
	}
	w.oids = w.oids[:objects]
	w.tids = make([]stack.Tid, objects)
	if err := w.commit(ctx, objects); err != nil {
		t.Fatal(err)
	}
	return w
}

// commit stores a new revision of n of the worker's objects in one
// transaction, as a ZEO client does: tpc_begin and storea without
// waiting, then vote and tpc_finish.
func (w *commitWorker) commit(ctx context.Context, n int) error {
	w.txn++
	if err := w.c.CallAsync(ctx, "tpc_begin", w.txn, []byte("bench"), []byte(""), zeoproto.Dict{}, nil, " "); err != nil {
		return err
	}
	first := w.rng.IntN(len(w.oids))
	for i := range n {
		k := (first + i) % len(w.oids)
		w.data[0], w.data[1] = byte(w.txn), byte(i)
		if err := w.c.CallAsync(ctx, "storea", w.oids[k], w.tids[k], w.data, w.txn); err != nil {
			return err
		}
	}
	r, err := w.c.Call(ctx, "vote", w.txn)
	if err == nil {
		if s, _ := zeoproto.Seq(r); len(s) > 0 {
			err = fmt.Errorf("vote: %d conflicts", len(s))
		}
	}
	if err != nil {
		_, _ = w.c.Call(ctx, "tpc_abort", w.txn)
		return err
	}
	r, err = w.c.Call(ctx, "tpc_finish", w.txn)
	if err != nil {
		return err
	}
	b, _ := r.([]byte)
	tid, err := stack.TidFromBytes(b)
	if err != nil {
		return err
	}
	for i := range n {
		w.tids[(first+i)%len(w.oids)] = tid
	}
	return nil
}

// load reads one of the worker's objects.
func (w *commitWorker) load(ctx context.Context) error {
	_, err := w.c.LoadBefore(ctx, w.oids[w.rng.IntN(len(w.oids))], stack.MaxTid)
	return err
}

// rate runs op on every worker for d and returns units per second (op
// returns the units it did: objects committed or loaded).
func rate(t *testing.T, ws []*commitWorker, d time.Duration, op func(ctx context.Context, w *commitWorker) (int, error)) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	var units atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	began := time.Now()
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				n, err := op(ctx, w)
				if err != nil {
					t.Error(err)
					return
				}
				units.Add(int64(n))
			}
		}()
	}
	wg.Wait()
	return float64(units.Load()) / time.Since(began).Seconds()
}

// interleaved measures op on each group of workers (one group per
// server) in turns of slice, rounds times, so that every server sees the
// same background load of the shared machine; it returns each group's
// units per second over its turns.
func interleaved(t *testing.T, groups [][]*commitWorker, slice time.Duration, rounds int, op func(ctx context.Context, w *commitWorker) (int, error)) []float64 {
	t.Helper()
	units := make([]float64, len(groups))
	for range rounds {
		for g, ws := range groups {
			units[g] += rate(t, ws, slice, op) * slice.Seconds()
		}
	}
	for g := range units {
		units[g] /= slice.Seconds() * float64(rounds)
	}
	return units
}

// TestRAIDCommitRatios measures mirrored commits and loads as ratios of
// servers measured in the same run, in interleaved turns of 250 ms (the
// machine is shared: absolute numbers mean little, ratios measured side
// by side do): zeoraid serving a RAID of two <zeoclient> children on
// runzeo against one runzeo directly, and a RAID of two <filestorage>
// children against one <filestorage>, each with 4 connections
// committing 1 and 100 objects per commit, and loading. It logs the
// figures and asserts nothing about timing.
func TestRAIDCommitRatios(t *testing.T) {
	const slice, rounds = 250 * time.Millisecond, 16
	dir := t.TempDir()
	direct := startChild(t, "direct")
	rs := newRAIDSetup(t, 2, raidOptions{reads: "random"})
	one := startServer(t, mkdir(t, dir, "one"), fmt.Sprintf("<filestorage 1>\n  path %s\n</filestorage>", filepath.Join(dir, "one", "Data.fs")), "127.0.0.1:0", Z5)
	raid := startServer(t, mkdir(t, dir, "raid"), fmt.Sprintf(
		"<raidstorage 1>\n  <filestorage 1>\n    path %s\n  </filestorage>\n  <filestorage 2>\n    path %s\n  </filestorage>\n</raidstorage>",
		filepath.Join(mkdir(t, dir, "raid", "1"), "Data.fs"), filepath.Join(mkdir(t, dir, "raid", "2"), "Data.fs")), "127.0.0.1:0", Z5)
	names := []string{"runzeo directly", "RAID of 2 zeoclient->runzeo", "zeoraid, 1 filestorage", "zeoraid, RAID of 2 fs"}
	var groups [][]*commitWorker
	for _, addr := range []string{direct.addr, rs.addr(), one.addr, raid.addr} {
		var ws []*commitWorker
		for range 4 {
			w := dialCommitWorker(t, addr, 100)
			t.Cleanup(func() { w.c.Close() })
			ws = append(ws, w)
		}
		groups = append(groups, ws)
	}
	small := interleaved(t, groups, slice, rounds, func(ctx context.Context, w *commitWorker) (int, error) { return 1, w.commit(ctx, 1) })
	large := interleaved(t, groups, slice, rounds, func(ctx context.Context, w *commitWorker) (int, error) { return 100, w.commit(ctx, 100) })
	loads := interleaved(t, groups, slice, rounds, func(ctx context.Context, w *commitWorker) (int, error) { return 1, w.load(ctx) })
	var report strings.Builder
	fmt.Fprintf(&report, "  %-28s %14s %16s %10s   (objects/s)\n", "", "commits 1/txn", "commits 100/txn", "loads")
	for i, name := range names {
		fmt.Fprintf(&report, "  %-28s %14.0f %16.0f %10.0f\n", name, small[i], large[i], loads[i])
	}
	fmt.Fprintf(&report, "  RAID of 2 zeoclient->runzeo / runzeo: commits 1/txn %.2fx, 100/txn %.2fx, loads %.2fx (goal >= 0.8x commits)\n",
		small[1]/small[0], large[1]/large[0], loads[1]/loads[0])
	fmt.Fprintf(&report, "  RAID of 2 filestorages / 1 filestorage: commits 1/txn %.2fx, 100/txn %.2fx, loads %.2fx (goal >= 0.8x commits, >= 0.9x loads)\n",
		small[3]/small[2], large[3]/large[2], loads[3]/loads[2])
	t.Logf("mirrored commits and loads, 4 connections per server, %d turns of %s each, interleaved:\n%s", rounds, slice, report.String())
}

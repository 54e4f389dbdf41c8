//go:build interop

package filestorage

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/interop/pyenv"
	"github.com/zeoraid/zeoraid/stack"
)

type openResult struct {
	OpenSec    float64 `json:"open_sec"`
	MaxRSSKB   int64   `json:"maxrss_kb"`
	BaseRSSKB  int64   `json:"base_rss_kb"`
	RSSAfterGC int64   `json:"rss_after_gc_kb"`
	Objects    int     `json:"objects"`
}

// TestPerfCompare prints, without asserting on them, Go's and Python's
// loads, iterated records and commits per second on the same
// 100,000-object file, and on a 1,000,000-object file their startup time
// and memory with and without .index and a pack without GC. It takes a few minutes: run it with
// ZEORAID_BIG_BENCH=1 go test -run TestPerfCompare -v.
func TestPerfCompare(t *testing.T) {
	if os.Getenv("ZEORAID_BIG_BENCH") != "1" {
		t.Skip("set ZEORAID_BIG_BENCH=1 to run the Python comparison benchmarks")
	}
	const seconds = 3
	dir := t.TempDir()
	small := filepath.Join(dir, "small.fs")
	writeBenchFile(t, small, 100_000, 1000)
	orig, err := os.ReadFile(small)
	must(t, err)
	pyCopy := filepath.Join(dir, "py.fs")
	must(t, os.WriteFile(pyCopy, orig, 0o644))
	var py struct {
		Loads   float64 `json:"loads_per_sec"`
		Records float64 `json:"iterated_records_per_sec"`
		Commits float64 `json:"commits_per_sec"`
	}
	must(t, json.Unmarshal(pyenv.Run(t, "testdata/bench.py", "ops", pyCopy, strconv.Itoa(seconds)), &py))

	s, err := Open(small, Options{}, nil)
	must(t, err)
	ctx := context.Background()
	oids := make([]stack.Oid, 0, s.ix.len())
	for oid := range s.ix.all() {
		oids = append(oids, oid)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	n, start := 0, time.Now()
	for time.Since(start) < seconds*time.Second {
		for range 256 {
			if _, err := s.LoadBefore(ctx, oids[rng.IntN(len(oids))], stack.MaxTid); err != nil {
				t.Fatal(err)
			}
		}
		n += 256
	}
	goLoads := float64(n) / time.Since(start).Seconds()
	n, start = 0, time.Now()
	it, err := s.Iterate(ctx, 0, 0)
	must(t, err)
	for {
		rec, ok, err := it.Next(ctx)
		must(t, err)
		if !ok {
			break
		}
		n += len(rec.Records)
	}
	it.Close()
	goRecords := float64(n) / time.Since(start).Seconds()
	newOids, _ := s.NewOIDs(ctx, 1)
	var serial stack.Tid
	n, start = 0, time.Now()
	for time.Since(start) < seconds*time.Second {
		serial = commitOne(t, s, newOids[0], serial)
		n++
	}
	goCommits := float64(n) / time.Since(start).Seconds()
	s.Close()
	t.Logf("100,000 objects, one goroutine / one Python thread:")
	t.Logf("  %-22s %12s %12s %7s", "", "go", "python", "go/py")
	t.Logf("  %-22s %12.0f %12.0f %7.2f", "loadBefore per second", goLoads, py.Loads, goLoads/py.Loads)
	t.Logf("  %-22s %12.0f %12.0f %7.2f", "iterated records / s", goRecords, py.Records, goRecords/py.Records)
	t.Logf("  %-22s %12.0f %12.0f %7.2f", "commits per second", goCommits, py.Commits, goCommits/py.Commits)

	big := filepath.Join(dir, "big.fs")
	start = time.Now()
	writeBenchFile(t, big, 1_000_000, 1000)
	updateObjects(t, big, 10_000, 1000)
	fi, _ := os.Stat(big)
	t.Logf("1,000,000 objects (10,000 with a second revision): %d MB written by Go in %v", fi.Size()>>20, time.Since(start).Round(time.Millisecond))
	t.Logf("  %-28s %10s %10s %12s %12s", "open (read-only)", "go s", "python s", "go peak MB", "python peak MB")
	for _, withIndex := range []bool{true, false} {
		if !withIndex {
			must(t, os.Remove(big+".index"))
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), openChildEnv+"="+big)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("Go open child: %v", err)
		}
		var g, p openResult
		must(t, json.Unmarshal(out, &g))
		must(t, json.Unmarshal(pyenv.Run(t, "testdata/bench.py", "open", big), &p))
		if g.Objects != 1_000_000 || p.Objects != 1_000_000 {
			t.Fatalf("objects seen: go %d, python %d", g.Objects, p.Objects)
		}
		label := "with .index"
		if !withIndex {
			label = "without .index (scan)"
		}
		t.Logf("  %-28s %10.3f %10.3f %12d %12d   (before open: go %d MB, python %d MB; after GC: go %d MB, python %d MB)", label,
			g.OpenSec, p.OpenSec, g.MaxRSSKB>>10, p.MaxRSSKB>>10, g.BaseRSSKB>>10, p.BaseRSSKB>>10, g.RSSAfterGC>>10, p.RSSAfterGC>>10)
	}

	// Pack without GC at the present (dropping the 10,000 old revisions),
	// each on its own copy, in a child process.
	bigData, err := os.ReadFile(big)
	must(t, err)
	goPack, pyPack := filepath.Join(dir, "gopack.fs"), filepath.Join(dir, "pypack.fs")
	must(t, os.WriteFile(goPack, bigData, 0o644))
	must(t, os.WriteFile(pyPack, bigData, 0o644))
	bigData = nil
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), packChildEnv+"="+goPack)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("Go pack child: %v", err)
	}
	var g, p packResult
	must(t, json.Unmarshal(out, &g))
	must(t, json.Unmarshal(pyenv.Run(t, "testdata/bench.py", "pack", pyPack), &p))
	gb, _ := os.ReadFile(goPack)
	pb, _ := os.ReadFile(pyPack)
	t.Logf("  pack without GC: go %.3f s, peak %d MB; python %.3f s, peak %d MB; results identical: %v (%d MB)",
		g.PackSec, g.MaxRSSKB>>10, p.PackSec, p.MaxRSSKB>>10, bytes.Equal(gb, pb), len(gb)>>20)
}

// updateObjects gives n objects of the file at path (from oid 2: oid 1
// is the one writeBenchFile replaced by the root) a second revision,
// perTxn per transaction.
func updateObjects(tb testing.TB, path string, n, perTxn int) {
	ctx := context.Background()
	s, err := Open(path, Options{}, nil)
	must(tb, err)
	defer s.Close()
	for oid := stack.Oid(2); oid < stack.Oid(n+2); {
		tx, err := s.Begin(ctx, stack.TxnMeta{})
		must(tb, err)
		for k := 0; k < perTxn; k, oid = k+1, oid+1 {
			h, err := s.History(ctx, oid, 1)
			must(tb, err)
			must(tb, tx.Store(ctx, oid, h[0].Tid, benchData))
		}
		_, err = tx.Vote(ctx)
		must(tb, err)
		_, err = tx.Finish(ctx)
		must(tb, err)
	}
}

package filestorage

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/stack"
)

// benchData is a 200-byte record, the same bytes testdata/bench.py stores.
var benchData = append([]byte("\x80\x03}q\x00."), bytes.Repeat([]byte{'x'}, 193)...)

// writeBenchFile writes a Data.fs of objects new objects, perTxn per
// transaction, each with benchData, and closes it (saving the .index).
func writeBenchFile(tb testing.TB, path string, objects, perTxn int) {
	tb.Helper()
	ctx := context.Background()
	s, err := Open(path, Options{Create: true}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for done := 0; done < objects; {
		tx, err := s.Begin(ctx, stack.TxnMeta{})
		if err != nil {
			tb.Fatal(err)
		}
		n := min(perTxn, objects-done)
		oids, _ := s.NewOIDs(ctx, n)
		if done == 0 {
			oids[0] = 0 // the root
		}
		for _, oid := range oids {
			if err := tx.Store(ctx, oid, 0, benchData); err != nil {
				tb.Fatal(err)
			}
		}
		if _, err := tx.Vote(ctx); err != nil {
			tb.Fatal(err)
		}
		if _, err := tx.Finish(ctx); err != nil {
			tb.Fatal(err)
		}
		done += n
	}
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
}

func benchStorage(b *testing.B, objects int) (*Storage, []stack.Oid) {
	b.Helper()
	path := filepath.Join(b.TempDir(), "Data.fs")
	writeBenchFile(b, path, objects, 1000)
	s, err := Open(path, Options{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	oids := make([]stack.Oid, 0, objects)
	for oid := range s.ix.all() {
		oids = append(oids, oid)
	}
	return s, oids
}

// BenchmarkLoadBefore is loadBefore(oid, maxtid) of random objects of a
// 100,000-object file, one goroutine (as bench.py) and in parallel.
func BenchmarkLoadBefore(b *testing.B) {
	s, oids := benchStorage(b, 100_000)
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 2))
		for b.Loop() {
			if _, err := s.LoadBefore(ctx, oids[rng.IntN(len(oids))], stack.MaxTid); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			rng := rand.New(rand.NewPCG(rand.Uint64(), 2))
			for pb.Next() {
				if _, err := s.LoadBefore(ctx, oids[rng.IntN(len(oids))], stack.MaxTid); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// commitOne commits one store of benchData to oid and returns its serial.
func commitOne(tb testing.TB, s *Storage, oid stack.Oid, serial stack.Tid) stack.Tid {
	ctx := context.Background()
	tx, err := s.Begin(ctx, stack.TxnMeta{})
	if err == nil {
		err = tx.Store(ctx, oid, serial, benchData)
	}
	if err == nil {
		_, err = tx.Vote(ctx)
	}
	var tid stack.Tid
	if err == nil {
		tid, err = tx.Finish(ctx)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return tid
}

// BenchmarkCommit is a full two-phase commit of one 200-byte store, with
// the fsyncs of vote and finish.
func BenchmarkCommit(b *testing.B) {
	s, _ := benchStorage(b, 10_000)
	oids, _ := s.NewOIDs(context.Background(), 1)
	var serial stack.Tid
	for b.Loop() {
		serial = commitOne(b, s, oids[0], serial)
	}
}

// BenchmarkRestoreCopy copies, through Iterate and Restore with prevTxn
// (what RAID recovery and copyTransactionsFrom do), a file whose 5,000
// transactions each hold a backpointer to the first transaction. One op
// is one transaction copied.
func BenchmarkRestoreCopy(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	src, err := Open(filepath.Join(dir, "src.fs"), Options{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	first := commitOne(b, src, 0, 0)
	const txns = 5000
	for i := 1; i < txns; i++ {
		tx, _ := src.Begin(ctx, stack.TxnMeta{})
		oids, _ := src.NewOIDs(ctx, 1)
		must(b, tx.Store(ctx, oids[0], 0, benchData))
		must(b, tx.(stack.RestoreTxn).Restore(ctx, 0, benchData, first))
		_, err := tx.Vote(ctx)
		must(b, err)
		_, err = tx.Finish(ctx)
		must(b, err)
	}
	b.ResetTimer()
	for round := 0; round*txns < b.N; round++ {
		dst, err := Open(filepath.Join(dir, fmt.Sprintf("dst%d.fs", round)), Options{Create: true}, nil)
		must(b, err)
		it, err := src.Iterate(ctx, 0, 0)
		must(b, err)
		for {
			rec, ok, err := it.Next(ctx)
			must(b, err)
			if !ok {
				break
			}
			tx, err := dst.Begin(ctx, rec.TxnMeta)
			must(b, err)
			for _, r := range rec.Records {
				must(b, tx.(stack.RestoreTxn).Restore(ctx, r.Oid, r.Data, r.DataTxn))
			}
			_, err = tx.Vote(ctx)
			must(b, err)
			_, err = tx.Finish(ctx)
			must(b, err)
		}
		it.Close()
		dst.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(b.N, txns)), "ns/txn")
}

// BenchmarkRecordIterNext walks every object of a 20,000-object file
// with record_iternext; one op is one object.
func BenchmarkRecordIterNext(b *testing.B) {
	s, oids := benchStorage(b, 20_000)
	ctx := context.Background()
	b.ResetTimer()
	n := 0
	for n < b.N {
		for from, more := stack.Oid(0), true; more && n < b.N; n++ {
			var err error
			_, from, more, err = s.RecordIterNext(ctx, from)
			must(b, err)
		}
	}
	_ = oids
}

// openChildEnv names a Data.fs a re-executed test binary opens read-only
// to report its startup time and memory (TestPerfCompare).
const openChildEnv = "ZEORAID_FS_OPEN_CHILD"

// procStatusKB reads a "Vm…:" line of /proc/self/status, in kB.
func procStatusKB(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return -1
}

// openChild opens path read-only and prints what bench.py open prints.
func openChild(path string) int {
	base := procStatusKB("VmHWM")
	start := time.Now()
	s, err := Open(path, Options{ReadOnly: true}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	elapsed := time.Since(start)
	runtime.GC()
	out, _ := json.Marshal(map[string]any{
		"open_sec": elapsed.Seconds(), "maxrss_kb": procStatusKB("VmHWM"), "base_rss_kb": base,
		"rss_after_gc_kb": procStatusKB("VmRSS"), "objects": s.ix.len(),
	})
	fmt.Println(string(out))
	s.Close()
	return 0
}

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
	must(t, json.Unmarshal(runPy(t, "testdata/bench.py", "ops", pyCopy, strconv.Itoa(seconds)), &py))

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
		must(t, json.Unmarshal(runPy(t, "testdata/bench.py", "open", big), &p))
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
	must(t, json.Unmarshal(runPy(t, "testdata/bench.py", "pack", pyPack), &p))
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

// packChildEnv names a Data.fs a re-executed test binary packs without
// GC at the present, reporting time and memory (TestPerfCompare).
const packChildEnv = "ZEORAID_FS_PACK_CHILD"

type packResult struct {
	PackSec  float64 `json:"pack_sec"`
	MaxRSSKB int64   `json:"maxrss_kb"`
}

// packChild packs path and prints what bench.py pack prints.
func packChild(path string) int {
	s, err := Open(path, Options{}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	defer s.Close()
	time.Sleep(10 * time.Millisecond) // the pack time is after the last commit
	start := time.Now()
	if err := s.Pack(context.Background(), time.Now(), false); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	out, _ := json.Marshal(packResult{PackSec: time.Since(start).Seconds(), MaxRSSKB: procStatusKB("VmHWM")})
	fmt.Println(string(out))
	return 0
}

// BenchmarkIterate reads every transaction of a 100,000-object file (100
// transactions of 1,000 records) with Iterate, as RAID recovery and
// copyTransactionsFrom do; one op is one record.
func BenchmarkIterate(b *testing.B) {
	s, _ := benchStorage(b, 100_000)
	ctx := context.Background()
	b.ResetTimer()
	for n := 0; n < b.N; {
		it, err := s.Iterate(ctx, 0, 0)
		must(b, err)
		for {
			rec, ok, err := it.Next(ctx)
			must(b, err)
			if !ok {
				break
			}
			n += len(rec.Records)
		}
		it.Close()
	}
}

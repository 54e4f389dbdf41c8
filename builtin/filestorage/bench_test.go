package filestorage

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
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

package badgerstorage_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/builtin/badgerstorage"
	"github.com/zeoraid/zeoraid/builtin/filestorage"
	"github.com/zeoraid/zeoraid/stack"
)

// The benchmarks compare badgerstorage (default options) with
// filestorage in process, on the same data: go test -run '^$' -bench .
// ./builtin/badgerstorage/ (BENCH_OBJECTS sets the database size,
// 100000 by default).

// backend opens and reopens one kind of storage in dir.
type backend struct {
	name string
	open func(b *testing.B, dir string) stack.Storage
	disk func(b *testing.B, dir string) int64
}

var backends = []backend{
	{
		name: "badger",
		open: func(b *testing.B, dir string) stack.Storage {
			s, err := badgerstorage.Open(badgerstorage.DefaultOptions(filepath.Join(dir, "db")), "bench", quiet())
			must(b, err)
			return s
		},
		disk: func(b *testing.B, dir string) int64 { return diskUsage(b, filepath.Join(dir, "db")) },
	},
	{
		name: "filestorage",
		open: func(b *testing.B, dir string) stack.Storage {
			s, err := filestorage.Open(filepath.Join(dir, "Data.fs"), filestorage.Options{PackGC: true}, quiet())
			must(b, err)
			return s
		},
		disk: func(b *testing.B, dir string) int64 {
			return diskUsage(b, filepath.Join(dir, "Data.fs")) + diskUsage(b, filepath.Join(dir, "Data.fs.index"))
		},
	},
}

func benchObjects() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_OBJECTS")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

// populate writes n objects of about 300 bytes in commits of 1000, a
// root referencing all of them, then rewrites a tenth of them twice
// (history for pack to remove).
func populate(b testing.TB, s stack.Storage, n int) {
	ctx := context.Background()
	serial := make([]stack.Tid, n)
	write := func(oids []int, tag string) {
		tx, err := s.Begin(ctx, stack.TxnMeta{})
		must(b, err)
		for _, i := range oids {
			must(b, tx.Store(ctx, stack.Oid(i), serial[i], benchRecord(i, tag)))
		}
		_, err = tx.Vote(ctx)
		must(b, err)
		tid, err := tx.Finish(ctx)
		must(b, err)
		for _, i := range oids {
			serial[i] = tid
		}
	}
	var batch []int
	for i := 0; i < n; i++ {
		batch = append(batch, i)
		if len(batch) == 1000 || i == n-1 {
			write(batch, "v1")
			batch = batch[:0]
		}
	}
	all := make([]stack.Oid, 0, n)
	for i := 1; i < n; i++ {
		all = append(all, stack.Oid(i))
	}
	tx, err := s.Begin(ctx, stack.TxnMeta{})
	must(b, err)
	must(b, tx.Store(ctx, 0, serial[0], refRecord("root", all...))) // everything stays reachable
	_, err = tx.Vote(ctx)
	must(b, err)
	serial[0], err = tx.Finish(ctx)
	must(b, err)
	for r := 0; r < 2; r++ {
		for i := 0; i < n; i += 10 * 1000 {
			batch = batch[:0]
			for j := max(i, 10); j < min(i+10*1000, n); j += 10 { // not the root
				batch = append(batch, j)
			}
			write(batch, fmt.Sprint("v", r+2))
		}
	}
}

func benchRecord(i int, tag string) []byte {
	return refRecord(fmt.Sprintf("object %d %s %s", i, tag, strings.Repeat("p", 250)))
}

// rssKB is the process's resident set size.
func rssKB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

func BenchmarkStorage(b *testing.B) {
	n := benchObjects()
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			dir := b.TempDir()
			s := be.open(b, dir)
			start := time.Now()
			populate(b, s, n)
			b.Logf("%s: %d objects written in %v", be.name, n, time.Since(start).Round(time.Millisecond))
			must(b, s.Close())
			var opened stack.Storage
			b.Run("open", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if opened != nil {
						must(b, opened.Close())
					}
					runtime.GC()
					before := rssKB()
					t0 := time.Now()
					opened = be.open(b, dir)
					b.ReportMetric(float64(time.Since(t0).Microseconds())/1000, "open-ms")
					b.ReportMetric(float64(rssKB()-before)/1024, "open-rss-MB")
				}
			})
			if opened == nil { // the open benchmark was not selected
				opened = be.open(b, dir)
			}
			s = opened
			defer func() { s.Close() }()
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(1, 2))
			load := func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					oid := stack.Oid(rng.IntN(n))
					if _, err := s.LoadBefore(ctx, oid, stack.MaxTid); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.Run("load-cold", func(b *testing.B) {
				must(b, s.Close())
				s = be.open(b, dir)
				b.ResetTimer()
				load(b)
			})
			b.Run("load-warm", func(b *testing.B) {
				load(b)
				b.ReportMetric(float64(rssKB())/1024, "process-rss-MB")
			})
			b.Run("load-history", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					oid := stack.Oid(10 + rng.IntN(n/10-1)*10) // rewritten objects
					h, err := s.History(ctx, oid, 3)
					if err != nil || len(h) != 3 {
						b.Fatalf("history of %s: %d entries, %v", oid, len(h), err)
					}
					if _, err := s.LoadBefore(ctx, oid, h[0].Tid); err != nil {
						b.Fatal(err)
					}
				}
			})
			for _, k := range []int{1, 100} {
				next := n + 1_000_000*k // new oids, across the runs of the benchmark
				b.Run(fmt.Sprintf("commit-%d", k), func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						tx, err := s.Begin(ctx, stack.TxnMeta{})
						must(b, err)
						for j := 0; j < k; j++ {
							must(b, tx.Store(ctx, stack.Oid(next), 0, benchRecord(next, "new")))
							next++
						}
						_, err = tx.Vote(ctx)
						must(b, err)
						_, err = tx.Finish(ctx)
						must(b, err)
					}
				})
			}
			b.Run("iterate", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					records := 0
					for _, rec := range iterateAll(b, s) {
						records += len(rec.Records)
					}
					b.ReportMetric(float64(records), "records")
				}
			})
			b.Run("pack", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					syscall.Sync()
					before := be.disk(b, dir)
					p, _ := stack.AsPacker(s)
					t0 := time.Now()
					must(b, p.Pack(ctx, time.Now(), true))
					b.ReportMetric(float64(time.Since(t0).Milliseconds()), "pack-ms")
					syscall.Sync()
					b.ReportMetric(float64(before)/(1<<20), "disk-before-MB")
					b.ReportMetric(float64(be.disk(b, dir))/(1<<20), "disk-after-MB")
				}
			})
		})
	}
}

// BenchmarkEmptyOpen measures what opening an empty badgerstorage costs
// in memory: with the default (small) settings, and with Badger's own
// defaults for comparison.
func BenchmarkEmptyOpen(b *testing.B) {
	for _, c := range []struct {
		name string
		tune func(*badgerstorage.Options)
	}{
		{"defaults", func(*badgerstorage.Options) {}},
		{"badger-defaults", func(o *badgerstorage.Options) {
			o.MemTableSize, o.NumMemtables, o.BlockCacheSize, o.IndexCacheSize = 64<<20, 5, 256<<20, 0
			o.ValueThreshold, o.ValueLogSize, o.NumCompactors = 1<<20, 1<<30-1, 4
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				o := badgerstorage.DefaultOptions(filepath.Join(b.TempDir(), "db"))
				c.tune(&o)
				runtime.GC()
				var m0, m1 runtime.MemStats
				runtime.ReadMemStats(&m0)
				before := rssKB()
				s, err := badgerstorage.Open(o, "bench", quiet())
				must(b, err)
				// one small commit touches the memtable and the caches
				commitOne(b, s, 1, 0, string(bytes.Repeat([]byte{'x'}, 100)))
				runtime.ReadMemStats(&m1)
				b.ReportMetric(float64(rssKB()-before)/1024, "rss-MB")
				b.ReportMetric(float64(m1.Sys-m0.Sys)/(1<<20), "go-sys-MB")
				must(b, s.Close())
			}
		})
	}
}

package sqlitestorage_test

import (
	"context"
	"fmt"
	"math/rand"
	"testing"

	"github.com/zeoraid/zeoraid/examples/plugins/sqlitestorage"
	"github.com/zeoraid/zeoraid/stack"
)

// Run with: go test -run '^$' -bench . ./examples/plugins/sqlitestorage

const benchObjects = 10000

// populated opens a storage holding benchObjects objects of 200 bytes,
// written 1000 to a transaction.
func populated(b *testing.B) *sqlitestorage.Storage {
	s := open(b, testOptions(b))
	b.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	data := make([]byte, 200)
	for first := 0; first < benchObjects; first += 1000 {
		txn, err := s.Begin(ctx, stack.TxnMeta{})
		if err != nil {
			b.Fatal(err)
		}
		for oid := first; oid < first+1000; oid++ {
			if err := txn.Store(ctx, stack.Oid(oid), 0, data); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := txn.Vote(ctx); err != nil {
			b.Fatal(err)
		}
		if _, err := txn.Finish(ctx); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// BenchmarkLoad is loadBefore of the current revision of random objects
// from parallel goroutines, as a ZEO server's clients load.
func BenchmarkLoad(b *testing.B) {
	s := populated(b)
	ctx := context.Background()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewSource(rand.Int63()))
		for pb.Next() {
			if _, err := s.LoadBefore(ctx, stack.Oid(rng.Intn(benchObjects)), stack.MaxTid); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "loads/s")
}

// BenchmarkCommit is one durable transaction after another (each COMMIT
// syncs the WAL), each changing n objects of 200 bytes.
func BenchmarkCommit(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			s := open(b, testOptions(b))
			defer s.Close()
			ctx := context.Background()
			data := make([]byte, 200)
			serials := make([]stack.Tid, n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				txn, err := s.Begin(ctx, stack.TxnMeta{})
				if err != nil {
					b.Fatal(err)
				}
				for k := range serials {
					if err := txn.Store(ctx, stack.Oid(k), serials[k], data); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := txn.Vote(ctx); err != nil {
					b.Fatal(err)
				}
				tid, err := txn.Finish(ctx)
				if err != nil {
					b.Fatal(err)
				}
				for k := range serials {
					serials[k] = tid
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
		})
	}
}

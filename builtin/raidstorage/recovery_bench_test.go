package raidstorage_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/builtin/filestorage"
	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

func openFS(b *testing.B, path string) *filestorage.Storage {
	b.Helper()
	s, err := filestorage.Open(path, filestorage.Options{Path: zconfig.ExistingDirPath(path)}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkRecoveryFileStorage measures a recovery copying 2,000
// transactions of 4 records of 5,000 bytes (40 MB) between two
// filestorages; it reports MB/s and transactions/s.
func BenchmarkRecoveryFileStorage(b *testing.B) {
	const txns, records, size = 2000, 4, 5000
	ctx := context.Background()
	dir := b.TempDir()
	src := openFS(b, filepath.Join(dir, "src.fs"))
	defer src.Close()
	rec := make([]byte, size)
	serials := map[stack.Oid]stack.Tid{}
	for i := range txns {
		txn, err := src.Begin(ctx, stack.TxnMeta{Description: []byte(fmt.Sprint(i))})
		if err != nil {
			b.Fatal(err)
		}
		for j := range records {
			o := stack.Oid(1 + (i*records+j)%500)
			rec[0], rec[1] = byte(i), byte(j)
			if err := txn.Store(ctx, o, serials[o], rec); err != nil {
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
		for j := range records {
			serials[stack.Oid(1+(i*records+j)%500)] = tid
		}
	}
	b.ResetTimer()
	for n := range b.N {
		dst := openFS(b, filepath.Join(dir, fmt.Sprintf("dst%d.fs", n)))
		r, err := raidstorage.Open(ctx, raidstorage.Config{Path: "main", Names: []string{"1", "2"},
			Children: []stack.Storage{src, dst}, Options: raidstorage.DefaultOptions()})
		if err != nil {
			b.Fatal(err)
		}
		began := time.Now()
		if err := r.Recover("2", false); err != nil {
			b.Fatal(err)
		}
		for {
			st, reason, _ := r.ChildState("2")
			if st == raidstorage.Optimal {
				break
			}
			if st == raidstorage.Degraded {
				b.Fatal(reason)
			}
			time.Sleep(time.Millisecond)
		}
		took := time.Since(began).Seconds()
		b.ReportMetric(float64(txns*records*size)/1e6/took, "MB/s")
		b.ReportMetric(txns/took, "txn/s")
		r.Close()
		dst.Close()
	}
}

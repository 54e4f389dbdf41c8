package host_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/plugins/host"
	"github.com/zeoraid/zeoraid/stack"
)

// The same storage in process and through a plugin process, loads and
// commits pipelined (parallel callers): go test -bench . ./plugins/host
// reports each one's rate; the plugin's cost is the ratio.
func BenchmarkLoads(b *testing.B) {
	for _, where := range []string{"inprocess", "plugin", "plugin-mtls"} {
		b.Run(where, func(b *testing.B) {
			s := benchStorage(b, where)
			defer s.Close()
			tid := commit(b, s, 1, 0, string(bigData(512)))
			ctx := context.Background()
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.LoadBefore(ctx, 1, tid+1); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "loads/s")
		})
	}
}

func BenchmarkCommits(b *testing.B) {
	for _, where := range []string{"inprocess", "plugin", "plugin-mtls"} {
		b.Run(where, func(b *testing.B) {
			s := benchStorage(b, where)
			defer s.Close()
			ctx := context.Background()
			var next atomic.Uint64
			var mu sync.Mutex
			data := bigData(512)
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					oid := stack.Oid(next.Add(1))
					// One commit at a time, from begin to finish, as a
					// mount's commit lock makes it (a ZEO server replays a
					// transaction's stores under the lock at its vote).
					mu.Lock()
					tx, err := s.Begin(ctx, stack.TxnMeta{})
					if err == nil {
						err = tx.Store(ctx, oid, 0, data)
					}
					if err == nil {
						if _, err = tx.Vote(ctx); err == nil {
							_, err = tx.Finish(ctx)
						}
					}
					mu.Unlock()
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
		})
	}
}

func benchStorage(b *testing.B, where string) stack.Storage {
	if where == "inprocess" {
		m, _ := stack.Lookup("mappingstorage")
		s, err := m.Open(context.Background(), &stack.Node{Path: "main"}, &mappingstorage.Options{Name: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	return open(b, fmt.Sprintf("<testmapping>\n  name %s\n</testmapping>\n", "bench"), quiet(), host.Options{AutoMTLS: where == "plugin-mtls"})
}

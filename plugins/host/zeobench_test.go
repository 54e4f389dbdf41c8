package host_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/zeoraid/zeoraid/builtin/filestorage"
	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/plugins/host"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
	"github.com/zeoraid/zeoraid/zconfig"
)

// zeoClients is how many ZEO connections the ZEO benchmarks drive.
const zeoClients = 16

// BenchmarkZEO measures what a ZEO client sees: loads and small commits
// through zeoraid's ZEO server over a storage in process, and over the
// same storage through a plugin (go test -run '^$' -bench ZEO
// ./plugins/host). The clients run in the test process, so each rate
// includes the client's own cost in both cases.
func BenchmarkZEO(b *testing.B) {
	for _, kind := range []string{"mapping", "file"} {
		for _, where := range []string{"inprocess", "plugin"} {
			b.Run(kind+"/"+where+"/loads", func(b *testing.B) {
				clients := zeoServer(b, kind, where)
				oid, tid := zeoCommit(b, clients[0], 0, 0)
				ctx := context.Background()
				var next atomic.Int64
				b.ResetTimer()
				zeoParallel(b, clients, func(c *zeoproto.Client) error {
					_, err := c.LoadBefore(ctx, oid, tid+1)
					return err
				}, &next)
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "loads/s")
			})
			b.Run(kind+"/"+where+"/commits", func(b *testing.B) {
				clients := zeoServer(b, kind, where)
				// Each client commits to an object of its own: no conflicts.
				oids := make([]stack.Oid, len(clients))
				serials := make([]stack.Tid, len(clients))
				for i, c := range clients {
					oids[i], serials[i] = zeoCommit(b, c, 0, 0)
				}
				index := map[*zeoproto.Client]int{}
				for i, c := range clients {
					index[c] = i
				}
				var next atomic.Int64
				b.ResetTimer()
				zeoParallel(b, clients, func(c *zeoproto.Client) error {
					i := index[c]
					_, tid, err := zeoCommitErr(c, oids[i], serials[i])
					serials[i] = tid
					return err
				}, &next)
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
			})
		}
	}
}

// zeoParallel runs b.N operations spread over the clients, one goroutine
// per client.
func zeoParallel(b *testing.B, clients []*zeoproto.Client, op func(*zeoproto.Client) error, next *atomic.Int64) {
	errs := make(chan error, len(clients))
	for _, c := range clients {
		go func() {
			for next.Add(1) <= int64(b.N) {
				if err := op(c); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
}

// zeoServer serves one storage as "1" on a loopback port and connects
// zeoClients clients to it.
func zeoServer(b *testing.B, kind, where string) []*zeoproto.Client {
	dir := b.TempDir()
	var st stack.Storage
	switch {
	case where == "plugin" && kind == "mapping":
		st = open(b, "<testmapping>\n</testmapping>\n", quiet(), host.Options{})
	case where == "plugin":
		st = open(b, fmt.Sprintf("<testfile>\n  path %s\n</testfile>\n", filepath.Join(dir, "Data.fs")), quiet(), host.Options{})
	case kind == "mapping":
		st = mappingstorage.New("bench", nil)
	default:
		m, _ := stack.Lookup("filestorage")
		s, err := m.Open(context.Background(), &stack.Node{Path: "1", Log: quiet()}, &filestorage.Options{Path: zconfig.ExistingDirPath(filepath.Join(dir, "Data.fs"))})
		if err != nil {
			b.Fatal(err)
		}
		st = s
	}
	srv := server.New([]*stack.Mount{stack.NewMount("1", st)}, server.Options{Log: quiet()})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(l)
	b.Cleanup(func() {
		_ = srv.Shutdown(context.Background())
		_ = st.Close()
	})
	ctx := context.Background()
	var clients []*zeoproto.Client
	for range zeoClients {
		c, err := zeoproto.Dial(ctx, "tcp", l.Addr().String(), zeoproto.ClientOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		if _, err := c.Register(ctx, "1", false); err != nil {
			b.Fatal(err)
		}
		clients = append(clients, c)
	}
	return clients
}

// zeoRecord is a small valid object record: a PersistentMapping pickle.
var zeoRecord = []byte("\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01X\x04\x00\x00\x00dataq\x02C\x08abcdefghs.")

var zeoTxn atomic.Int64

// zeoCommitErr commits a new revision of oid (a new object when oid is
// 0) over c, returning the oid and the transaction's tid.
func zeoCommitErr(c *zeoproto.Client, oid stack.Oid, serial stack.Tid) (stack.Oid, stack.Tid, error) {
	ctx := context.Background()
	if oid == 0 {
		oids, err := c.NewOIDs(ctx)
		if err != nil {
			return 0, 0, err
		}
		oid = oids[0]
	}
	id := zeoTxn.Add(1)
	if err := c.CallAsync(ctx, "tpc_begin", id, []byte(""), []byte(""), zeoproto.Dict{}, nil, " "); err != nil {
		return 0, 0, err
	}
	if err := c.CallAsync(ctx, "storea", oid, serial, zeoRecord, id); err != nil {
		return 0, 0, err
	}
	if _, err := c.Call(ctx, "vote", id); err != nil {
		return 0, 0, err
	}
	r, err := c.Call(ctx, "tpc_finish", id)
	if err != nil {
		return 0, 0, err
	}
	raw, _ := r.([]byte)
	tid, err := stack.TidFromBytes(raw)
	return oid, tid, err
}

func zeoCommit(b *testing.B, c *zeoproto.Client, oid stack.Oid, serial stack.Tid) (stack.Oid, stack.Tid) {
	b.Helper()
	oid, tid, err := zeoCommitErr(c, oid, serial)
	if err != nil {
		b.Fatal(err)
	}
	return oid, tid
}

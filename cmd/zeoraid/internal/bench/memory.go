package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// memory reports the servers' resident memory with many idle connections
// and with a large Data.fs open, zeoraid against runzeo.
func (r *reporter) memory(ctx context.Context) error {
	if r.o.IdleConns > 0 {
		sec := fmt.Sprintf("memory: %d idle connections (mapping storage)", r.o.IdleConns)
		var rss [2][2]float64 // server, before/after
		for i, which := range []string{"zeoraid", "runzeo"} {
			s, _, err := r.start(ctx, which, "<mappingstorage 1>\n</mappingstorage>\n")
			if err != nil {
				return err
			}
			rss[i], err = r.idleConnections(ctx, s)
			s.Stop()
			if err != nil {
				r.add(Row{Section: sec, Figure: which, Err: err})
			}
		}
		r.add(Row{Section: sec, Figure: "RSS, 1 connection", Unit: "MiB", Value: rss[0][0], RefName: "runzeo", Ref: rss[1][0]})
		r.add(Row{Section: sec, Figure: fmt.Sprintf("RSS, %d idle connections", r.o.IdleConns), Unit: "MiB",
			Value: rss[0][1], RefName: "runzeo", Ref: rss[1][1],
			Comment: fmt.Sprintf("%.1f kB per connection vs %.1f kB", (rss[0][1]-rss[0][0])*1024/float64(r.o.IdleConns), (rss[1][1]-rss[1][0])*1024/float64(r.o.IdleConns))})
	}
	if r.o.MemoryObjects > 0 {
		dir, err := r.dir("memory-datafs")
		if err != nil {
			return err
		}
		path := filepath.Join(dir, "Data.fs")
		r.progress("  generating a Data.fs of %d objects", r.o.MemoryObjects)
		// 1000 objects of 50 bytes per transaction: the size of the index
		// matters here, not that of the records.
		if err := generateObjects(ctx, path, r.o.MemoryObjects); err != nil {
			return err
		}
		sec := fmt.Sprintf("memory: a Data.fs of %d objects (%d MB) open", r.o.MemoryObjects, sizeOf(path)>>20)
		var rss [2]float64
		var started [2]time.Duration
		for i, which := range []string{"zeoraid", "runzeo"} {
			t0 := time.Now()
			s, err := r.serverOn(ctx, which, path)
			if err != nil {
				return err
			}
			started[i] = time.Since(t0)
			rss[i], err = r.rssAfterLoad(ctx, s)
			s.Stop()
			if err != nil {
				return err
			}
		}
		r.add(Row{Section: sec, Figure: "RSS after start and one load", Unit: "MiB", Value: rss[0], RefName: "runzeo", Ref: rss[1],
			Comment: fmt.Sprintf("started in %v vs %v", started[0].Round(time.Millisecond), started[1].Round(time.Millisecond))})
	}
	return nil
}

// generateObjects writes a Data.fs of n small objects.
func generateObjects(ctx context.Context, path string, n int) error {
	// GenerateDataFs stops at a size: 1000 records of 50 bytes take
	// about 95 kB with their headers.
	_, err := GenerateDataFs(ctx, path, int64(n)*95/1000>>10+1, 1000, 50)
	return err
}

// serverOn starts which on the Data.fs at path.
func (r *reporter) serverOn(ctx context.Context, which, path string) (*Server, error) {
	return r.server(ctx, which, which+"-datafs", "<filestorage 1>\n  path %[2]s\n</filestorage>\n", path)
}

// idleConnections returns the server's RSS in MiB with one connection and
// with r.o.IdleConns registered connections that do nothing.
func (r *reporter) idleConnections(ctx context.Context, s *Server) ([2]float64, error) {
	var out [2]float64
	var conns []*rawClient
	defer func() {
		for _, c := range conns {
			c.nc.Close()
		}
	}()
	for i := 0; i < r.o.IdleConns; i++ {
		c, err := dialRaw(ctx, LoadOptions{Addr: s.Addr, Storage: "1"})
		if err != nil {
			return out, fmt.Errorf("connection %d: %w", i+1, err)
		}
		conns = append(conns, c)
		if i == 0 {
			rss, err := RSS(s.Pid())
			if err != nil {
				return out, err
			}
			out[0] = float64(rss) / (1 << 20)
		}
	}
	rss, err := RSS(s.Pid())
	out[1] = float64(rss) / (1 << 20)
	return out, err
}

// rssAfterLoad loads one object through s and returns its RSS in MiB.
func (r *reporter) rssAfterLoad(ctx context.Context, s *Server) (float64, error) {
	network, address := zeoproto.SplitAddress(s.Addr)
	c, err := zeoproto.Dial(ctx, network, address, zeoproto.ClientOptions{})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if _, err := c.Register(ctx, "1", true); err != nil {
		return 0, err
	}
	if _, err := c.LoadBefore(ctx, 1, stack.MaxTid); err != nil {
		return 0, err
	}
	rss, err := RSS(s.Pid())
	return float64(rss) / (1 << 20), err
}

package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/builtin/filestorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// GenerateDataFs writes a Data.fs at path of about mb megabytes:
// transactions of perTxn new objects of size bytes each (perTxn 0: as
// many per transaction as make 40 kB). It returns the number of objects.
func GenerateDataFs(ctx context.Context, path string, mb int64, perTxn, size int) (int, error) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	fs, err := filestorage.Open(path, filestorage.Options{}, log)
	if err != nil {
		return 0, err
	}
	defer fs.Close()
	if perTxn <= 0 {
		perTxn = max(1, 40<<10/size)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	n := 0
	for sizeOf(path) < mb<<20 {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		oids, err := fs.NewOIDs(ctx, perTxn)
		if err != nil {
			return n, err
		}
		txn, err := fs.Begin(ctx, stack.TxnMeta{User: []byte(txnUser), Description: []byte("generated")})
		if err != nil {
			return n, err
		}
		for _, oid := range oids {
			if err := txn.Store(ctx, oid, 0, record(size, rng)); err != nil {
				txn.Abort(ctx)
				return n, err
			}
		}
		if _, err := txn.Vote(ctx); err != nil {
			txn.Abort(ctx)
			return n, err
		}
		if _, err := txn.Finish(ctx); err != nil {
			return n, err
		}
		n += len(oids)
	}
	return n, nil
}

// copyAndSync is the reference of the recovery rate: cp of src to dst
// followed by an fsync of dst.
func copyAndSync(src, dst string) (time.Duration, error) {
	start := time.Now()
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return 0, err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return 0, err
	}
	if err := out.Close(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// recovery generates a Data.fs, copies it with cp+sync for the
// reference, then serves a RAID of that file and an empty filestorage
// and times raid_recover of the empty child: once idle, once while
// clients commit.
func (r *reporter) recovery(ctx context.Context) error {
	if r.o.RecoveryMB <= 0 {
		return nil
	}
	dir, err := r.dir("recovery")
	if err != nil {
		return err
	}
	gen := filepath.Join(dir, "generated.fs")
	r.progress("  generating a Data.fs of %d MB", r.o.RecoveryMB)
	objects, err := GenerateDataFs(ctx, gen, int64(r.o.RecoveryMB), 0, 2048)
	if err != nil {
		return fmt.Errorf("generating the Data.fs: %w", err)
	}
	size := sizeOf(gen)
	cp, err := copyAndSync(gen, filepath.Join(dir, "cp.fs"))
	if err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(dir, "cp.fs"))
	cpRate := mbps(size, cp)
	r.progress("  %d objects, %d bytes; cp+sync %v (%.1f MB/s)", objects, size, cp, cpRate)

	sec := fmt.Sprintf("recovery of a %d MB Data.fs into an empty filestorage", size>>20)
	for _, writers := range []int{0, r.o.Conns} {
		figure := "recovery rate, idle"
		if writers > 0 {
			figure = fmt.Sprintf("recovery rate, %d connections committing", writers)
		}
		rate, note, err := r.recoverOnce(ctx, dir, gen, writers)
		if err != nil {
			r.add(Row{Section: sec, Figure: figure, Err: err})
			continue
		}
		goal := 0.5
		if writers > 0 {
			goal = 0 // it must finish (converge); its rate is reported
		}
		r.add(Row{Section: sec, Figure: figure, Unit: "MB/s", Value: rate, RefName: "cp+sync", Ref: cpRate, Goal: goal, Comment: note})
	}
	return nil
}

func mbps(bytes int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) / 1e6 / d.Seconds()
}

// recoverOnce serves a RAID of a copy of gen (child a) and an empty
// filestorage (child b), recovers b and returns the rate, with writers
// connections committing meanwhile.
func (r *reporter) recoverOnce(ctx context.Context, dir, gen string, writers int) (float64, string, error) {
	sdir, err := r.dir("recovery-raid")
	if err != nil {
		return 0, "", err
	}
	if _, err := copyAndSync(gen, filepath.Join(sdir, "a.fs")); err != nil {
		return 0, "", err
	}
	size := sizeOf(gen)
	s, err := StartZeoraid(ctx, r.o.Serve, fmt.Sprintf(raidOfFiles, sdir), sdir)
	if err != nil {
		return 0, "", err
	}
	defer s.Stop()
	network, address := zeoproto.SplitAddress(s.Addr)
	c, err := zeoproto.Dial(ctx, network, address, zeoproto.ClientOptions{})
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	if _, err := c.Register(ctx, "1", false); err != nil {
		return 0, "", err
	}
	if st, err := c.Call(ctx, "raid_status"); err != nil || st != "degraded" {
		return 0, "", fmt.Errorf("raid_status before the recovery: %v %v", st, err)
	}

	wctx, stopWriters := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var commits atomic.Int64
	werr := make(chan error, writers)
	for range writers {
		w, err := dial(ctx, Options{Addr: s.Addr, Storage: "1"})
		if err != nil {
			stopWriters()
			return 0, "", err
		}
		own, err := w.populate(ctx, 1, r.o.ObjectSize)
		if err != nil {
			stopWriters()
			return 0, "", err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.close()
			for wctx.Err() == nil {
				if err := w.commit(wctx, own, r.o.ObjectSize); err != nil {
					if wctx.Err() == nil {
						werr <- err
					}
					return
				}
				commits.Add(1)
			}
		}()
	}
	start := time.Now()
	_, err = c.Call(ctx, "raid_recover", "b")
	for err == nil {
		var st any
		st, err = c.Call(ctx, "raid_status")
		if err != nil || st == "optimal" {
			break
		}
		if st != "recovering" {
			details, _ := c.Call(ctx, "raid_details")
			err = fmt.Errorf("raid_status %v during the recovery: %v", st, details)
			break
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	stopWriters()
	wg.Wait()
	if err != nil {
		return 0, "", err
	}
	select {
	case err := <-werr:
		return 0, "", fmt.Errorf("a writer failed: %w", err)
	default:
	}
	note := fmt.Sprintf("%v", elapsed.Round(time.Millisecond))
	if writers > 0 {
		note += fmt.Sprintf(", %d commits meanwhile (%.0f/s)", commits.Load(), float64(commits.Load())/elapsed.Seconds())
	}
	return mbps(size, elapsed), note, nil
}

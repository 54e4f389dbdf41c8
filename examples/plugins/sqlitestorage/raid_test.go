package sqlitestorage_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/builtin/filestorage"
	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// recovered is a logrus hook that closes done at the RAID's log line of
// a finished recovery.
type recovered struct{ done chan struct{} }

func (h *recovered) Levels() []logrus.Level { return logrus.AllLevels }

func (h *recovered) Fire(e *logrus.Entry) error {
	if strings.HasPrefix(e.Message, "recovery finished") {
		select {
		case <-h.done:
		default:
			close(h.done)
		}
	}
	return nil
}

// fillHistory commits a history with blobs, a deletion and an undo on s;
// the undo takes the blob of oid 3 back from txn 11 to txn 7.
func fillHistory(t *testing.T, s stack.Storage) stack.Tid {
	t.Helper()
	ctx := context.Background()
	b, _ := stack.AsBlobber(s)
	var serials [4]stack.Tid
	var last stack.Tid
	for i := 0; i < 12; i++ {
		oid := stack.Oid(i % 4)
		txn, err := s.Begin(ctx, stack.TxnMeta{User: []byte("/ filler"), Description: []byte(fmt.Sprint("txn ", i))})
		must(t, err)
		data := []byte(fmt.Sprintf("\x80\x03cfill\nObj\nq\x00.\x80\x03X\x01\x00\x00\x00%d.", i%10))
		switch {
		case oid == 3:
			f, err := os.CreateTemp(b.BlobTempDir(), "fill-*")
			must(t, err)
			_, err = fmt.Fprintf(f, "blob of txn %d", i)
			must(t, err)
			must(t, f.Close())
			must(t, txn.(stack.BlobTxn).StoreBlob(ctx, oid, serials[oid], []byte("\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N."), f.Name()))
		case i == 9:
			must(t, txn.(stack.DeleteTxn).Delete(ctx, oid, serials[oid]))
		default:
			must(t, txn.Store(ctx, oid, serials[oid], data))
		}
		_, err = txn.Vote(ctx)
		must(t, err)
		last, err = txn.Finish(ctx)
		must(t, err)
		serials[oid] = last
	}
	u, _ := stack.AsUndoer(s)
	log, err := u.UndoLog(ctx, 0, 1, nil)
	must(t, err)
	txn, err := s.Begin(ctx, stack.TxnMeta{Description: []byte("undo")})
	must(t, err)
	_, err = txn.(stack.UndoTxn).Undo(ctx, log[0].ID)
	must(t, err)
	_, err = txn.Vote(ctx)
	must(t, err)
	last, err = txn.Finish(ctx)
	must(t, err)
	return last
}

// TestRAIDRecovery mirrors a sqlitestorage with a filestorage and
// recovers each into the other, blobs included: restore carries the
// whole history over, and the two compare equal.
func TestRAIDRecovery(t *testing.T) {
	for _, into := range []string{"sqlitestorage", "filestorage"} {
		t.Run("into "+into, func(t *testing.T) {
			dir := t.TempDir()
			sq := open(t, testOptions(t))
			fs, err := filestorage.Open(filepath.Join(dir, "Data.fs"), filestorage.Options{BlobDir: zconfig.ExistingDirPath(filepath.Join(dir, "blobs"))}, quiet())
			must(t, err)
			src, dst := stack.Storage(fs), stack.Storage(sq)
			if into == "filestorage" {
				src, dst = sq, fs
			}
			last := fillHistory(t, src)
			log := logrus.New()
			log.SetLevel(logrus.InfoLevel)
			log.SetOutput(&strings.Builder{})
			hook := &recovered{done: make(chan struct{})}
			log.AddHook(hook)
			o := raidstorage.DefaultOptions()
			o.CallTimeout = 10 * time.Second
			r, err := raidstorage.Open(context.Background(), raidstorage.Config{Path: "main", Names: []string{"src", "dst"}, Children: []stack.Storage{src, dst}, Options: o, Log: log})
			must(t, err)
			defer func() { _ = r.Close(); _ = sq.Close(); _ = fs.Close() }()
			if st, reason, _ := r.ChildState("dst"); st != raidstorage.Degraded {
				t.Fatalf("the empty child is %v (%s), want degraded", st, reason)
			}
			must(t, r.Recover("dst", false))
			select {
			case <-hook.done:
			case <-time.After(60 * time.Second):
				t.Fatal("no recovery finished within 60s")
			}
			if st, reason, _ := r.ChildState("dst"); st != raidstorage.Optimal {
				t.Fatalf("after recovery the child is %v (%s)", st, reason)
			}
			ctx := context.Background()
			res, err := stack.CompareHistories(ctx, src, dst, 0, 0, time.Second)
			must(t, err)
			if res.Diff != nil || res.Last != last {
				t.Fatalf("after recovery: %+v (diff %+v), want identical up to %s", res, res.Diff, last)
			}
			for _, s := range []stack.Storage{src, dst} {
				rev, err := s.LoadBefore(ctx, 3, stack.MaxTid)
				must(t, err)
				b, _ := stack.AsBlobber(s)
				p, err := b.LoadBlob(ctx, 3, rev.Serial)
				must(t, err)
				if got, _ := os.ReadFile(p); string(got) != "blob of txn 7" {
					t.Errorf("the current blob in %T = %q", s, got)
				}
			}
		})
	}
}

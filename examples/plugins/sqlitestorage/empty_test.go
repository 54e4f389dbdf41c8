package sqlitestorage_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/builtin/filestorage"
	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/examples/plugins/sqlitestorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// Empty leaves an empty storage, keeps the old database as FILE.old (a
// sqlitestorage that opens on its own, with its blobs in <blob-dir>.old),
// and does not announce again the transactions committed anew up to the
// last one watchers saw.
func TestEmpty(t *testing.T) {
	ctx := context.Background()
	o := testOptions(t)
	s := open(t, o)
	defer s.Close()
	last := fillHistory(t, s)
	ch := make(chan stack.Event, 64)
	s.Watch(ch)
	must(t, s.Empty(ctx))
	if got, err := s.LastTransaction(ctx); err != nil || got != 0 {
		t.Fatalf("last after Empty: %s %v", got, err)
	}
	var nf *stack.NotFoundError
	if _, err := s.LoadBefore(ctx, 3, stack.MaxTid); !errors.As(err, &nf) {
		t.Fatalf("load after Empty: %v", err)
	}
	if oids, err := s.NewOIDs(ctx, 1); err != nil || oids[0] != 1 {
		t.Fatalf("new oids after Empty: %v %v", oids, err)
	}

	old, err := sqlitestorage.Open(sqlitestorage.Options{
		Path:     zconfig.ExistingDirPath(string(o.Path) + ".old"),
		BlobDir:  zconfig.ExistingDirPath(string(o.BlobDir) + ".old"),
		ReadOnly: true,
	}, "old", quiet())
	must(t, err)
	defer old.Close()
	if got, err := old.LastTransaction(ctx); err != nil || got != last {
		t.Fatalf("the old database ends at %s (%v), want %s", got, err, last)
	}
	rev, err := old.LoadBefore(ctx, 3, stack.MaxTid)
	must(t, err)
	p, err := old.LoadBlob(ctx, 3, rev.Serial)
	must(t, err)
	if got, _ := os.ReadFile(p); string(got) != "blob of txn 7" {
		t.Fatalf("the old blob: %q", got)
	}

	// The history committed again (as a rebuild restores it) is not
	// announced twice; what comes after it is.
	var serial stack.Tid
	for _, at := range []stack.Tid{last - 5, last + 1} {
		txn, err := s.Begin(ctx, stack.TxnMeta{Tid: at})
		must(t, err)
		must(t, txn.Store(ctx, 1, serial, []byte("again")))
		_, err = txn.Vote(ctx)
		must(t, err)
		serial, err = txn.Finish(ctx)
		must(t, err)
	}
	if ev := <-ch; ev.Tid != last+1 {
		t.Fatalf("the first event after Empty is %s, want %s", ev.Tid, last+1)
	}
}

// A RAID rebuilds a diverged sqlitestorage child from a filestorage:
// the recovery empties it, then copies the whole history.
func TestRAIDRebuild(t *testing.T) {
	dir := t.TempDir()
	sq := open(t, testOptions(t))
	fs, err := filestorage.Open(filepath.Join(dir, "Data.fs"), filestorage.Options{BlobDir: zconfig.ExistingDirPath(filepath.Join(dir, "blobs"))}, quiet())
	must(t, err)
	// The sqlitestorage has a history of its own, older than the
	// filestorage's: it is behind, and diverged.
	commitOne(t, sq, 1, 0, []byte("\x80\x03cdiverged\nObj\nq\x00.\x80\x03N."))
	last := fillHistory(t, fs)
	log := logrus.New()
	log.SetOutput(&strings.Builder{})
	hook := &recovered{done: make(chan struct{})}
	log.AddHook(hook)
	o := raidstorage.DefaultOptions()
	o.CallTimeout = 10 * time.Second
	r, err := raidstorage.Open(context.Background(), raidstorage.Config{Path: "main", Names: []string{"fs", "sq"}, Children: []stack.Storage{fs, sq}, Options: o, Log: log})
	must(t, err)
	defer func() { _ = r.Close(); _ = sq.Close(); _ = fs.Close() }()
	if st, reason, _ := r.ChildState("sq"); st != raidstorage.Degraded {
		t.Fatalf("the diverged child is %v (%s), want degraded", st, reason)
	}
	must(t, r.Recover("sq", true))
	select {
	case <-hook.done:
	case <-time.After(60 * time.Second):
		t.Fatal("no recovery finished within 60s")
	}
	if st, reason, _ := r.ChildState("sq"); st != raidstorage.Optimal {
		t.Fatalf("after the rebuild the child is %v (%s)", st, reason)
	}
	res, err := stack.CompareHistories(context.Background(), fs, sq, 0, 0, time.Second)
	must(t, err)
	if res.Diff != nil || res.Last != last {
		t.Fatalf("after the rebuild: %+v (diff %+v), want identical up to %s", res, res.Diff, last)
	}
}

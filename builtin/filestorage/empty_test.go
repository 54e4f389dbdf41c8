package filestorage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/blobdir"
	"github.com/zeoraid/zeoraid/zconfig"
)

// upload stages a blob file as a client's upload would be.
func upload(t *testing.T, s *Storage, content string) string {
	t.Helper()
	f, err := os.CreateTemp(s.BlobTempDir(), "upload")
	must(t, err)
	_, err = f.WriteString(content)
	must(t, err)
	must(t, f.Close())
	return f.Name()
}

// Empty leaves a new, empty Data.fs in place while the storage stays open
// and locked, and keeps the old file, its index and its blobs aside.
func TestEmpty(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path, bdir := filepath.Join(dir, "Data.fs"), filepath.Join(dir, "blobs")
	log, hook := test.NewNullLogger()
	s, err := Open(path, Options{BlobDir: zconfig.ExistingDirPath(bdir)}, log)
	must(t, err)
	defer s.Close()
	events := make(chan stack.Event, 8)
	s.Watch(events)
	first := commitOne(t, s, 1, 0)
	tx, err := s.Begin(ctx, stack.TxnMeta{})
	must(t, err)
	must(t, tx.(stack.BlobTxn).StoreBlob(ctx, 2, 0, []byte("cZODB.blob\nBlob\n."), upload(t, s, "blob content")))
	_, err = tx.Vote(ctx)
	must(t, err)
	last, err := tx.Finish(ctx)
	must(t, err)
	<-events
	<-events
	pending := upload(t, s, "staged for a later transaction")

	must(t, s.Empty(ctx))

	if l, _ := s.LastTransaction(ctx); l != 0 {
		t.Fatalf("last transaction %s after Empty", l)
	}
	if _, err := s.LoadBefore(ctx, 1, stack.MaxTid); !isNotFound(err) {
		t.Fatalf("an object survived Empty: %v", err)
	}
	if _, err := Open(path, Options{}, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("the lock was let go during Empty: %v", err)
	}
	if _, err := os.Stat(pending); err != nil {
		t.Fatalf("a staged upload is gone: %v", err)
	}
	// The old file opens as a storage of its own, with its index, and
	// its blobs are in <blob-dir>.old.
	if _, err := os.Stat(path + ".old.index"); err != nil {
		t.Fatal(err)
	}
	old, err := Open(path+".old", Options{ReadOnly: true, BlobDir: zconfig.ExistingDirPath(bdir + ".old")}, nil)
	must(t, err)
	if l, _ := old.LastTransaction(ctx); l != last {
		t.Fatalf("Data.fs.old ends at %s, want %s", l, last)
	}
	p, err := old.LoadBlob(ctx, 2, last)
	must(t, err)
	if b, _ := os.ReadFile(p); string(b) != "blob content" {
		t.Fatalf("old blob %q", b)
	}
	must(t, old.Close())
	if b, err := os.ReadFile(filepath.Join(bdir, ".layout")); err != nil || string(b) != "bushy" {
		t.Fatalf("blob layout marker after Empty: %q %v", b, err)
	}
	if _, err := os.Stat((&blobdir.Dir{Path: bdir}).OidDir(2)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("blob files left in the blob directory: %v", err)
	}

	// History restored again is not announced twice; new commits are.
	tx, err = s.Begin(ctx, stack.TxnMeta{Tid: first})
	must(t, err)
	must(t, tx.(stack.RestoreTxn).Restore(ctx, 1, benchData, 0))
	_, err = tx.Vote(ctx)
	must(t, err)
	_, err = tx.Finish(ctx)
	must(t, err)
	next := commitOne(t, s, 3, 0)
	if ev := <-events; ev.Tid != next {
		t.Fatalf("event %s, want %s", ev.Tid, next)
	}
	for _, e := range hook.AllEntries() {
		if e.Level <= logrus.WarnLevel {
			t.Errorf("logged %s: %s %v", e.Level, e.Message, e.Data)
		}
	}
	// And the new file is what a reopen finds.
	must(t, s.Close())
	s, err = Open(path, Options{}, nil)
	must(t, err)
	if l, _ := s.LastTransaction(ctx); l != next {
		t.Fatalf("reopened at %s, want %s", l, next)
	}
}

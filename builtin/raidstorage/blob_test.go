package raidstorage_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeoraid/zeoraid/builtin/filestorage"
	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

func blobFS(t *testing.T) *filestorage.Storage {
	t.Helper()
	dir := t.TempDir()
	s, err := filestorage.Open(filepath.Join(dir, "Data.fs"), filestorage.Options{
		Path: zconfig.ExistingDirPath(filepath.Join(dir, "Data.fs")), BlobDir: zconfig.ExistingDirPath(filepath.Join(dir, "blobs")),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// blobRecord is the pickle ZODB writes for a Blob (class, then state):
// it names ZODB.blob, as recovery expects of records with blobs.
var blobRecord = []byte("\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.")

// Blobs are mirrored with their bytes to every child, and copied by a
// recovery.
func TestBlobsMirrored(t *testing.T) {
	a, b, c := blobFS(t), blobFS(t), blobFS(t)
	r, _ := newRAID(t, opts(), a, b, c)
	ctx := ctxT(t)
	if !r.Capabilities().Blobs {
		t.Fatal("a RAID of blob storages does not report blobs")
	}
	if err := r.Disable(ctx, "3"); err != nil {
		t.Fatal(err)
	}
	staged := filepath.Join(r.BlobTempDir(), "upload.blob")
	if err := os.WriteFile(staged, []byte("blob bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	txn, err := r.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.(stack.BlobTxn).StoreBlob(ctx, 1, 0, blobRecord, staged); err != nil {
		t.Fatal(err)
	}
	if _, err := txn.Vote(ctx); err != nil {
		t.Fatal(err)
	}
	tid, err := txn.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(staged); !os.IsNotExist(err) {
		t.Fatalf("the staged upload was not taken over: %v", err)
	}
	if err := r.Recover("3", false); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, "3", raidstorage.Optimal)
	for i, s := range []stack.Storage{a, b, c} {
		p, err := s.(stack.Blobber).LoadBlob(ctx, 1, tid)
		if err != nil {
			t.Fatalf("child %d: %v", i+1, err)
		}
		if data, err := os.ReadFile(p); err != nil || string(data) != "blob bytes" {
			t.Fatalf("child %d blob = %q, %v", i+1, data, err)
		}
	}
	identical(t, tid, a, b, c)
}

// A child without blobs cannot join children with blobs.
func TestBlobsOnSomeChildrenOnly(t *testing.T) {
	a, m := blobFS(t), mapping()
	defer a.Close()
	defer m.Close()
	_, err := raidstorage.Open(ctxT(t), raidstorage.Config{Path: "main", Names: []string{"1", "2"}, Children: []stack.Storage{a, m}, Options: opts()})
	if err == nil || !strings.Contains(err.Error(), "no blob support") {
		t.Fatalf("Open = %v, want a configuration error", err)
	}
}

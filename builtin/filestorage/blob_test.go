//go:build interop

package filestorage

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/zeoraid/zeoraid/interop/pyenv"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/blobdir"
	"github.com/zeoraid/zeoraid/zconfig"
)

// blobPickle is the record ZODB writes for a Blob: the class, state None.
var blobPickle = []byte("\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.")

func stage(t *testing.T, s *Storage, content string) string {
	f, err := os.CreateTemp(s.BlobTempDir(), "upload")
	must(t, err)
	_, err = f.WriteString(content)
	must(t, err)
	must(t, f.Close())
	return f.Name()
}

func TestBlobsGoToPython(t *testing.T) {
	dir := t.TempDir()
	path, bdir := filepath.Join(dir, "Data.fs"), filepath.Join(dir, "blobs")
	ctx := context.Background()
	s, err := Open(path, Options{BlobDir: zconfig.ExistingDirPath(bdir)}, nil)
	must(t, err)
	if layout, _ := os.ReadFile(filepath.Join(bdir, ".layout")); string(layout) != "bushy" {
		t.Errorf(".layout %q", layout)
	}
	t1 := commit(t, s, stack.TxnMeta{}, func(tx stack.Txn) {
		must(t, tx.Store(ctx, 0, 0, statePickle("root", 1)))
		must(t, tx.(stack.BlobTxn).StoreBlob(ctx, 1, 0, blobPickle, stage(t, s, "go one")))
	})
	t2 := commit(t, s, stack.TxnMeta{}, func(tx stack.Txn) {
		must(t, tx.(stack.BlobTxn).StoreBlob(ctx, 1, t1, blobPickle, stage(t, s, "go two")))
	})
	// An aborted blob store leaves no file behind.
	tx, err := s.Begin(ctx, stack.TxnMeta{})
	must(t, err)
	must(t, tx.(stack.BlobTxn).StoreBlob(ctx, 1, t2, blobPickle, stage(t, s, "aborted")))
	must(t, tx.Abort(ctx))
	t3 := commit(t, s, stack.TxnMeta{Description: []byte("undo")}, func(tx stack.Txn) {
		_, err := tx.(stack.UndoTxn).Undo(ctx, UndoID(t2))
		must(t, err)
	})
	want := filepath.Join(bdir, "0x00", "0x00", "0x00", "0x00", "0x00", "0x00", "0x00", "0x01", blobdir.ReprHex(uint64(t1))+".blob")
	if p, err := s.LoadBlob(ctx, 1, t1); err != nil || p != want {
		t.Errorf("LoadBlob = %s, %v; want %s", p, err, want)
	}
	if fi, err := os.Stat(want); err != nil || fi.Mode().Perm()&0o222 != 0 {
		t.Errorf("committed blob must be read-only: %v %v", fi.Mode(), err)
	}
	must(t, s.Close())
	var got map[string]map[string]string
	must(t, json.Unmarshal(pyenv.Run(t, "testdata/blobs.py", "read", path, bdir), &got))
	blobs := got["0000000000000001"]
	if blobs[t1.Hex()] != "go one" || blobs[t2.Hex()] != "go two" || blobs[t3.Hex()] != "go one" || len(blobs) != 3 {
		t.Errorf("Python reads the Go blobs as %v", got)
	}
}

func TestBlobsPythonToGo(t *testing.T) {
	dir := t.TempDir()
	path, bdir := filepath.Join(dir, "Data.fs"), filepath.Join(dir, "blobs")
	pyenv.Run(t, "testdata/blobs.py", "write", path, bdir)
	ctx := context.Background()
	s, err := Open(path, Options{BlobDir: zconfig.ExistingDirPath(bdir), PackGC: true}, nil)
	must(t, err)
	defer s.Close()
	h, err := s.History(ctx, 1, 10)
	must(t, err)
	if len(h) != 2 {
		t.Fatalf("history of the blob object: %+v", h)
	}
	for i, content := range []string{"python two", "python one"} {
		p, err := s.LoadBlob(ctx, 1, h[i].Tid)
		must(t, err)
		if b, _ := os.ReadFile(p); string(b) != content {
			t.Errorf("blob %s = %q, want %q", h[i].Tid, b, content)
		}
	}
	// Packing to now drops the old revision's file.
	must(t, s.Pack(ctx, h[0].Tid.Time().Add(1e9), true))
	if _, err := s.LoadBlob(ctx, 1, h[1].Tid); !isNotFound(err) {
		t.Errorf("old blob after pack: %v", err)
	}
	if _, err := s.LoadBlob(ctx, 1, h[0].Tid); err != nil {
		t.Errorf("current blob after pack: %v", err)
	}
}

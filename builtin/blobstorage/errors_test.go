package blobstorage_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeoraid/zeoraid/builtin/blobstorage"
	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// Errors name the node where they happened: the wrapper's own (blob
// files) with its path, the child's with the child's path, once.
func TestErrorsNameTheNode(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "blobs")
	child, err := mustModule(t, "mappingstorage").Open(ctx, &stack.Node{Path: "main/mappingstorage"}, &mappingstorage.Options{Name: "m"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := mustModule(t, "blobstorage").Open(ctx, &stack.Node{Path: "main", Children: []stack.Storage{child}},
		&blobstorage.Options{BlobDir: zconfig.ExistingDirPath(dir)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := st.(*blobstorage.Storage)

	_, err = s.LoadBefore(ctx, 7, stack.MaxTid)
	var nf *stack.NotFoundError
	if !errors.As(err, &nf) || !strings.HasPrefix(err.Error(), "main/mappingstorage: loadBefore 0x0000000000000007 ") {
		t.Fatalf("the child's missing oid: %v", err)
	}
	_, err = s.LoadBlob(ctx, 7, 1)
	if !errors.As(err, &nf) || stack.IsBackendFailure(err) || !strings.HasPrefix(err.Error(), "main: loadBlob 0x0000000000000007 ") {
		t.Fatalf("missing blob: %v", err)
	}

	// The blob directory replaced by a file underneath: placing a blob is
	// an I/O failure of the wrapper.
	upload := filepath.Join(s.BlobTempDir(), "upload")
	if err := os.WriteFile(upload, []byte("blob"), 0o600); err != nil {
		t.Fatal(err)
	}
	keep := dir + ".moved"
	if err := os.Rename(dir, keep); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tx, err := s.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		t.Fatal(err)
	}
	err = tx.(stack.BlobTxn).StoreBlob(ctx, 1, 0, []byte("ZODB.blob"), filepath.Join(keep, "tmp", "upload"))
	if !stack.IsBackendFailure(err) || !strings.HasPrefix(err.Error(), "main: storeBlob 0x0000000000000001 @") {
		t.Fatalf("blob directory gone: %v", err)
	}
	_ = tx.Abort(ctx)
}

func mustModule(t *testing.T, typ string) *stack.Module {
	t.Helper()
	m, ok := stack.Lookup(typ)
	if !ok {
		t.Fatalf("no <%s>", typ)
	}
	return m
}

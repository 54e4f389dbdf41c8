//go:build interop

package zeoclient_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/interop/pyenv"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// TestPackRunzeo packs a runzeo FileStorage (its pack-gc is on): old
// revisions and unreachable objects go; a pack without garbage collection
// is refused, since ZEO cannot ask for one.
func TestPackRunzeo(t *testing.T) {
	srv := pyenv.StartRunzeo(t, pyenv.RunzeoOptions{Storages: []string{"s1"}, Blobs: true})
	s := open(t, options(t, "s1", srv.Addr))
	ctx := ctxT(t, time.Minute)
	root := func(refs ...stack.Oid) string {
		b := []byte("\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03]q\x01(")
		for _, r := range refs {
			b = append(b, 'C', 8)
			b = append(b, r.Bytes()...)
			b = append(b, 'Q')
		}
		return string(append(b, 'e', '.'))
	}
	leaf := "\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01."
	t1 := commit(t, s, store{0, 0, root(1, 2)}, store{1, 0, leaf}, store{2, 0, leaf})
	t2 := commit(t, s, store{0, t1, root(1)}, store{1, t1, leaf + " "})
	time.Sleep(50 * time.Millisecond)
	if err := s.Pack(ctx, time.Now(), false); !errors.Is(err, stack.ErrNotSupported) || stack.IsBackendFailure(err) {
		t.Fatalf("Pack without gc: %v, want ErrNotSupported", err)
	}
	if err := s.Pack(ctx, time.Now(), true); err != nil {
		t.Fatal(err)
	}
	wantCurrent(t, s, 1, leaf+" ", t2)
	if _, err := s.LoadSerial(ctx, 1, t1); !isNotFound(err) {
		t.Fatalf("revision before the pack time: %v, want not found", err)
	}
	if _, err := s.LoadBefore(ctx, 2, stack.MaxTid); !isNotFound(err) {
		t.Fatalf("unreachable object after pack: %v, want not found", err)
	}
}

// TestConflictServerSide: a default runzeo resolves conflicts itself and,
// failing, answers vote with a ConflictError; the node returns it typed,
// with the data it stored.
func TestConflictServerSide(t *testing.T) {
	srv := pyenv.StartRunzeo(t, pyenv.RunzeoOptions{Storages: []string{"s1"}, Blobs: true})
	s := open(t, options(t, "s1", srv.Addr))
	ctx := ctxT(t, time.Minute)
	data := "\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01."
	t1 := commit(t, s, store{1, 0, data})
	t2 := commit(t, s, store{1, t1, data + " "})
	_, err := tryCommit(ctx, s, store{1, t1, data + "  "})
	var ce *stack.ConflictError
	if !errors.As(err, &ce) || ce.Oid != 1 || ce.Committed != t2 || ce.Read != t1 || string(ce.Data) != data+"  " {
		t.Fatalf("stale store: %v (%+v), want a ConflictError with serials and data", err, ce)
	}
	if stack.IsBackendFailure(err) {
		t.Fatal("a conflict counted as a backend failure")
	}
	wantCurrent(t, s, 1, data+" ", t2)
	// The node is not left in a transaction.
	commit(t, s, store{1, t2, data + "   "})
}

// TestBlobsRunzeo stores blobs through one node and reads them through
// another (download with sendBlob into a private blob cache), and through
// a node sharing runzeo's blob directory (storeBlobShared).
func TestBlobsRunzeo(t *testing.T) {
	srv := pyenv.StartRunzeo(t, pyenv.RunzeoOptions{Storages: []string{"s1"}, Blobs: true, Msgpack: true})
	ctx := ctxT(t, time.Minute)
	blobOpts := func(dir string, shared bool) *stackStorage {
		o := options(t, "s1", srv.Addr)
		o.BlobDir = zconfig.ExistingDirPath(dir)
		o.SharedBlobDir = shared
		return &stackStorage{open(t, o)}
	}
	writer := blobOpts(t.TempDir(), false)
	reader := blobOpts(t.TempDir(), false)
	shared := blobOpts(srv.BlobDir("s1"), true)
	big := make([]byte, 200_000) // several chunks each way
	for i := range big {
		big[i] = byte(i * 7)
	}
	record := []byte("\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.")
	storeBlob := func(s *stackStorage, oid stack.Oid, serial stack.Tid, content []byte) stack.Tid {
		t.Helper()
		f, err := os.CreateTemp(s.BlobTempDir(), "up-*.tmp")
		if err != nil {
			t.Fatal(err)
		}
		f.Write(content)
		f.Close()
		txn, err := s.Begin(ctx, stack.TxnMeta{})
		if err != nil {
			t.Fatal(err)
		}
		if err := txn.(stack.BlobTxn).StoreBlob(ctx, oid, serial, record, f.Name()); err != nil {
			t.Fatal(err)
		}
		if _, err := txn.Vote(ctx); err != nil {
			t.Fatal(err)
		}
		tid, err := txn.Finish(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tid
	}
	wantBlob := func(s *stackStorage, oid stack.Oid, tid stack.Tid, content []byte) {
		t.Helper()
		p, err := s.LoadBlob(ctx, oid, tid)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != string(content) {
			t.Fatalf("blob %s@%s through %s: %d bytes, %v; want %d bytes", oid, tid, p, len(got), err, len(content))
		}
	}
	t1 := storeBlob(writer, 1, 0, big)
	wantBlob(writer, 1, t1, big) // kept from the upload
	wantBlob(reader, 1, t1, big) // downloaded
	wantBlob(shared, 1, t1, big) // the server's own file
	if p := mustLoadBlob(t, shared, 1, t1); !strings.HasPrefix(p, srv.BlobDir("s1")+string(filepath.Separator)) {
		t.Fatalf("shared blob at %s, outside the server's blob directory", p)
	}
	t2 := storeBlob(shared, 1, t1, []byte("shared upload"))
	wantBlob(reader, 1, t2, []byte("shared upload"))
	wantBlob(reader, 1, t1, big)
	if _, err := reader.LoadBlob(ctx, 1, t2+1); !isNotFound(err) {
		t.Fatalf("missing blob: %v, want not found", err)
	}
}

type stackStorage struct{ stack.Storage }

func (s *stackStorage) LoadBlob(ctx context.Context, oid stack.Oid, tid stack.Tid) (string, error) {
	b, ok := stack.AsBlobber(s.Storage)
	if !ok {
		return "", stack.ErrNotSupported
	}
	return b.LoadBlob(ctx, oid, tid)
}

func (s *stackStorage) BlobTempDir() string {
	b, _ := stack.AsBlobber(s.Storage)
	return b.BlobTempDir()
}

func mustLoadBlob(t *testing.T, s *stackStorage, oid stack.Oid, tid stack.Tid) string {
	p, err := s.LoadBlob(ctxT(t, time.Minute), oid, tid)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReadOnly: a read-only node registers read-only and refuses writes
// locally; with read-only-fallback, a read-only server is accepted.
func TestReadOnly(t *testing.T) {
	srv := pyenv.StartRunzeo(t, pyenv.RunzeoOptions{Storages: []string{"s1"}, Blobs: true})
	s := open(t, options(t, "s1", srv.Addr))
	t1 := commit(t, s, store{1, 0, "x"})
	o := options(t, "s1", srv.Addr)
	o.ReadOnly = true
	ro := open(t, o)
	ctx := ctxT(t, time.Minute)
	if !ro.Capabilities().ReadOnly {
		t.Fatal("read-only not reported")
	}
	if _, err := tryCommit(ctx, ro, store{1, t1, "y"}); !errors.Is(err, stack.ErrReadOnly) {
		t.Fatalf("write on a read-only node: %v", err)
	}
	if _, err := ro.NewOIDs(ctx, 1); !errors.Is(err, stack.ErrReadOnly) {
		t.Fatalf("new oids on a read-only node: %v", err)
	}
	wantCurrent(t, ro, 1, "x", t1)
	// Read-only connections get invalidations too.
	t2 := commit(t, s, store{1, t1, "z"})
	waitLast(t, ro, t2)
	wantCurrent(t, ro, 1, "z", t2)

	roSrv := goServerReadOnly(t, newMapping())
	o = options(t, "1", roSrv)
	o.ReadOnlyFallback = true
	fb := open(t, o)
	if !fb.Capabilities().ReadOnly {
		t.Fatal("fallback to a read-only server not reported as read-only")
	}
	if _, err := tryCommit(ctx, fb, store{1, 0, "y"}); !errors.Is(err, stack.ErrReadOnly) {
		t.Fatalf("write after read-only fallback: %v", err)
	}
	o.ReadOnlyFallback = false
	if _, err := zeoclientOpen(t, o); err == nil {
		t.Fatal("a writable registration on a read-only server succeeded")
	}
}

// TestBlobCacheSize: downloads beyond blob-cache-size prune the least
// recently written blobs, and a pruned blob is downloaded again.
func TestBlobCacheSize(t *testing.T) {
	srv := pyenv.StartRunzeo(t, pyenv.RunzeoOptions{Storages: []string{"s1"}, Blobs: true})
	ctx := ctxT(t, time.Minute)
	o := options(t, "s1", srv.Addr)
	o.BlobDir = zconfig.ExistingDirPath(t.TempDir())
	writer := &stackStorage{open(t, o)}
	o = options(t, "s1", srv.Addr)
	cacheDir := t.TempDir()
	o.BlobDir = zconfig.ExistingDirPath(cacheDir)
	limit := zconfig.ByteSize(25_000)
	o.BlobCacheSize = &limit
	o.BlobCacheSizeCheck = 10
	reader := &stackStorage{open(t, o)}
	record := []byte("\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.")
	content := make([]byte, 10_000)
	var tids []stack.Tid
	for oid := stack.Oid(1); oid <= 6; oid++ {
		f, _ := os.CreateTemp(writer.BlobTempDir(), "up-*")
		f.Write(content)
		f.Close()
		txn, err := writer.Begin(ctx, stack.TxnMeta{})
		if err != nil {
			t.Fatal(err)
		}
		if err := txn.(stack.BlobTxn).StoreBlob(ctx, oid, 0, record, f.Name()); err != nil {
			t.Fatal(err)
		}
		if _, err := txn.Vote(ctx); err != nil {
			t.Fatal(err)
		}
		tid, err := txn.Finish(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tids = append(tids, tid)
	}
	for i, tid := range tids {
		mustLoadBlob(t, reader, stack.Oid(i+1), tid)
		time.Sleep(10 * time.Millisecond) // distinct modification times
	}
	var total int64
	filepath.Walk(cacheDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && strings.HasSuffix(p, ".blob") {
			total += fi.Size()
		}
		return nil
	})
	if total > int64(limit) {
		t.Fatalf("blob cache holds %d bytes, limit %d", total, limit)
	}
	if p := mustLoadBlob(t, reader, 1, tids[0]); p == "" {
		t.Fatal("pruned blob not downloaded again")
	}
}

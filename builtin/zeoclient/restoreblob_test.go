//go:build interop

package zeoclient_test

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/interop/pyenv"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// TestRestoreBlobRunzeo copies a blob-bearing history from one runzeo
// storage into an empty one through the restore path, as a RAID recovery
// does: tpc_begin with the original tid and status, Restore for plain
// records, RestoreBlob for records with a blob (a new blob, a plain
// record, then a new revision of the first blob, which must be stored
// against the target's current serial). The target ends with the same
// tids, data and blob bytes.
func TestRestoreBlobRunzeo(t *testing.T) {
	srv := pyenv.StartRunzeo(t, pyenv.RunzeoOptions{Storages: []string{"s1", "s2"}, Blobs: true})
	ctx := ctxT(t, 2*time.Minute)
	node := func(name string) *stackStorage {
		o := options(t, name, srv.Addr)
		o.BlobDir = zconfig.ExistingDirPath(t.TempDir())
		return &stackStorage{open(t, o)}
	}
	src, dst := node("s1"), node("s2")
	record := []byte("\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.")
	stage := func(s *stackStorage, content []byte) string {
		t.Helper()
		f, err := os.CreateTemp(s.BlobTempDir(), "up-*.tmp")
		if err != nil {
			t.Fatal(err)
		}
		f.Write(content)
		f.Close()
		return f.Name()
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 10_000) // several chunks
	storeBlob := func(oid stack.Oid, serial stack.Tid, content []byte) stack.Tid {
		t.Helper()
		txn, err := src.Begin(ctx, stack.TxnMeta{User: []byte("u"), Description: []byte("blob")})
		if err != nil {
			t.Fatal(err)
		}
		if err := txn.(stack.BlobTxn).StoreBlob(ctx, oid, serial, record, stage(src, content)); err != nil {
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
	t1 := storeBlob(1, 0, big)
	t2 := commit(t, src, store{oid: 2, data: "plain"})
	t3 := storeBlob(1, t1, []byte("second revision"))

	// Copy every transaction as RAID recovery does.
	it, _ := stack.AsIterator(src.Storage)
	ti, err := it.Iterate(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ti.Close()
	var copied []stack.Tid
	for {
		tr, ok, err := ti.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		txn, err := dst.Begin(ctx, tr.TxnMeta)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range tr.Records {
			p, err := src.LoadBlob(ctx, d.Oid, tr.Tid)
			switch {
			case err == nil:
				content, rerr := os.ReadFile(p)
				if rerr != nil {
					t.Fatal(rerr)
				}
				err = txn.(stack.BlobTxn).RestoreBlob(ctx, d.Oid, d.Data, stage(dst, content), d.DataTxn)
			case isNotFound(err):
				err = txn.(stack.RestoreTxn).Restore(ctx, d.Oid, d.Data, d.DataTxn)
			}
			if err != nil {
				t.Fatalf("copying %s of %s: %v", d.Oid, tr.Tid, err)
			}
		}
		if _, err := txn.Vote(ctx); err != nil {
			t.Fatalf("vote of %s: %v", tr.Tid, err)
		}
		tid, err := txn.Finish(ctx)
		if err != nil || tid != tr.Tid {
			t.Fatalf("finish of %s = %s, %v", tr.Tid, tid, err)
		}
		copied = append(copied, tid)
	}
	if len(copied) != 3 || copied[0] != t1 || copied[1] != t2 || copied[2] != t3 {
		t.Fatalf("copied %v, want %s %s %s", copied, t1, t2, t3)
	}

	// A fresh reader of the target sees the source's history and blobs.
	reader := node("s2")
	for _, want := range []struct {
		oid     stack.Oid
		tid     stack.Tid
		content []byte
	}{{1, t1, big}, {1, t3, []byte("second revision")}} {
		p, err := reader.LoadBlob(ctx, want.oid, want.tid)
		if err != nil {
			t.Fatalf("blob %s@%s on the target: %v", want.oid, want.tid, err)
		}
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want.content) {
			t.Fatalf("blob %s@%s on the target: %d bytes, %v; want %d bytes", want.oid, want.tid, len(got), err, len(want.content))
		}
	}
	rev, err := reader.LoadBefore(ctx, 1, stack.MaxTid)
	if err != nil || rev.Serial != t3 || !bytes.Equal(rev.Data, record) {
		t.Fatalf("oid 1 on the target: %s %q, %v; want %s", rev.Serial, rev.Data, err, t3)
	}
	rev, err = reader.LoadBefore(ctx, 2, stack.MaxTid)
	if err != nil || rev.Serial != t2 || string(rev.Data) != "plain" {
		t.Fatalf("oid 2 on the target: %s %q, %v; want %s", rev.Serial, rev.Data, err, t2)
	}
	h, err := reader.History(ctx, 1, 10)
	if err != nil || len(h) != 2 || string(h[0].User) != "u" || string(h[0].Description) != "blob" {
		t.Fatalf("history of oid 1 on the target: %+v, %v", h, err)
	}

	// RestoreBlob needs a transaction begun with an explicit tid.
	txn, err := dst.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Abort(ctx)
	err = txn.(stack.BlobTxn).RestoreBlob(ctx, 3, record, stage(dst, []byte("x")), 0)
	if !errors.Is(err, stack.ErrTxnState) {
		t.Fatalf("RestoreBlob without a tid: %v, want ErrTxnState", err)
	}
}

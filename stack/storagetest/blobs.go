package storagetest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/stack"
)

// blobRecord is the record ZODB writes for a Blob object: the class
// ZODB.blob.Blob and a None state; the bytes live in the blob file.
var blobRecord = []byte("\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.")

// stageBlob writes content to a new file in the storage's temp dir, as the
// server does with an upload.
func stageBlob(t *testing.T, b stack.Blobber, content string) string {
	t.Helper()
	f, err := os.CreateTemp(b.BlobTempDir(), "upload-*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// commitBlob stores a blob revision of oid in one transaction.
func commitBlob(t *testing.T, s stack.Storage, oid stack.Oid, serial stack.Tid, content string) (stack.Tid, error) {
	t.Helper()
	ctx := ctxOf(t)
	b, _ := stack.AsBlobber(s)
	path := stageBlob(t, b, content)
	tx, err := s.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		return 0, err
	}
	if err := tx.(stack.BlobTxn).StoreBlob(ctx, oid, serial, blobRecord, path); err != nil {
		_ = tx.Abort(ctx)
		return 0, err
	}
	if _, err := tx.Vote(ctx); err != nil {
		_ = tx.Abort(ctx)
		return 0, err
	}
	return tx.Finish(ctx)
}

func wantBlob(t *testing.T, s stack.Storage, oid stack.Oid, serial stack.Tid, content string) {
	t.Helper()
	b, _ := stack.AsBlobber(s)
	path, err := b.LoadBlob(ctxOf(t), oid, serial)
	if err != nil {
		t.Fatalf("LoadBlob(%s, %s): %v", oid, serial, err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != content {
		t.Fatalf("blob %s@%s = %q, %v; want %q", oid, serial, got, err, content)
	}
}

func testBlobs(t *testing.T, h Harness) {
	if !h.caps(t).Blobs {
		t.Skip("capability Blobs not reported")
	}
	t.Run("StoreAndLoad", func(t *testing.T) {
		s := open(t, h)
		ctx := ctxOf(t)
		t1, err := commitBlob(t, s, 1, 0, "first blob")
		if err != nil {
			t.Fatal(err)
		}
		t2, err := commitBlob(t, s, 1, t1, "second blob")
		if err != nil {
			t.Fatal(err)
		}
		wantBlob(t, s, 1, t1, "first blob")
		wantBlob(t, s, 1, t2, "second blob")
		wantData(t, s, 1, string(blobRecord), t2)
		b, _ := stack.AsBlobber(s)
		if _, err := b.LoadBlob(ctx, 1, t2+1); !isNotFound(err) {
			t.Fatalf("LoadBlob of a revision that does not exist: %v, want NotFoundError", err)
		}
		if _, err := b.LoadBlob(ctx, 99, t1); !isNotFound(err) {
			t.Fatalf("LoadBlob of an unknown object: %v, want NotFoundError", err)
		}
	})
	t.Run("AbortLeavesNothing", func(t *testing.T) {
		s := open(t, h)
		ctx := ctxOf(t)
		b, _ := stack.AsBlobber(s)
		path := stageBlob(t, b, "never committed")
		tx, err := s.Begin(ctx, stack.TxnMeta{})
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.(stack.BlobTxn).StoreBlob(ctx, 1, 0, blobRecord, path); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Vote(ctx); err != nil {
			t.Fatal(err)
		}
		if err := tx.Abort(ctx); err != nil {
			t.Fatal(err)
		}
		wantNotFound(t, s, 1)
		// Nothing of the aborted upload remains in the temp dir or as a
		// committed-looking file.
		entries, _ := os.ReadDir(b.BlobTempDir())
		for _, e := range entries {
			if filepath.Join(b.BlobTempDir(), e.Name()) == path {
				t.Fatalf("aborted upload %s left behind", path)
			}
		}
		t1, err := commitBlob(t, s, 1, 0, "after abort")
		if err != nil {
			t.Fatal(err)
		}
		wantBlob(t, s, 1, t1, "after abort")
	})
	t.Run("ConflictKeepsCommittedBlob", func(t *testing.T) {
		s := open(t, h)
		t1, err := commitBlob(t, s, 1, 0, "v1")
		if err != nil {
			t.Fatal(err)
		}
		t2, err := commitBlob(t, s, 1, t1, "v2")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := commitBlob(t, s, 1, t1, "stale writer"); len(conflictOids(err)) == 0 {
			t.Fatalf("a blob store with a stale serial: %v, want a conflict", err)
		}
		wantBlob(t, s, 1, t2, "v2")
		wantData(t, s, 1, string(blobRecord), t2)
	})
	if h.caps(t).Undo {
		t.Run("UndoRestoresBlob", func(t *testing.T) {
			s := open(t, h)
			ctx := ctxOf(t)
			t1, err := commitBlob(t, s, 1, 0, "original")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := commitBlob(t, s, 1, t1, "changed"); err != nil {
				t.Fatal(err)
			}
			u, _ := stack.AsUndoer(s)
			log, err := u.UndoLog(ctx, 0, 1, nil)
			if err != nil || len(log) != 1 {
				t.Fatalf("UndoLog: %v, %v", log, err)
			}
			tx, err := s.Begin(ctx, stack.TxnMeta{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.(stack.UndoTxn).Undo(ctx, log[0].ID); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Vote(ctx); err != nil {
				t.Fatal(err)
			}
			t3, err := tx.Finish(ctx)
			if err != nil {
				t.Fatal(err)
			}
			r := current(t, s, 1)
			if r.Serial != t3 {
				t.Fatalf("after undo the current serial is %s, want %s", r.Serial, t3)
			}
			wantBlob(t, s, 1, t3, "original")
		})
	}
	if h.caps(t).Pack {
		t.Run("PackRemovesOldRevisions", func(t *testing.T) {
			s := open(t, h)
			ctx := ctxOf(t)
			commit(t, s, op{oid: 0, data: record("root", 1)}) // keeps oid 1 reachable
			t1, err := commitBlob(t, s, 1, 0, "old")
			if err != nil {
				t.Fatal(err)
			}
			t2, err := commitBlob(t, s, 1, t1, "new")
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
			p, _ := stack.AsPacker(s)
			if err := p.Pack(ctx, time.Now(), true); err != nil {
				t.Fatal(err)
			}
			wantBlob(t, s, 1, t2, "new")
			b, _ := stack.AsBlobber(s)
			if _, err := b.LoadBlob(ctx, 1, t1); !isNotFound(err) {
				t.Fatalf("blob of a packed revision survived: %v", err)
			}
		})
	}
	if h.Reopen != nil {
		t.Run("Persistence", func(t *testing.T) {
			s := h.Open(t)
			t1, err := commitBlob(t, s, 1, 0, "durable blob")
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			r := h.Reopen(t, s)
			t.Cleanup(func() { _ = r.Close() })
			wantBlob(t, r, 1, t1, "durable blob")
		})
	}
}

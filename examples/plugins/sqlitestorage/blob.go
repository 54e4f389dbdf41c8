package sqlitestorage

import (
	"context"
	"errors"
	"os"

	"github.com/zeoraid/zeoraid/stack"
)

// Blob files live in the blob directory in ZODB's layout, one file per
// revision, placed by Vote; SQLite holds only the blob object's record.
// A crash between Vote and the COMMIT can leave a placed file without a
// record: nothing finds it, and a later transaction that gets the same
// tid replaces it.

var _ stack.BlobTxn = (*txn)(nil)

// LoadBlob returns the blob file of oid's committed revision serial.
func (s *Storage) LoadBlob(ctx context.Context, oid stack.Oid, serial stack.Tid) (path string, err error) {
	defer stack.WrapOp(&err, s.node, "loadBlob", &oid, &serial)
	if s.blobs == nil {
		return "", stack.ErrNotSupported
	}
	if _, err := s.revisionData(ctx, oid, serial); err != nil {
		return "", err
	}
	path = s.blobs.File(oid, serial)
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", &stack.NotFoundError{Oid: oid, Tid: serial}
		}
		return "", err
	}
	return path, nil
}

// BlobTempDir is <blob-dir>/tmp, where uploads are staged.
func (s *Storage) BlobTempDir() string {
	if s.blobs == nil {
		return ""
	}
	return s.blobs.TempDir()
}

// StoreBlob is storeBlob: Store with a blob file, which the transaction
// takes over. Vote moves it to its revision's name; Abort removes it.
func (t *txn) StoreBlob(ctx context.Context, oid stack.Oid, serial stack.Tid, data []byte, blobPath string) (err error) {
	defer stack.WrapOp(&err, t.s.node, "storeBlob", &oid, &t.tid)
	if t.s.blobs == nil {
		return stack.ErrNotSupported
	}
	if err := t.usable(ctx); err != nil {
		return err
	}
	if len(data) == 0 {
		return stack.ErrEmptyData
	}
	t.put(&write{oid: oid, serial: serial, check: true, data: clone(data), blob: blobPath})
	t.uploads = append(t.uploads, blobPath)
	return nil
}

// RestoreBlob is restoreBlob: Restore plus the blob file.
func (t *txn) RestoreBlob(ctx context.Context, oid stack.Oid, data []byte, blobPath string, prevTxn stack.Tid) (err error) {
	defer stack.WrapOp(&err, t.s.node, "restoreBlob", &oid, &t.tid)
	if t.s.blobs == nil {
		return stack.ErrNotSupported
	}
	return t.restore(ctx, oid, data, prevTxn, blobPath)
}

package badgerstorage

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/dgraph-io/badger/v4"

	"github.com/zeoraid/zeoraid/stack"
)

// Blob files live in the blob directory in ZODB's layout, one file per
// revision, never in Badger: Badger holds only the blob object's record.

// LoadBlob returns the blob file of oid's committed revision serial.
func (s *Storage) LoadBlob(ctx context.Context, oid stack.Oid, serial stack.Tid) (string, error) {
	if s.blobs == nil {
		return "", stack.ErrNotSupported
	}
	path := s.blobs.File(oid, serial)
	err := s.view(ctx, func(txn *badger.Txn, _ stack.Tid) error {
		r, found, err := getRevision(txn, oid, serial)
		if err != nil {
			return err
		}
		if !found || r.data == nil {
			return &stack.NotFoundError{Oid: oid, Tid: serial}
		}
		if _, err := os.Stat(path); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return &stack.NotFoundError{Oid: oid, Tid: serial}
			}
			return err
		}
		return nil
	})
	if err != nil {
		return "", s.fail("loadBlob", &oid, &serial, err)
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

// StoreBlob is storeBlob: the serial is checked at once, and on a
// conflict (reported by Vote) the upload is left where it is; otherwise
// the file moves to its revision's name, invisible until the record
// commits.
func (t *txn) StoreBlob(ctx context.Context, oid stack.Oid, serial stack.Tid, data []byte, blobPath string) error {
	if t.s.blobs == nil {
		return stack.ErrNotSupported
	}
	if err := t.usable(ctx); err != nil {
		return err
	}
	if len(data) == 0 {
		return fmt.Errorf("oid %s: %w", oid, stack.ErrEmptyData)
	}
	cur, _, err := t.current(ctx, oid)
	if err != nil {
		return t.s.fail("storeBlob", &oid, nil, err)
	}
	if cur.tid != serial {
		t.clashes = append(t.clashes, &stack.ConflictError{Oid: oid, Committed: cur.tid, Read: serial, Data: clone(data)})
		return nil
	}
	t.put(&write{oid: oid, serial: serial, check: true, data: clone(data)})
	return t.placeBlob(blobPath, oid, false)
}

// RestoreBlob is restoreBlob: Restore plus the blob file.
func (t *txn) RestoreBlob(ctx context.Context, oid stack.Oid, data []byte, blobPath string, prevTxn stack.Tid) error {
	if t.s.blobs == nil {
		return stack.ErrNotSupported
	}
	if err := t.Restore(ctx, oid, data, prevTxn); err != nil {
		return err
	}
	return t.placeBlob(blobPath, oid, false)
}

// placeBlob moves (or copies) src to oid's revision in this transaction.
func (t *txn) placeBlob(src string, oid stack.Oid, keepSrc bool) error {
	dst, err := t.s.blobs.Place(src, oid, t.tid, keepSrc)
	if dst != "" {
		t.blobs = append(t.blobs, dst)
	}
	return err
}

package filestorage

import (
	"context"
	"errors"
	"os"
	"strings"

	"github.com/zeoraid/zeoraid/stack"
)

// blobMove is a blob file this transaction put in place.
type blobMove struct {
	dst string
}

// LoadBlob returns the committed blob file of oid's revision serial.
func (s *Storage) LoadBlob(ctx context.Context, oid stack.Oid, serial stack.Tid) (_ string, err error) {
	defer stack.WrapOp(&err, s.node, "loadBlob", &oid, &serial)
	if s.blobs == nil {
		return "", stack.ErrNotSupported
	}
	p := s.blobs.File(oid, serial)
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", &stack.NotFoundError{Oid: oid, Tid: serial}
		}
		return "", err
	}
	return p, nil
}

// BlobTempDir is <blob-dir>/tmp, where uploads are staged.
func (s *Storage) BlobTempDir() string {
	if s.blobs == nil {
		return ""
	}
	return s.blobs.TempDir()
}

// StoreBlob is storeBlob: Store, then the file moves to its final name at
// once (it is invisible until the record is committed).
func (t *txn) StoreBlob(ctx context.Context, oid stack.Oid, serial stack.Tid, data []byte, blobPath string) (err error) {
	defer stack.WrapOp(&err, t.s.node, "storeBlob", &oid, &t.tid)
	if t.s.blobs == nil {
		return stack.ErrNotSupported
	}
	n := len(t.clashes)
	if err := t.Store(ctx, oid, serial, data); err != nil {
		return err
	}
	if len(t.clashes) > n {
		return nil // a conflict: Vote reports it; the upload stays for a retry
	}
	return t.placeBlob(blobPath, oid, false)
}

// RestoreBlob is restoreBlob: Restore plus the blob file.
func (t *txn) RestoreBlob(ctx context.Context, oid stack.Oid, data []byte, blobPath string, prevTxn stack.Tid) (err error) {
	defer stack.WrapOp(&err, t.s.node, "restoreBlob", &oid, &t.tid)
	if t.s.blobs == nil {
		return stack.ErrNotSupported
	}
	if err := t.Restore(ctx, oid, data, prevTxn); err != nil {
		return err
	}
	return t.placeBlob(blobPath, oid, false)
}

func (t *txn) placeBlob(src string, oid stack.Oid, keepSrc bool) error {
	dst, err := t.s.blobs.Place(src, oid, t.tid, keepSrc)
	if dst != "" {
		t.blobs = append(t.blobs, blobMove{dst: dst})
	}
	return err
}

// isBlobRecord tells a blob record by its class pickle (docs/filestorage.md §5.5).
func isBlobRecord(data []byte) bool {
	return strings.Contains(string(data), "ZODB.blob")
}

// BlobDir is the configured blob directory ("" without blobs).
func (s *Storage) BlobDir() string { return string(s.opts.BlobDir) }

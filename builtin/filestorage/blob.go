package filestorage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/zeoraid/zeoraid/stack"
)

// blobDir is a ZODB blob directory (filestorage.md §6): .layout, tmp/ and
// one file per blob revision, interchangeable with Python's.
type blobDir struct {
	dir  string
	lawn bool // legacy layout; bushy otherwise
}

// blobMove is a blob file this transaction put in place.
type blobMove struct {
	dst string
}

// openBlobDir creates the directory, its tmp/ and .layout as needed and
// finds its layout.
func openBlobDir(dir string, readOnly bool) (*blobDir, error) {
	b := &blobDir{dir: dir}
	marker, err := os.ReadFile(filepath.Join(dir, ".layout"))
	switch {
	case err == nil:
		switch strings.TrimSpace(string(marker)) {
		case "bushy":
		case "lawn":
			b.lawn = true
		default:
			return nil, fmt.Errorf("blob directory %s: unknown layout %q in .layout", dir, marker)
		}
	case errors.Is(err, os.ErrNotExist):
		entries, rerr := os.ReadDir(dir)
		if rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return nil, rerr
		}
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") {
				b.lawn = true // a legacy directory without marker
				break
			}
		}
		if !readOnly {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, err
			}
			layout := "bushy"
			if b.lawn {
				layout = "lawn"
			}
			if err := os.WriteFile(filepath.Join(dir, ".layout"), []byte(layout), 0o644); err != nil {
				return nil, err
			}
		}
	default:
		return nil, err
	}
	if !readOnly {
		if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// reprHex is ZODB's oid_repr/tid_repr: 0x and the hex digits without
// leading zeros, padded to an even count.
func reprHex(v uint64) string {
	h := strconv.FormatUint(v, 16)
	if len(h)%2 == 1 {
		h = "0" + h
	}
	return "0x" + h
}

// oidDir is the directory of oid's blob files.
func (b *blobDir) oidDir(oid stack.Oid) string {
	if b.lawn {
		return filepath.Join(b.dir, reprHex(uint64(oid)))
	}
	parts := []string{b.dir}
	for _, c := range oid.Bytes() {
		parts = append(parts, fmt.Sprintf("0x%02x", c))
	}
	return filepath.Join(parts...)
}

// path is the file of oid's blob revision tid.
func (b *blobDir) path(oid stack.Oid, tid stack.Tid) string {
	return filepath.Join(b.oidDir(oid), reprHex(uint64(tid))+".blob")
}

// place moves (or copies, across file systems) src to oid's revision tid
// and makes it read-only, as Python does.
func (b *blobDir) place(src string, oid stack.Oid, tid stack.Tid, keepSrc bool) (string, error) {
	dir := b.oidDir(oid)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	dst := b.path(oid, tid)
	if keepSrc {
		if err := copyFile(src, dst); err != nil {
			return "", err
		}
	} else if err := os.Rename(src, dst); err != nil {
		if err := copyFile(src, dst); err != nil {
			return "", err
		}
		os.Remove(src)
	}
	fi, err := os.Stat(dst)
	if err != nil {
		return "", err
	}
	di, err := os.Stat(dir)
	if err != nil {
		return "", err
	}
	mode := fi.Mode().Perm()&^0o222 | di.Mode().Perm()&0o444
	return dst, os.Chmod(dst, mode)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
	}
	return err
}

// LoadBlob returns the committed blob file of oid's revision serial.
func (s *Storage) LoadBlob(ctx context.Context, oid stack.Oid, serial stack.Tid) (string, error) {
	if s.blobs == nil {
		return "", stack.ErrNotSupported
	}
	p := s.blobs.path(oid, serial)
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
	return filepath.Join(s.blobs.dir, "tmp")
}

// StoreBlob is storeBlob: Store, then the file moves to its final name at
// once (it is invisible until the record is committed).
func (t *txn) StoreBlob(ctx context.Context, oid stack.Oid, serial stack.Tid, data []byte, blobPath string) error {
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
func (t *txn) RestoreBlob(ctx context.Context, oid stack.Oid, data []byte, blobPath string, prevTxn stack.Tid) error {
	if t.s.blobs == nil {
		return stack.ErrNotSupported
	}
	if err := t.Restore(ctx, oid, data, prevTxn); err != nil {
		return err
	}
	return t.placeBlob(blobPath, oid, false)
}

func (t *txn) placeBlob(src string, oid stack.Oid, keepSrc bool) error {
	dst, err := t.s.blobs.place(src, oid, t.tid, keepSrc)
	if dst != "" {
		t.blobs = append(t.blobs, blobMove{dst: dst})
	}
	return err
}

// isBlobRecord tells a blob record by its class pickle (§5.7).
func isBlobRecord(data []byte) bool {
	return strings.Contains(string(data), "ZODB.blob")
}

// BlobDir is the configured blob directory ("" without blobs).
func (s *Storage) BlobDir() string { return string(s.opts.BlobDir) }

// Package blobdir is ZODB's blob directory layout, shared by every storage
// that keeps blob files and by the server's shared-blob-dir uploads: the
// .layout marker, the bushy (or legacy lawn) directory of each oid, the
// file name of each revision, and the tmp directory uploads are staged in.
package blobdir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/zeoraid/zeoraid/stack"
)

// Dir is a ZODB blob directory (docs/filestorage.md §6): .layout, tmp/ and
// one file per blob revision, interchangeable with Python's.
type Dir struct {
	Path string // the directory
	Lawn bool   // legacy layout; bushy otherwise
}

// Open creates the directory, its tmp/ and .layout as needed and
// finds its layout.
func Open(dir string, readOnly bool) (*Dir, error) {
	b := &Dir{Path: dir}
	marker, err := os.ReadFile(filepath.Join(dir, ".layout"))
	switch {
	case err == nil:
		switch strings.TrimSpace(string(marker)) {
		case "bushy":
		case "lawn":
			b.Lawn = true
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
				b.Lawn = true // a legacy directory without marker
				break
			}
		}
		if !readOnly {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, err
			}
			layout := "bushy"
			if b.Lawn {
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

// ReprHex is ZODB's oid_repr/tid_repr: 0x and the hex digits without
// leading zeros, padded to an even count.
func ReprHex(v uint64) string {
	h := strconv.FormatUint(v, 16)
	if len(h)%2 == 1 {
		h = "0" + h
	}
	return "0x" + h
}

// OidDir is the directory of oid's blob files.
func (b *Dir) OidDir(oid stack.Oid) string {
	if b.Lawn {
		return filepath.Join(b.Path, ReprHex(uint64(oid)))
	}
	parts := []string{b.Path}
	for _, c := range oid.Bytes() {
		parts = append(parts, fmt.Sprintf("0x%02x", c))
	}
	return filepath.Join(parts...)
}

// File is the file of oid's blob revision tid.
func (b *Dir) File(oid stack.Oid, tid stack.Tid) string {
	return filepath.Join(b.OidDir(oid), ReprHex(uint64(tid))+".blob")
}

// Place moves (or copies, across file systems) src to oid's revision tid
// and makes it read-only, as Python does.
func (b *Dir) Place(src string, oid stack.Oid, tid stack.Tid, keepSrc bool) (string, error) {
	dir := b.OidDir(oid)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	dst := b.File(oid, tid)
	if keepSrc {
		if err := CopyFile(src, dst); err != nil {
			return "", err
		}
	} else if err := os.Rename(src, dst); err != nil {
		if err := CopyFile(src, dst); err != nil {
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

// CopyFile copies src to dst and syncs it; a failed copy leaves no dst.
func CopyFile(src, dst string) error {
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

// TempDir is <dir>/tmp, where uploads are staged so that committing them is
// a rename.
func (b *Dir) TempDir() string { return filepath.Join(b.Path, "tmp") }

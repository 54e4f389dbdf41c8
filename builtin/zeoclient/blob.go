package zeoclient

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/blobdir"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// blobDir is the node's blob directory: a private download cache in ZEO's
// client layout (<oid % 997>/<oid / 997>.<tid hex>.blob), or, with
// shared-blob-dir, the server's own directory in ZODB's bushy layout.
type blobDir struct {
	dir    string
	shared *blobdir.Dir // the server's directory, with shared-blob-dir
	dlMu   sync.Mutex   // one download at a time

	mu    sync.Mutex // guards the rest
	limit int64      // blob-cache-size; 0: unbounded
	check int64      // bytes added between two size checks
	added int64      // bytes added since the last size check
}

func openBlobDir(o Options) (*blobDir, error) {
	dir, err := filepath.Abs(string(o.BlobDir))
	if err != nil {
		return nil, err
	}
	b := &blobDir{dir: dir}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("blob-dir: %w", err)
	}
	if o.SharedBlobDir {
		if b.shared, err = blobdir.Open(dir, false); err != nil {
			return nil, fmt.Errorf("shared blob-dir: %w", err)
		}
	}
	b.setLimits(&o)
	return b, nil
}

// setLimits takes blob-cache-size and blob-cache-size-check from o (a
// shared directory is the server's: never pruned).
func (b *blobDir) setLimits(o *Options) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.limit, b.check = 0, 0
	if o.BlobCacheSize != nil && b.shared == nil {
		b.limit = int64(*o.BlobCacheSize)
		b.check = b.limit * int64(o.BlobCacheSizeCheck) / 100
	}
}

// path is where the committed blob of oid's revision tid lives.
func (b *blobDir) path(oid stack.Oid, tid stack.Tid) string {
	if b.shared != nil {
		return b.shared.File(oid, tid)
	}
	return filepath.Join(b.dir, fmt.Sprint(uint64(oid)%997), fmt.Sprintf("%d.%s.blob", uint64(oid)/997, tid.Hex()))
}

// stageShared moves an upload into oid's directory of the shared blob
// directory under a name storeBlobShared accepts (…tmp), and returns it.
func (b *blobDir) stageShared(oid stack.Oid, from string) (string, error) {
	dir := b.shared.OidDir(oid)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, "zeoraid-*.tmp")
	if err != nil {
		return "", err
	}
	name := f.Name()
	f.Close()
	if err := moveFile(from, name); err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

// committed keeps an uploaded blob as the cached copy of revision tid.
// With a shared directory the server has moved it already.
func (b *blobDir) committed(oid stack.Oid, tid stack.Tid, from string) error {
	if b.shared != nil {
		return nil
	}
	to := b.path(oid, tid)
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		return err
	}
	if err := moveFile(from, to); err != nil {
		return err
	}
	os.Chmod(to, 0o444)
	if fi, err := os.Stat(to); err == nil {
		b.grew(to, fi.Size())
	}
	return nil
}

// moveFile renames, or copies across file systems.
func moveFile(from, to string) error {
	if err := os.Rename(from, to); err == nil {
		return nil
	}
	if err := blobdir.CopyFile(from, to); err != nil {
		return err
	}
	return os.Remove(from)
}

// grew accounts for the new file keep of n bytes and prunes the cache
// every check bytes (never removing keep, which a caller is about to use).
func (b *blobDir) grew(keep string, n int64) {
	b.mu.Lock()
	limit, due := b.limit, false
	if limit > 0 {
		b.added += n
		if due = b.added >= b.check; due {
			b.added = 0
		}
	}
	b.mu.Unlock()
	if due {
		b.prune(keep, limit)
	}
}

// prune removes the least recently modified cached blobs until the cache
// is within limit.
func (b *blobDir) prune(keep string, limit int64) {
	type file struct {
		path string
		size int64
		mod  int64
	}
	var files []file
	var total int64
	filepath.WalkDir(b.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".blob") {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			files = append(files, file{p, fi.Size(), fi.ModTime().UnixNano()})
			total += fi.Size()
		}
		return nil
	})
	sort.Slice(files, func(i, j int) bool { return files[i].mod < files[j].mod })
	for _, f := range files {
		if total <= limit {
			break
		}
		if f.path != keep && os.Remove(f.path) == nil {
			total -= f.size
		}
	}
}

// LoadBlob implements stack.Blobber: the blob file of oid's revision
// serial, downloaded into the blob cache (sendBlob) unless it is there
// already; with a shared directory, the server's file.
func (s *Storage) LoadBlob(ctx context.Context, oid stack.Oid, serial stack.Tid) (string, error) {
	fail := func(err error) (string, error) { return "", s.opErr("loadBlob", &oid, &serial, err) }
	ss, err := s.current()
	if err == nil && !s.Capabilities().Blobs {
		err = fmt.Errorf("%w: no blob support (the remote has none, or blob-dir is not set)", stack.ErrNotSupported)
	}
	if err != nil {
		return fail(err)
	}
	p := s.blobs.path(oid, serial)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if s.blobs.shared != nil {
		return fail(&stack.NotFoundError{Oid: oid, Tid: serial})
	}
	s.blobs.dlMu.Lock()
	defer s.blobs.dlMu.Unlock()
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if _, err := ss.c.Call(ctx, "sendBlob", oid, serial); err != nil {
		// Python's POSKeyError here carries a message, not (oid, serial):
		// name what was asked for.
		var nf *stack.NotFoundError
		if errors.As(err, &nf) && nf.Msg != "" {
			err = &stack.NotFoundError{Oid: oid, Tid: serial}
		}
		return fail(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return fail(fmt.Errorf("server sent no blob file: %w", err))
	}
	s.blobs.grew(p, fi.Size())
	return p, nil
}

// BlobTempDir implements stack.Blobber.
func (s *Storage) BlobTempDir() string {
	if s.blobs == nil {
		return ""
	}
	return filepath.Join(s.blobs.dir, "tmp")
}

// download is a blob being received.
type download struct {
	oid  stack.Oid
	tid  stack.Tid
	f    *os.File
	path string
	err  error
}

// receiveBlob handles receiveBlobStart/Chunk/Stop (on the reader
// goroutine): the file is written as <path>.dl and renamed into place.
func (ss *session) receiveBlob(name string, a zeoproto.Args) {
	b := ss.s.blobs
	oid, err := a.Oid(0)
	var tid stack.Tid
	if err == nil {
		tid, err = a.Tid(1)
	}
	if err != nil || b == nil {
		ss.s.log.WithField("message", name).Warn("unexpected or malformed blob message; ignored")
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	switch name {
	case "receiveBlobStart":
		ss.abortDownloadLocked()
		dl := &download{oid: oid, tid: tid, path: b.path(oid, tid)}
		if dl.err = os.MkdirAll(filepath.Dir(dl.path), 0o700); dl.err == nil {
			dl.f, dl.err = os.Create(dl.path + ".dl")
		}
		ss.dl = dl
	case "receiveBlobChunk":
		dl := ss.dl
		if dl == nil || dl.oid != oid || dl.tid != tid {
			return
		}
		chunk, err := a.Bytes(2)
		if err == nil && dl.err == nil {
			_, dl.err = dl.f.Write(chunk)
		}
	case "receiveBlobStop":
		dl := ss.dl
		if dl == nil || dl.oid != oid || dl.tid != tid {
			return
		}
		ss.dl = nil
		if dl.f != nil {
			if err := dl.f.Close(); dl.err == nil {
				dl.err = err
			}
		}
		if dl.err == nil {
			dl.err = os.Rename(dl.path+".dl", dl.path)
		}
		if dl.err != nil {
			os.Remove(dl.path + ".dl")
			ss.s.log.WithError(dl.err).WithField("oid", oid.String()).Error("could not write a downloaded blob")
			return
		}
		os.Chmod(dl.path, 0o444)
	}
}

func (ss *session) abortDownload() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.abortDownloadLocked()
}

func (ss *session) abortDownloadLocked() {
	if dl := ss.dl; dl != nil {
		ss.dl = nil
		if dl.f != nil {
			dl.f.Close()
			os.Remove(dl.path + ".dl")
		}
	}
}

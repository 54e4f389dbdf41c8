package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/zeoraid/zeoraid/plugins/internal/wire"
	"github.com/zeoraid/zeoraid/plugins/proto"
	"github.com/zeoraid/zeoraid/stack"
)

// blobCache is a node's host-side directory of blob files loaded from its
// plugin (LoadBlob hands out paths, so the bytes must be on the host's
// disk) and its staging directory for uploads (BlobTempDir). Committed
// blob revisions never change, so a cached file stays right; the least
// recently used files beyond the size bound are removed.
type blobCache struct {
	dir   string
	tmp   string
	limit int64

	mu    sync.Mutex
	files map[string]*cachedBlob
	size  int64
	// loading makes concurrent loads of one revision share one download.
	loading map[string]chan struct{}
}

type cachedBlob struct {
	size int64
	used time.Time
}

func newBlobCache(parent string, limit int64) (*blobCache, error) {
	dir, err := os.MkdirTemp(parent, "zeoraid-plugin-blobs-")
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &blobCache{dir: dir, tmp: tmp, limit: limit, files: map[string]*cachedBlob{}, loading: map[string]chan struct{}{}}, nil
}

// remove deletes the cache and the staging directory.
func (b *blobCache) remove() error { return os.RemoveAll(b.dir) }

// clear forgets every cached file.
func (b *blobCache) clear() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for name := range b.files {
		os.Remove(filepath.Join(b.dir, name))
	}
	b.files, b.size = map[string]*cachedBlob{}, 0
}

// add records a file just renamed into the cache and evicts the least
// recently used others while the cache is over its bound.
func (b *blobCache) add(name string, size int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.files[name] = &cachedBlob{size: size, used: time.Now()}
	b.size += size
	if b.size <= b.limit {
		return
	}
	names := make([]string, 0, len(b.files))
	for n := range b.files {
		if n != name {
			names = append(names, n)
		}
	}
	sort.Slice(names, func(i, j int) bool { return b.files[names[i]].used.Before(b.files[names[j]].used) })
	for _, n := range names {
		if b.size <= b.limit {
			break
		}
		b.size -= b.files[n].size
		delete(b.files, n)
		os.Remove(filepath.Join(b.dir, n))
	}
}

// BlobTempDir is the node's host-side staging directory: uploads staged
// here are streamed to the plugin by StoreBlob.
func (s *Storage) BlobTempDir() string { return s.blobs.tmp }

// LoadBlob returns the path of a host-side copy of the blob file, fetched
// from the plugin in chunks (memory stays bounded whatever its size).
func (s *Storage) LoadBlob(ctx context.Context, oid stack.Oid, serial stack.Tid) (_ string, err error) {
	defer s.wrap(&err, "loadBlob", &oid, &serial)
	name := fmt.Sprintf("%016x-%016x.blob", uint64(oid), uint64(serial))
	path := filepath.Join(s.blobs.dir, name)
	for {
		b := s.blobs
		b.mu.Lock()
		if f, ok := b.files[name]; ok {
			f.used = time.Now()
			b.mu.Unlock()
			return path, nil
		}
		wait, busy := b.loading[name]
		if !busy {
			wait = make(chan struct{})
			b.loading[name] = wait
			b.mu.Unlock()
			break
		}
		b.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	defer func() {
		s.blobs.mu.Lock()
		close(s.blobs.loading[name])
		delete(s.blobs.loading, name)
		s.blobs.mu.Unlock()
	}()
	c, err := s.conn()
	if err != nil {
		return "", err
	}
	size, err := s.download(ctx, c, oid, serial, path)
	if err != nil {
		return "", err
	}
	s.blobs.add(name, size)
	return path, nil
}

// download streams a blob into path (through a temporary file, so a
// partial download is never seen).
func (s *Storage) download(ctx context.Context, c *conn, oid stack.Oid, serial stack.Tid, path string) (int64, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.LoadBlob(sctx, &proto.LoadSerialRequest{Oid: uint64(oid), Serial: uint64(serial)})
	if err != nil {
		return 0, s.check(c, err)
	}
	f, err := os.CreateTemp(s.blobs.tmp, "download-*")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	var size int64
	for {
		part, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err == nil {
			var n int
			n, err = f.Write(part.GetChunk())
			size += int64(n)
		} else {
			err = s.check(c, err)
		}
		if err != nil {
			f.Close()
			os.Remove(tmp)
			return 0, err
		}
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return 0, err
	}
	return size, nil
}

// upload streams the staged file at blobPath to the plugin after the
// header; the plugin's storage takes over its own copy. The host's file
// is removed when the transaction ends (a conflicting store may be
// retried with it until then).
func (t *txn) upload(ctx context.Context, hdr *proto.BlobHeader, blobPath string) error {
	if err := t.sync(ctx); err != nil {
		return err
	}
	c, err := t.live()
	if err != nil {
		return err
	}
	f, err := os.Open(blobPath)
	if err != nil {
		return err
	}
	defer f.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stream interface {
		Send(*proto.BlobUpload) error
		CloseAndRecv() (*proto.Result, error)
	}
	if hdr.GetRestore() {
		stream, err = c.rpc.RestoreBlob(sctx)
	} else {
		stream, err = c.rpc.StoreBlob(sctx)
	}
	if err != nil {
		return t.s.check(c, err)
	}
	if err := stream.Send(&proto.BlobUpload{Part: &proto.BlobUpload_Header{Header: hdr}}); err != nil {
		return t.sendFailed(c, stream, err)
	}
	buf := make([]byte, wire.ChunkSize)
	for {
		n, rerr := io.ReadFull(f, buf)
		if n > 0 {
			if err := stream.Send(&proto.BlobUpload{Part: &proto.BlobUpload_Chunk{Chunk: buf[:n]}}); err != nil {
				return t.sendFailed(c, stream, err)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	t.uploaded = append(t.uploaded, blobPath)
	r, err := stream.CloseAndRecv()
	return t.s.answer(c, err, r)
}

// removeUploads removes the host's copies of the files uploaded in the
// transaction, which has ended.
func (t *txn) removeUploads() {
	for _, p := range t.uploaded {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.s.log.WithError(err).Warn("removing an uploaded blob file")
		}
	}
	t.uploaded = nil
}

// sendFailed returns the real error of a client stream whose Send failed:
// gRPC reports it when the stream is closed.
func (t *txn) sendFailed(c *conn, stream interface {
	CloseAndRecv() (*proto.Result, error)
}, sendErr error) error {
	r, err := stream.CloseAndRecv()
	if err == nil {
		if ferr := wire.Error(r.GetFailure()); ferr != nil {
			return ferr
		}
		err = sendErr
	}
	return t.s.check(c, err)
}

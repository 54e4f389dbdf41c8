package filestorage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/blobdir"
)

// Empty starts the storage over with an empty Data.fs at the same path,
// for a RAID rebuilding this child (raid_recover NAME rebuild, see
// docs/raid.md). Nothing is deleted: the old file is kept as Data.fs.old
// with its index as Data.fs.old.index (so it opens as a FileStorage of its
// own), and the blob files move to <blob-dir>.old; files of an earlier
// pack or rebuild under those names are replaced.
//
// The storage stays open throughout and keeps its .lock, so no other
// process can take the file between the old one and the new one. Empty
// waits for a commit in progress and refuses to run during a pack.
// Iterators already open go on reading the old file. Watchers stay
// registered; transactions committed again up to the last tid they were
// told about are not announced a second time (tids must increase).
func (s *Storage) Empty(ctx context.Context) (err error) {
	defer stack.WrapOp(&err, s.node, "empty", nil, nil)
	if s.readOnly {
		return stack.ErrReadOnly
	}
	if !s.packing.CompareAndSwap(false, true) {
		return &stack.StorageError{Msg: "a pack is running; empty the storage after it"}
	}
	defer s.packing.Store(false)
	select {
	case s.commitLock <- struct{}{}:
	case <-s.done:
		return stack.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.commitLock }()
	s.ioMu.Lock()
	defer s.ioMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return stack.ErrClosed
	}
	old, oldIndex := s.path+".old", s.path+".old.index"
	for _, p := range []string{old, oldIndex} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	// The index first: a crash before the data file moves leaves the old
	// Data.fs without an index, which Open rebuilds.
	if err := writeIndex(oldIndex, s.pos, s.ix); err != nil {
		return err
	}
	if err := os.Remove(s.path + ".index"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Rename(s.path, old); err != nil {
		return err
	}
	nf, err := createEmpty(s.path)
	if err != nil {
		// Put the old file back; the storage goes on with it.
		if rerr := os.Rename(old, s.path); rerr != nil {
			s.log.WithError(rerr).Error("cannot put the old Data.fs back after a failed empty")
		}
		return err
	}
	syncDir(filepath.Dir(s.path))
	f := s.log.WithFields(logrus.Fields{"old": old, "tid": s.ltid.String(), "objects": s.ix.len()})
	s.f.Close()
	s.f = nf
	s.rd = reader{r: nf, path: s.path}
	s.ix = newIndex()
	s.txns.reset()
	s.pos = int64(len(magicFS30))
	s.ltid = 0
	s.maxOid = 0
	s.broken = nil // a failed finish concerned the old file
	s.announced = max(s.announced, s.watch.Last())
	if s.blobs != nil {
		if err := s.moveBlobsAside(); err != nil {
			return fmt.Errorf("the new Data.fs is in place, but the blob files are not all moved aside: %w", err)
		}
		f = f.WithField("old_blobs", s.blobs.Path+".old")
	}
	f.Info("emptied: a new, empty Data.fs; the old files are kept")
	return nil
}

// createEmpty writes a new Data.fs that holds only the magic, durably.
func createEmpty(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteAt([]byte(magicFS30), 0)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return f, nil
}

// moveBlobsAside moves every blob file to <blob-dir>.old, a blob
// directory of the same layout. The blob directory itself stays, with its
// .layout and its tmp/: uploads staged there for transactions still to
// come stay valid (a RAID stages its clients' blobs in its first child's).
// The caller holds s.mu.
func (s *Storage) moveBlobsAside() error {
	dir := s.blobs.Path
	old := dir + ".old"
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	if err := os.MkdirAll(old, 0o700); err != nil {
		return err
	}
	if layout, err := os.ReadFile(filepath.Join(dir, ".layout")); err == nil {
		if err := os.WriteFile(filepath.Join(old, ".layout"), layout, 0o644); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == "tmp" || e.Name() == ".layout" {
			continue
		}
		if err := os.Rename(filepath.Join(dir, e.Name()), filepath.Join(old, e.Name())); err != nil {
			return err
		}
	}
	if _, err := blobdir.Open(old, false); err != nil {
		return err
	}
	syncDir(dir)
	syncDir(filepath.Dir(dir))
	return nil
}

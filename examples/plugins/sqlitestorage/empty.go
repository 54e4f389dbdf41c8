package sqlitestorage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/blobdir"
)

// Empty starts the storage over empty, for a RAID rebuilding this child
// (`zeoraid ctl recover NAME rebuild`; docs/raid.md). Nothing is lost: the
// database is first copied whole to FILE.old (SQLite's VACUUM INTO, so the
// copy opens as a sqlitestorage of its own), and the blob files move to
// <blob-dir>.old; files of an earlier rebuild under those names are
// replaced. Then one SQL transaction deletes every row.
//
// The storage stays open and keeps its lock. Empty waits for a commit in
// progress and refuses to run during a pack. Loads running meanwhile see
// the old contents until the deletion commits. Watchers stay registered;
// transactions committed again up to the last tid they were told about
// are not announced a second time (tids must increase).
func (s *Storage) Empty(ctx context.Context) (err error) {
	defer stack.WrapOp(&err, s.node, "empty", nil, nil)
	if s.opts.ReadOnly {
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
	old := string(s.opts.Path) + ".old"
	err = s.use(ctx, func() error {
		for _, p := range []string{old, old + "-wal", old + "-shm"} {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		if _, err := s.wr.ExecContext(ctx, `VACUUM INTO ?`, old); err != nil {
			return fmt.Errorf("keeping the old database as %s: %w", old, err)
		}
		tx, err := s.wr.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		for _, q := range []string{`DELETE FROM object_state`, `DELETE FROM transactions`} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		for name, value := range map[string]any{"next_oid": p64(stack.Oid(1)), "last_tid": p64(stack.Tid(0)), "objects": 0} {
			if _, err := tx.ExecContext(ctx, `UPDATE meta SET value = ? WHERE name = ?`, value, name); err != nil {
				return err
			}
		}
		return tx.Commit()
	})
	if err != nil {
		return err
	}
	previous := stack.Tid(s.last.Swap(0))
	s.objects.Store(0)
	s.oidMu.Lock()
	s.nextOid = 1
	s.oidMu.Unlock()
	s.announced = max(s.announced, s.watch.Last())
	s.setBroken(nil) // a failed commit concerned the old contents
	f := s.log.WithFields(logrus.Fields{"old": old, "tid": previous.String()})
	if s.blobs != nil {
		if err := moveBlobsAside(s.blobs.Path); err != nil {
			return fmt.Errorf("the database is empty, but the blob files are not all moved aside: %w", err)
		}
		f = f.WithField("old_blobs", s.blobs.Path+".old")
	}
	f.Info("emptied; the old contents are kept")
	return nil
}

// moveBlobsAside moves every blob file of dir to dir.old, a blob directory
// of the same layout. dir itself stays, with its .layout and tmp/: blobs
// staged there for transactions still to come stay valid.
func moveBlobsAside(dir string) error {
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
	_, err = blobdir.Open(old, false)
	return err
}

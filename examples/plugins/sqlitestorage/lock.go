package sqlitestorage

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// ErrLocked means another writer (another process, or another open in
// this one) has the database file.
var ErrLocked = errors.New("the SQLite file is open for writing elsewhere")

// writerLock is <file>.lock held with flock while the storage is open for
// writing. SQLite's own locks keep the file consistent, but the storage
// keeps its next tid and oid in memory and must be the only writer.
type writerLock struct{ f *os.File }

// lockWriter takes the lock without waiting and writes the pid into the
// file, for the message another opener gets.
func lockWriter(path string) (*writerLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w (pid %s)", path, ErrLocked, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt(fmt.Appendf(nil, "%d\n", os.Getpid()), 0)
	}
	return &writerLock{f: f}, nil
}

// unlock releases the lock; the file stays.
func (l *writerLock) unlock() error {
	if l == nil {
		return nil
	}
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	return l.f.Close()
}

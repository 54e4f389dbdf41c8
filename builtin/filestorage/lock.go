package filestorage

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// lockFile is Data.fs.lock held with flock, as zc.lockfile does, so a
// Python process and zeoraid exclude each other (docs/filestorage.md §7).
type lockFile struct {
	f *os.File
}

// ErrLocked means another process (Python or zeoraid) has the Data.fs open
// for writing.
var ErrLocked = errors.New("Data.fs is locked by another process")

// lock takes the lock on path (the .lock file) without waiting and writes
// " <pid>\n" into it.
func lock(path string) (*lockFile, error) {
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
		_, _ = f.WriteAt(fmt.Appendf(nil, " %d\n", os.Getpid()), 0)
	}
	return &lockFile{f: f}, nil
}

// unlock releases the lock; the file stays, as with Python.
func (l *lockFile) unlock() error {
	if l == nil {
		return nil
	}
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	return l.f.Close()
}

package raidstorage

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
)

// checkpointFile is the JSON document kept in state-dir (docs/raid.md
// §8.7): per child, a tid up to which its history is known to be the
// RAID's. A child optimal at the time of writing is at the RAID's last
// tid, a degraded child at the checkpoint it was degraded with, the
// recovering one where its recovery got (verified or copied and synced).
// After a restart, a child found behind starts its recovery's
// comparison there instead of at the first transaction.
type checkpointFile struct {
	RAID     string            `json:"raid"`
	Children map[string]string `json:"children"` // name → tid (hex)
}

// checkpointSaver orders the writes of the file: a snapshot taken later
// never loses to one taken earlier.
type checkpointSaver struct {
	mu      sync.Mutex
	taken   uint64 // snapshots taken, guarded by Storage.mu
	written uint64
	last    string // the last document written, to skip unchanged ones
}

// checkpointPath is the file for this RAID in dir: its node path with
// "/" replaced, so that several RAIDs share one state-dir.
func (r *Storage) checkpointPath(dir string) string {
	return filepath.Join(dir, "raid-"+strings.ReplaceAll(r.path, "/", "_")+".checkpoints.json")
}

// snapshotLocked numbers and returns the checkpoints of every child.
func (r *Storage) snapshotLocked() (uint64, checkpointFile) {
	r.ck.taken++
	doc := checkpointFile{RAID: r.path, Children: map[string]string{}}
	for _, c := range r.children {
		var tid stack.Tid
		switch c.state {
		case Optimal:
			tid = r.last
		case Degraded:
			tid = c.checkpoint
		case Recovering:
			tid = c.checkpoint
			if rec := r.rec; rec != nil && rec.target == c && rec.tid > tid {
				tid = rec.tid
			}
		}
		if tid != 0 {
			doc.Children[c.name] = tid.String()
		}
	}
	return r.ck.taken, doc
}

// saveCheckpoints writes the checkpoints to state-dir, if one is set,
// atomically (a temporary file, fsync, rename). A failure is logged: the
// checkpoints only shorten a recovery's comparison.
func (r *Storage) saveCheckpoints() {
	dir := string(r.options().StateDir)
	if dir == "" {
		return
	}
	r.mu.Lock()
	seq, doc := r.snapshotLocked()
	r.mu.Unlock()
	r.ck.mu.Lock()
	defer r.ck.mu.Unlock()
	if seq <= r.ck.written {
		return
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err == nil && string(b) == r.ck.last {
		r.ck.written = seq
		return
	}
	if err == nil {
		// A reload may have named a new directory.
		err = os.MkdirAll(dir, 0o755)
	}
	if err == nil {
		err = writeAtomic(r.checkpointPath(dir), append(b, '\n'))
	}
	if err != nil {
		r.log.WithError(err).WithField("state_dir", dir).Warn("cannot save the recovery checkpoints")
		return
	}
	r.ck.written, r.ck.last = seq, string(b)
}

// writeAtomic replaces path by data: written and synced under a
// temporary name, renamed, and the directory synced.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// loadCheckpoints reads the checkpoints saved in state-dir and gives
// each child degraded at start the one saved for it. A missing file is
// no error (a first start); a malformed one is logged and ignored.
func (r *Storage) loadCheckpoints() {
	dir := string(r.options().StateDir)
	if dir == "" {
		return
	}
	path := r.checkpointPath(dir)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var doc checkpointFile
	if err == nil {
		err = json.Unmarshal(b, &doc)
	}
	if err != nil {
		r.log.WithError(err).WithField("file", path).Warn("ignoring the recovery checkpoints")
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.children {
		s, ok := doc.Children[c.name]
		if !ok || c.state != Degraded {
			continue
		}
		n, err := strconv.ParseUint(s, 0, 64)
		tid := stack.Tid(n)
		if err != nil {
			r.log.WithError(err).WithFields(logrus.Fields{"file": path, "child": c.name}).Warn("ignoring a malformed recovery checkpoint")
			continue
		}
		c.checkpoint = tid
		r.log.WithFields(logrus.Fields{"child": c.name, "checkpoint": tid.String(), "reason": c.reason}).
			Info("child behind at start: its recovery compares histories from the saved checkpoint")
	}
}

// Package configwatch notices when a configuration file, or a file it
// %includes, changes on disk, and says so once per change.
//
// It watches the directories of the files, never the files themselves:
// editors save by renaming a new file over the old one (vim, sed -i,
// Ansible), and Kubernetes updates a ConfigMap by swapping a `..data`
// symlink, so a watch on the file's inode would see nothing or die with
// it. Any event in a watched directory starts a quiet period (the
// debounce, bounded: a directory that never stays quiet, such as one
// holding a busy log file, is checked at least every four debounces);
// when it ends the files are re-read and hashed, and the
// callback runs only if the hash differs from the last one: a save that
// changes nothing reloads nothing, and a burst of events (one save is
// several) reloads once. A file caught half-written or missing mid-save
// hashes differently, the reload it causes fails and keeps the running
// configuration, and the next event reads it again.
package configwatch

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/sirupsen/logrus"
)

// DefaultDebounce is the quiet period after the last event.
const DefaultDebounce = 250 * time.Millisecond

// Files returns main and every file it %includes, directly or through
// other included files, as absolute paths in the order they are met.
// Include paths are relative to the including file's directory, as in
// ZConfig. A file that cannot be read ends its branch (it is still
// listed, so its directory is watched for when it comes back).
func Files(main string) []string {
	var out []string
	seen := map[string]bool{}
	var walk func(path string)
	walk = func(path string) {
		abs, err := filepath.Abs(path)
		if err != nil {
			abs = filepath.Clean(path)
		}
		if seen[abs] {
			return
		}
		seen[abs] = true
		out = append(out, abs)
		src, err := os.ReadFile(abs)
		if err != nil {
			return
		}
		sc := bufio.NewScanner(bytes.NewReader(src))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			rest, ok := cutDirective(line, "include")
			if !ok || rest == "" || strings.Contains(rest, "$") {
				// An include path built from a %define cannot be
				// resolved here; its directory is not watched.
				continue
			}
			if !filepath.IsAbs(rest) {
				rest = filepath.Join(filepath.Dir(abs), rest)
			}
			walk(rest)
		}
	}
	walk(main)
	return out
}

// cutDirective returns the argument of a `%name arg` line.
func cutDirective(line, name string) (string, bool) {
	if !strings.HasPrefix(line, "%") {
		return "", false
	}
	f := strings.Fields(line[1:])
	if len(f) < 2 || !strings.EqualFold(f[0], name) {
		return "", false
	}
	return f[1], true
}

// Hash is a SHA-256 over the names and contents of files; a file that
// cannot be read counts as missing.
func Hash(files []string) string {
	h := sha256.New()
	for _, f := range files {
		h.Write([]byte(f))
		b, err := os.ReadFile(f)
		if err != nil {
			h.Write([]byte{0})
			continue
		}
		h.Write([]byte{1})
		var n [8]byte
		for i, l := 0, len(b); i < 8; i, l = i+1, l>>8 {
			n[i] = byte(l)
		}
		h.Write(n[:])
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Options configure a Watcher.
type Options struct {
	// Debounce is the quiet period after the last event; 0 means
	// DefaultDebounce.
	Debounce time.Duration
	// OnChange runs, on the watcher's goroutine, when the files' hash
	// changed since the last check.
	OnChange func()
	// OnCheck, if set, runs after every check, with whether it found a
	// change (for tests and debugging).
	OnCheck func(changed bool)
	Log     logrus.FieldLogger
}

// Watcher watches a configuration file and its includes.
type Watcher struct {
	main string
	opts Options
	fw   *fsnotify.Watcher
	dirs map[string]bool // directories being watched
	hash string
	done chan struct{}
	stop sync.Once
}

// New starts watching main (and what it includes).
func New(main string, opts Options) (*Watcher, error) {
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.Log == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		opts.Log = l
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &Watcher{main: main, opts: opts, fw: fw, dirs: map[string]bool{}, done: make(chan struct{})}
	files := Files(main)
	w.hash = Hash(files)
	if err := w.watchDirs(files); err != nil {
		fw.Close()
		return nil, err
	}
	go w.run()
	return w, nil
}

// watchDirs makes the watched directories those of files.
func (w *Watcher) watchDirs(files []string) error {
	want := map[string]bool{}
	for _, f := range files {
		want[filepath.Dir(f)] = true
	}
	var errs []error
	for d := range want {
		if !w.dirs[d] {
			if err := w.fw.Add(d); err != nil {
				errs = append(errs, err)
				continue
			}
			w.dirs[d] = true
		}
	}
	for d := range w.dirs {
		if !want[d] {
			_ = w.fw.Remove(d)
			delete(w.dirs, d)
		}
	}
	return errors.Join(errs...)
}

func (w *Watcher) run() {
	defer close(w.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var pending time.Time // the first event not checked yet
	wake := func() {
		if pending.IsZero() {
			pending = time.Now()
		}
		timer.Reset(min(w.opts.Debounce, 4*w.opts.Debounce-time.Since(pending)))
	}
	for {
		select {
		case ev, ok := <-w.fw.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod {
				continue // backup tools and indexers touch modes all the time
			}
			wake()
		case err, ok := <-w.fw.Errors:
			if !ok {
				return
			}
			// An overflow loses events: check as if one came.
			w.opts.Log.WithError(err).Warn("watching the configuration: checking it again")
			wake()
		case <-timer.C:
			pending = time.Time{}
			w.check()
		}
	}
}

// check re-reads the files, and calls OnChange when their hash changed.
func (w *Watcher) check() {
	files := Files(w.main)
	if err := w.watchDirs(files); err != nil {
		w.opts.Log.WithError(err).Warn("watching the configuration's directories")
	}
	h := Hash(files)
	changed := h != w.hash
	w.hash = h
	if changed && w.opts.OnChange != nil {
		w.opts.OnChange()
	}
	if w.opts.OnCheck != nil {
		w.opts.OnCheck(changed)
	}
}

// Close stops watching and waits for the watcher's goroutine.
func (w *Watcher) Close() error {
	var err error
	w.stop.Do(func() {
		err = w.fw.Close()
		<-w.done
	})
	return err
}

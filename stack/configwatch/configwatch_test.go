package configwatch_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/stack/configwatch"
)

// watched starts a watcher on main; every check's outcome arrives on the
// returned channel, and changes are counted.
func watched(t *testing.T, main string) (<-chan bool, *atomic.Int32) {
	t.Helper()
	checks := make(chan bool, 100)
	changes := new(atomic.Int32)
	w, err := configwatch.New(main, configwatch.Options{
		Debounce: 50 * time.Millisecond,
		OnChange: func() { changes.Add(1) },
		OnCheck:  func(changed bool) { checks <- changed },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	return checks, changes
}

// check waits for the next check and fails unless its outcome is want.
func check(t *testing.T, checks <-chan bool, want bool, what string) {
	t.Helper()
	select {
	case got := <-checks:
		if got != want {
			t.Fatalf("%s: changed %v, want %v", what, got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no check after the event", what)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestEditorSaves(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "zeo.conf")
	write(t, main, "a 1\n")
	checks, changes := watched(t, main)

	// Written in place.
	write(t, main, "a 2\n")
	check(t, checks, true, "write in place")

	// The same bytes written again: an event, but no change.
	write(t, main, "a 2\n")
	check(t, checks, false, "same content")

	// Renamed over (sed -i, vim's default, Ansible).
	tmp := filepath.Join(dir, ".zeo.conf.tmp")
	write(t, tmp, "a 3\n")
	if err := os.Rename(tmp, main); err != nil {
		t.Fatal(err)
	}
	check(t, checks, true, "rename over")

	// vim with backupcopy=no: the original renamed away, a new file
	// written, the backup removed; settled, it is one change.
	if err := os.Rename(main, main+"~"); err != nil {
		t.Fatal(err)
	}
	write(t, main, "a 4\n")
	if err := os.Remove(main + "~"); err != nil {
		t.Fatal(err)
	}
	check(t, checks, true, "rename away and write")

	// A burst of writes within the debounce: one check.
	for i := range 20 {
		write(t, main, "a burst "+strings.Repeat("x", i)+"\n")
	}
	check(t, checks, true, "burst")
	// On a loaded machine the burst's events may straggle past the
	// debounce and cause more checks; none of them may see a change.
	for len(checks) > 0 {
		if <-checks {
			t.Fatal("a burst of writes reported more than one change")
		}
	}
	if n := changes.Load(); n != 4 {
		t.Fatalf("%d changes, want 4", n)
	}
}

// A Kubernetes ConfigMap volume: the file is a symlink through `..data`,
// which is swapped to a new timestamped directory; no event names the
// file itself.
func TestSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	mkver := func(name, content string) {
		must(t, os.Mkdir(filepath.Join(dir, name), 0o755))
		write(t, filepath.Join(dir, name, "zeo.conf"), content)
	}
	mkver("..v1", "a 1\n")
	must(t, os.Symlink("..v1", filepath.Join(dir, "..data")))
	must(t, os.Symlink(filepath.Join("..data", "zeo.conf"), filepath.Join(dir, "zeo.conf")))
	checks, _ := watched(t, filepath.Join(dir, "zeo.conf"))

	mkver("..v2", "a 2\n")
	must(t, os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	must(t, os.RemoveAll(filepath.Join(dir, "..v1")))
	check(t, checks, true, "symlink swap")
}

// An %included file in another directory is watched too, and an include
// added by an edit starts being watched.
func TestIncludedFiles(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	main := filepath.Join(dir, "zeo.conf")
	inc := filepath.Join(other, "storages.conf")
	write(t, inc, "<mappingstorage x/>\n")
	write(t, main, "%include "+inc+"\n")
	if got := configwatch.Files(main); len(got) != 2 || got[1] != inc {
		t.Fatalf("files %q", got)
	}
	checks, _ := watched(t, main)
	write(t, inc, "<mappingstorage y/>\n")
	check(t, checks, true, "included file edited")

	// A relative include, added by an edit, in a third directory.
	third := filepath.Join(dir, "conf.d")
	must(t, os.Mkdir(third, 0o755))
	check(t, checks, false, "directory created") // an event in dir, nothing read changed
	write(t, filepath.Join(third, "more.conf"), "b 1\n")
	write(t, main, "%include "+inc+"\n%include conf.d/more.conf\n")
	check(t, checks, true, "include added")
	write(t, filepath.Join(third, "more.conf"), "b 2\n")
	check(t, checks, true, "newly included file edited")
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

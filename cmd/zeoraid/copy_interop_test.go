//go:build interop

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/zeoraid/zeoraid/interop/pyenv"
)

// blobFiles maps every committed blob file under dir (relative path) to
// its content; the layout marker and temporary files are left out.
func blobFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".blob") {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(rel, "tmp") {
			return nil
		}
		b, err := os.ReadFile(p)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCopyPythonRoundTrip copies a Data.fs that Python's ZODB wrote
// (BTrees, blobs created, changed and unlinked, undo, deleteObject, then a
// pack) into another storage (a Data.fs, a Badger directory) and from there into a new Data.fs: Python's
// FileStorage reads the round-trip copy with every transaction, record and
// loadBefore answer at every tid equal to the original's, the blobs are
// the same files, and fstest finds no error.
func TestCopyPythonRoundTrip(t *testing.T) {
	scripts := filepath.Join(pyenv.Top(), "builtin", "filestorage", "testdata")
	dir := t.TempDir()
	orig := filepath.Join(dir, "orig")
	if err := os.MkdirAll(orig, 0o755); err != nil {
		t.Fatal(err)
	}
	var made struct {
		PackTime float64 `json:"pack_time"`
	}
	out := pyenv.Run(t, filepath.Join(scripts, "pack_parity.py"), "make", filepath.Join(orig, "Data.fs"), filepath.Join(orig, "blobs"), "0")
	if err := json.Unmarshal(out, &made); err != nil {
		t.Fatal(err)
	}
	pyenv.Run(t, filepath.Join(scripts, "pack_parity.py"), "pack", filepath.Join(orig, "Data.fs"), filepath.Join(orig, "blobs"), fmt.Sprintf("%.7f", made.PackTime), "0")

	for _, via := range []struct{ name, section string }{
		{"filestorage", "<filestorage %s>\n  path %s/Data.fs\n  blob-dir %s/blobs\n</filestorage>"},
		{"badgerstorage", "<badgerstorage %s>\n  path %s/badger\n  blob-dir %s/blobs\n</badgerstorage>"},
	} {
		t.Run(via.name, func(t *testing.T) {
			mid, final := filepath.Join(dir, via.name, "mid"), filepath.Join(dir, via.name, "final")
			for _, d := range []string{mid, final} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			section := func(name, d string) string { return fmt.Sprintf(via.section, name, d, d) }
			copyOnce := func(src, dst string) {
				t.Helper()
				conf := copyConf(t, t.TempDir(), src, dst)
				var stdout, stderr bytes.Buffer
				if code := run([]string{"copy", "-q", "--verify", conf}, &stdout, &stderr); code != 0 {
					t.Fatalf("copy: exit %d\n%s%s", code, stdout.String(), stderr.String())
				}
			}
			origSection := fmt.Sprintf("<filestorage source>\n  path %s/Data.fs\n  blob-dir %s/blobs\n  read-only true\n</filestorage>", orig, orig)
			copyOnce(origSection, section("destination", mid))
			finalSection := fmt.Sprintf("<filestorage destination>\n  path %s/Data.fs\n  blob-dir %s/blobs\n</filestorage>", final, final)
			copyOnce(section("source", mid), finalSection)

			dump := func(path string) map[string]any {
				var d map[string]any
				if err := json.Unmarshal(pyenv.Run(t, filepath.Join(scripts, "dump.py"), path), &d); err != nil {
					t.Fatal(err)
				}
				return d
			}
			want, got := dump(filepath.Join(orig, "Data.fs")), dump(filepath.Join(final, "Data.fs"))
			// The order of the records inside a transaction is not part of
			// ZODB's contract (Badger keeps them in oid order).
			sortRecords(want)
			sortRecords(got)
			for _, key := range []string{"tids", "records", "loads", "undo", "len"} {
				if !reflect.DeepEqual(want[key], got[key]) {
					t.Errorf("%s differs after the round trip: %s", key, firstDifference(want[key], got[key]))
				}
			}
			if n := len(want["tids"].([]any)); n < 100 {
				t.Fatalf("only %d transactions in the original", n)
			}
			wb, gb := blobFiles(t, filepath.Join(orig, "blobs")), blobFiles(t, filepath.Join(final, "blobs"))
			if len(wb) == 0 || !reflect.DeepEqual(wb, gb) {
				t.Errorf("blob files differ: %d in the original, %d in the copy", len(wb), len(gb))
			}
			fsck := string(pyenv.Run(t, "-m", "ZODB.scripts.fstest", "-v", filepath.Join(final, "Data.fs")))
			if !strings.Contains(fsck, "no errors detected") {
				t.Errorf("fstest: %s", fsck)
			}
		})
	}
}

// sortRecords orders the records of every transaction of a dump.py
// result by oid.
func sortRecords(dump map[string]any) {
	txns, _ := dump["records"].([]any)
	for _, txn := range txns {
		recs, _ := txn.(map[string]any)["records"].([]any)
		sort.SliceStable(recs, func(i, j int) bool {
			return recs[i].(map[string]any)["oid"].(string) < recs[j].(map[string]any)["oid"].(string)
		})
	}
}

// firstDifference describes where two decoded JSON values first differ.
func firstDifference(a, b any) string {
	switch a := a.(type) {
	case []any:
		bl, ok := b.([]any)
		if !ok || len(a) != len(bl) {
			return fmt.Sprintf("%d entries against %v", len(a), len(bl))
		}
		for i := range a {
			if !reflect.DeepEqual(a[i], bl[i]) {
				return fmt.Sprintf("[%d]: %s", i, firstDifference(a[i], bl[i]))
			}
		}
	case map[string]any:
		bm, _ := b.(map[string]any)
		for k, v := range a {
			if !reflect.DeepEqual(v, bm[k]) {
				return fmt.Sprintf("%s: %s", k, firstDifference(v, bm[k]))
			}
		}
	}
	return fmt.Sprintf("%v against %v", a, b)
}

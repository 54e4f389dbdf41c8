package blobdir

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/zeoraid/zeoraid/stack"
)

// The bushy layout and file names are ZODB's (docs/filestorage.md §6).
func TestBushyLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "blobs")
	b, err := Open(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if marker, _ := os.ReadFile(filepath.Join(dir, ".layout")); string(marker) != "bushy" {
		t.Fatalf(".layout = %q", marker)
	}
	if fi, err := os.Stat(b.TempDir()); err != nil || !fi.IsDir() {
		t.Fatalf("tmp dir: %v", err)
	}
	want := filepath.Join(dir, "0x00", "0x00", "0x00", "0x00", "0x00", "0x00", "0x00", "0x02", "0x040d3da77c5bb966.blob")
	if got := b.File(2, stack.Tid(0x040d3da77c5bb966)); got != want {
		t.Fatalf("File = %s, want %s", got, want)
	}
	src := filepath.Join(b.TempDir(), "upload")
	if err := os.WriteFile(src, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	dst, err := b.Place(src, 2, 7, false)
	if err != nil || dst != b.File(2, 7) {
		t.Fatalf("Place = %s, %v", dst, err)
	}
	if got, _ := os.ReadFile(dst); string(got) != "data" {
		t.Fatalf("placed file holds %q", got)
	}
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Fatal("the source of a move is still there")
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm()&0o222 != 0 {
		t.Fatalf("committed blob is writable: %v", fi.Mode())
	}
}

// A directory with a "lawn" marker keeps its legacy layout; oid_repr
// drops leading zeros and keeps an even number of digits.
func TestLawnLayout(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".layout"), []byte("lawn"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := Open(dir, false)
	if err != nil || !b.Lawn {
		t.Fatalf("Open: %+v, %v", b, err)
	}
	for oid, want := range map[stack.Oid]string{0: "0x00", 2: "0x02", 0x100: "0x0100"} {
		if got := b.OidDir(oid); got != filepath.Join(dir, want) {
			t.Errorf("OidDir(%d) = %s, want %s", oid, got, want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ".layout"), []byte("meadow"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, false); err == nil {
		t.Fatal("an unknown layout was accepted")
	}
}

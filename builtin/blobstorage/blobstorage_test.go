package blobstorage_test

import (
	"path/filepath"
	"testing"

	"github.com/zeoraid/zeoraid/builtin/blobstorage"
	"github.com/zeoraid/zeoraid/builtin/filestorage"
	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/storagetest"
)

// The wrapper over an in-memory child passes the suite, blobs included.
func TestConformance(t *testing.T) {
	storagetest.Run(t, storagetest.Harness{
		Open: func(t testing.TB) stack.Storage {
			s, err := blobstorage.New(mappingstorage.New("child", nil), filepath.Join(t.TempDir(), "blobs"), nil)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Oracle: func(testing.TB) stack.Storage { return mappingstorage.New("oracle", nil) },
	})
}

// The wrapper over a Data.fs child keeps its data across Close, so the
// Persistence and ReadOnly groups run too: the child's read-only mode
// makes the whole wrapper read-only.
func TestConformanceFileStorageChild(t *testing.T) {
	dirs := map[stack.Storage]string{}
	open := func(t testing.TB, dir string, readOnly bool) stack.Storage {
		child, err := filestorage.Open(filepath.Join(dir, "Data.fs"), filestorage.Options{PackGC: true, ReadOnly: readOnly}, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := blobstorage.New(child, filepath.Join(dir, "blobs"), nil)
		if err != nil {
			child.Close()
			t.Fatal(err)
		}
		dirs[s] = dir
		return s
	}
	storagetest.Run(t, storagetest.Harness{
		Open:     func(t testing.TB) stack.Storage { return open(t, t.TempDir(), false) },
		Reopen:   func(t testing.TB, s stack.Storage) stack.Storage { return open(t, dirs[s], false) },
		ReadOnly: func(t testing.TB, s stack.Storage) stack.Storage { return open(t, dirs[s], true) },
		Oracle:   func(testing.TB) stack.Storage { return mappingstorage.New("oracle", nil) },
	})
}

func TestRefusesAChildWithBlobs(t *testing.T) {
	inner, err := blobstorage.New(mappingstorage.New("child", nil), filepath.Join(t.TempDir(), "a"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blobstorage.New(inner, filepath.Join(t.TempDir(), "b"), nil); err == nil {
		t.Fatal("a child that already has blobs was accepted")
	}
}

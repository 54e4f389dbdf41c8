package blobstorage_test

import (
	"path/filepath"
	"testing"

	"github.com/zeoraid/zeoraid/builtin/blobstorage"
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

func TestRefusesAChildWithBlobs(t *testing.T) {
	inner, err := blobstorage.New(mappingstorage.New("child", nil), filepath.Join(t.TempDir(), "a"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blobstorage.New(inner, filepath.Join(t.TempDir(), "b"), nil); err == nil {
		t.Fatal("a child that already has blobs was accepted")
	}
}

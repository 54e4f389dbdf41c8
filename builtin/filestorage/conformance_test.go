package filestorage_test

import (
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/builtin/filestorage"
	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/storagetest"
	"github.com/zeoraid/zeoraid/zconfig"
)

func quiet() logrus.FieldLogger {
	log := logrus.New()
	log.SetLevel(logrus.ErrorLevel)
	return log
}

// TestConformance runs the shared storage suite on a Data.fs with blobs.
func TestConformance(t *testing.T) {
	storagetest.Run(t, storagetest.Harness{
		Open: func(t testing.TB) stack.Storage {
			dir := t.TempDir()
			s, err := filestorage.Open(filepath.Join(dir, "Data.fs"),
				filestorage.Options{BlobDir: zconfig.ExistingDirPath(filepath.Join(dir, "blobs")), PackGC: true, PackKeepOld: true}, quiet())
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Reopen: func(t testing.TB, s stack.Storage) stack.Storage {
			fs := s.(*filestorage.Storage)
			r, err := filestorage.Open(fs.Path(), filestorage.Options{BlobDir: zconfig.ExistingDirPath(fs.BlobDir()), PackGC: true, PackKeepOld: true}, quiet())
			if err != nil {
				t.Fatal(err)
			}
			return r
		},
		ReadOnly: func(t testing.TB, s stack.Storage) stack.Storage {
			fs := s.(*filestorage.Storage)
			r, err := filestorage.Open(fs.Path(), filestorage.Options{BlobDir: zconfig.ExistingDirPath(fs.BlobDir()), ReadOnly: true}, quiet())
			if err != nil {
				t.Fatal(err)
			}
			return r
		},
		Oracle: func(testing.TB) stack.Storage { return mappingstorage.New("oracle", quiet()) },
	})
}

package sqlitestorage_test

import (
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/examples/plugins/sqlitestorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/storagetest"
	"github.com/zeoraid/zeoraid/zconfig"
)

func quiet() logrus.FieldLogger {
	log := logrus.New()
	log.SetLevel(logrus.ErrorLevel)
	return log
}

// testOptions are a section's defaults in a fresh directory, with blobs.
func testOptions(t testing.TB) sqlitestorage.Options {
	dir := t.TempDir()
	return sqlitestorage.Options{
		Path:    zconfig.ExistingDirPath(filepath.Join(dir, "Data.sqlite")),
		BlobDir: zconfig.ExistingDirPath(filepath.Join(dir, "blobs")),
		PackGC:  true,
	}
}

func open(t testing.TB, o sqlitestorage.Options) *sqlitestorage.Storage {
	t.Helper()
	s, err := sqlitestorage.Open(o, "test", quiet())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformance runs the shared storage suite, blobs included.
func TestConformance(t *testing.T) {
	storagetest.Run(t, storagetest.Harness{
		Open: func(t testing.TB) stack.Storage { return open(t, testOptions(t)) },
		Reopen: func(t testing.TB, s stack.Storage) stack.Storage {
			return open(t, s.(*sqlitestorage.Storage).Options())
		},
		ReadOnly: func(t testing.TB, s stack.Storage) stack.Storage {
			o := s.(*sqlitestorage.Storage).Options()
			o.ReadOnly = true
			return open(t, o)
		},
		Oracle: func(testing.TB) stack.Storage { return mappingstorage.New("oracle", quiet()) },
	})
}

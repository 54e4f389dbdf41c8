package badgerstorage_test

import (
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/builtin/badgerstorage"
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

// testOptions are the defaults with small Badger memory settings, in a
// fresh directory with blobs.
func testOptions(t testing.TB) badgerstorage.Options {
	dir := t.TempDir()
	o := badgerstorage.DefaultOptions(filepath.Join(dir, "db"))
	o.BlobDir = zconfig.ExistingDirPath(filepath.Join(dir, "blobs"))
	o.MemTableSize = 4 << 20
	o.BlockCacheSize = 4 << 20
	o.IndexCacheSize = 4 << 20
	o.ValueThreshold = 32 << 10
	o.ValueLogSize = 16 << 20
	return o
}

func open(t testing.TB, o badgerstorage.Options) *badgerstorage.Storage {
	t.Helper()
	s, err := badgerstorage.Open(o, "test", quiet())
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
			return open(t, s.(*badgerstorage.Storage).Options())
		},
		ReadOnly: func(t testing.TB, s stack.Storage) stack.Storage {
			o := s.(*badgerstorage.Storage).Options()
			o.ReadOnly = true
			return open(t, o)
		},
		Oracle: func(testing.TB) stack.Storage { return mappingstorage.New("oracle", quiet()) },
	})
}

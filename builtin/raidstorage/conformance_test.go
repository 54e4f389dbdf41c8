package raidstorage_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"

	"github.com/zeoraid/zeoraid/builtin/filestorage"
	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/storagetest"
	"github.com/zeoraid/zeoraid/zconfig"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(bulkCrashEnv); dir != "" {
		os.Exit(bulkCrashChild(dir))
	}
	goleak.VerifyTestMain(m)
}

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.PanicLevel)
	return l
}

// openRAID opens a RAID over n fresh mappingstorage children, closed
// (children too) at the end of the test.
func openRAID(t testing.TB, n int) *raidstorage.Storage {
	t.Helper()
	var names []string
	var children []stack.Storage
	for i := 1; i <= n; i++ {
		names = append(names, string(rune('0'+i)))
		children = append(children, mappingstorage.New("m", nil))
	}
	r, err := raidstorage.Open(context.Background(), raidstorage.Config{Path: "main", Names: names, Children: children, Options: raidstorage.DefaultOptions(), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Close()
		for _, c := range children {
			c.Close()
		}
	})
	return r
}

func TestConformanceTwoChildren(t *testing.T) {
	storagetest.Run(t, storagetest.Harness{
		Open:   func(t testing.TB) stack.Storage { return openRAID(t, 2) },
		Oracle: func(t testing.TB) stack.Storage { return mappingstorage.New("oracle", nil) },
	})
}

// TestConformanceFileStorageChildren runs the suite on a RAID of two
// Data.fs children with blobs, whose data outlives Close: the Blobs,
// Persistence and ReadOnly groups run here (a RAID over read-only
// children is read-only).
func TestConformanceFileStorageChildren(t *testing.T) {
	children := map[stack.Storage][]*filestorage.Storage{}
	open := func(t testing.TB, dirs []string, readOnly bool) stack.Storage {
		var fss []*filestorage.Storage
		var cs []stack.Storage
		for _, dir := range dirs {
			fs, err := filestorage.Open(filepath.Join(dir, "Data.fs"), filestorage.Options{BlobDir: zconfig.ExistingDirPath(filepath.Join(dir, "blobs")), PackGC: true, ReadOnly: readOnly}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { fs.Close() })
			fss, cs = append(fss, fs), append(cs, fs)
		}
		r, err := raidstorage.Open(context.Background(), raidstorage.Config{Path: "main", Names: []string{"1", "2"}, Children: cs, Options: raidstorage.DefaultOptions(), Log: quietLog()})
		if err != nil {
			t.Fatal(err)
		}
		children[r] = fss
		return r
	}
	reopen := func(readOnly bool) func(testing.TB, stack.Storage) stack.Storage {
		return func(t testing.TB, s stack.Storage) stack.Storage {
			var dirs []string
			for _, fs := range children[s] {
				if err := fs.Close(); err != nil {
					t.Fatal(err)
				}
				dirs = append(dirs, filepath.Dir(fs.Path()))
			}
			return open(t, dirs, readOnly)
		}
	}
	storagetest.Run(t, storagetest.Harness{
		Open:     func(t testing.TB) stack.Storage { return open(t, []string{t.TempDir(), t.TempDir()}, false) },
		Reopen:   reopen(false),
		ReadOnly: reopen(true),
		Oracle:   func(t testing.TB) stack.Storage { return mappingstorage.New("oracle", nil) },
	})
}

func TestConformanceThreeChildren(t *testing.T) {
	storagetest.Run(t, storagetest.Harness{
		Open:   func(t testing.TB) stack.Storage { return openRAID(t, 3) },
		Oracle: func(t testing.TB) stack.Storage { return mappingstorage.New("oracle", nil) },
		Seed:   7,
	})
}

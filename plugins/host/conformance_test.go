package host_test

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/plugins/host"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/storagetest"
)

func oracle(testing.TB) stack.Storage { return mappingstorage.New("oracle", nil) }

// The conformance suite over a real plugin process: the in-memory storage
// (everything but blobs and persistence).
func TestConformanceMapping(t *testing.T) {
	storagetest.Run(t, storagetest.Harness{
		Open: func(t testing.TB) stack.Storage {
			return open(t, "<testmapping>\n</testmapping>\n", nil, host.Options{})
		},
		Oracle: oracle,
	})
}

// The conformance suite over a plugin serving a filestorage: blobs,
// persistence and read-only reopening through the process boundary.
func TestConformanceFile(t *testing.T) {
	var mu sync.Mutex
	dirs := map[stack.Storage]string{}
	openDir := func(t testing.TB, dir string, readOnly bool) stack.Storage {
		text := fmt.Sprintf("<testfile>\n  path %s\n  blob-dir %s\n  read-only %v\n</testfile>\n",
			filepath.Join(dir, "Data.fs"), filepath.Join(dir, "blobs"), readOnly)
		s := open(t, text, nil, host.Options{TempDir: t.TempDir()})
		mu.Lock()
		dirs[s] = dir
		mu.Unlock()
		return s
	}
	dirOf := func(s stack.Storage) string {
		mu.Lock()
		defer mu.Unlock()
		return dirs[s]
	}
	storagetest.Run(t, storagetest.Harness{
		Open:     func(t testing.TB) stack.Storage { return openDir(t, t.TempDir(), false) },
		Reopen:   func(t testing.TB, s stack.Storage) stack.Storage { return openDir(t, dirOf(s), false) },
		ReadOnly: func(t testing.TB, s stack.Storage) stack.Storage { return openDir(t, dirOf(s), true) },
		Oracle:   oracle,
	})
}

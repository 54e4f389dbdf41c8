package sqlitestorage_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/plugins/host"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/storagetest"
	"github.com/zeoraid/zeoraid/zconfig"
)

// buildPlugin builds zeoraid-plugin-sqlite into a temporary directory.
func buildPlugin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "zeoraid-plugin-sqlite")
	out, err := exec.Command("go", "build", "-o", bin, "./cmd/zeoraid-plugin-sqlite").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestPluginConformance runs the suite against the plugin binary, through
// zeoraid's plugin host: the section decoded in the plugin process, every
// call and blob over the process boundary.
func TestPluginConformance(t *testing.T) {
	bin := buildPlugin(t)
	var mu sync.Mutex
	dirs := map[stack.Storage]string{}
	openDir := func(t testing.TB, dir string, readOnly bool) stack.Storage {
		t.Helper()
		text := fmt.Sprintf("<sqlitestorage>\n  path %s\n  blob-dir %s\n  read-only %v\n</sqlitestorage>\n",
			filepath.Join(dir, "Data.sqlite"), filepath.Join(dir, "blobs"), readOnly)
		root, err := zconfig.Parse("test.conf", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		n := &stack.Node{Path: "main", Type: "sqlitestorage", Log: quiet().WithFields(logrus.Fields{"node": "main"})}
		s, err := host.Open(context.Background(), bin, n, root.Sections[0], host.Options{TempDir: t.TempDir()})
		if err != nil {
			t.Fatalf("open through the plugin: %v", err)
		}
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
		Oracle:   func(testing.TB) stack.Storage { return mappingstorage.New("oracle", quiet()) },
	})
}

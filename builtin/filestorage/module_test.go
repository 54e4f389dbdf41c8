package filestorage

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

func TestModuleSharesThroughPool(t *testing.T) {
	m, ok := stack.Lookup("filestorage")
	if !ok {
		t.Fatal("filestorage not registered")
	}
	if _, ok := m.NewOptions().(*Options); !ok {
		t.Fatalf("options type %T", m.NewOptions())
	}
	pool := stack.NewPool()
	n := &stack.Node{Path: "main", Log: logrus.New(), Pool: pool}
	path := filepath.Join(t.TempDir(), "Data.fs")
	ctx := context.Background()
	a, err := m.Open(ctx, n, &Options{Path: zconfig.ExistingDirPath(path)})
	must(t, err)
	// A reloaded tree opens the same file while the old one holds it.
	b, err := m.Open(ctx, n, &Options{Path: zconfig.ExistingDirPath(path)})
	must(t, err)
	key := "filestorage:" + path
	if pool.Held(key) != 2 {
		t.Errorf("pool holds %d references", pool.Held(key))
	}
	if _, err := m.Open(ctx, n, &Options{Path: zconfig.ExistingDirPath(path), BlobDir: "elsewhere"}); err == nil {
		t.Errorf("sharing with a different blob-dir accepted")
	}
	must(t, a.Close())
	if _, err := b.LastTransaction(ctx); err != nil {
		t.Errorf("second handle after the first closed: %v", err)
	}
	must(t, b.Close())
	if pool.Held(key) != 0 {
		t.Errorf("pool still holds the file")
	}
	if _, err := m.Open(ctx, n, &Options{Path: zconfig.ExistingDirPath(path), Packer: "my.Packer"}); err == nil || !strings.Contains(err.Error(), "packer") {
		t.Errorf("unknown packer: %v", err)
	}
}

func TestOptionsDecode(t *testing.T) {
	dir := t.TempDir()
	src := "<filestorage main>\n  path " + dir + "/Data.fs\n  quota 2MB\n  pack-keep-old false\n</filestorage>\n"
	root, err := zconfig.Parse("test.conf", []byte(src))
	must(t, err)
	var o Options
	must(t, zconfig.Decode(root.Sections[0], &o))
	if string(o.Path) != dir+"/Data.fs" || o.Quota != 2<<20 || !o.PackGC || o.PackKeepOld {
		t.Errorf("decoded %+v", o)
	}
	root, err = zconfig.Parse("test.conf", []byte("<filestorage>\n</filestorage>\n"))
	must(t, err)
	if err := zconfig.Decode(root.Sections[0], &Options{}); err == nil || !strings.Contains(err.Error(), "path") {
		t.Errorf("missing path: %v", err)
	}
}

package sqlitestorage_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeoraid/zeoraid/examples/plugins/sqlitestorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func decode(t *testing.T, text string) (sqlitestorage.Options, error) {
	t.Helper()
	root, err := zconfig.Parse("test.conf", []byte(text))
	must(t, err)
	var o sqlitestorage.Options
	return o, zconfig.Decode(root.Sections[0], &o)
}

func TestOptionsDecode(t *testing.T) {
	dir := t.TempDir()
	o, err := decode(t, "<sqlitestorage main>\n  path "+dir+"/Data.sqlite\n  blob-dir "+dir+"/blobs\n</sqlitestorage>\n")
	must(t, err)
	if string(o.Path) != dir+"/Data.sqlite" || string(o.BlobDir) != dir+"/blobs" || !o.PackGC || o.ReadOnly {
		t.Errorf("decoded %+v; want the paths, pack-gc true, read-only false", o)
	}
	if _, err := decode(t, "<sqlitestorage>\n</sqlitestorage>\n"); err == nil || !strings.Contains(err.Error(), "path") {
		t.Errorf("missing path: %v", err)
	}
	_, err = decode(t, "<sqlitestorage>\n  path "+dir+"/no/such/dir/Data.sqlite\n</sqlitestorage>\n")
	if err == nil || !strings.Contains(err.Error(), "test.conf:2") {
		t.Errorf("a path in a missing directory: %v, want an error at test.conf:2", err)
	}
}

func TestModuleSharesThroughPool(t *testing.T) {
	m := sqlitestorage.Module
	if _, ok := m.Options.(*sqlitestorage.Options); !ok {
		t.Fatalf("options type %T", m.Options)
	}
	pool := stack.NewPool()
	n := &stack.Node{Path: "main", Log: quiet(), Pool: pool}
	path := filepath.Join(t.TempDir(), "Data.sqlite")
	ctx := context.Background()
	a, err := m.Open(ctx, n, &sqlitestorage.Options{Path: zconfig.ExistingDirPath(path)})
	must(t, err)
	// A reloaded tree opens the same file while the old one holds it.
	b, err := m.Open(ctx, n, &sqlitestorage.Options{Path: zconfig.ExistingDirPath(path)})
	must(t, err)
	if _, err := m.Open(ctx, n, &sqlitestorage.Options{Path: zconfig.ExistingDirPath(path), BlobDir: "elsewhere"}); err == nil {
		t.Errorf("sharing with another blob-dir accepted")
	}
	must(t, a.Close())
	if _, err := b.LastTransaction(ctx); err != nil {
		t.Errorf("second handle after the first closed: %v", err)
	}
	must(t, b.Close())
	if held := pool.Held("sqlitestorage:" + path); held != 0 {
		t.Errorf("pool still holds %d references", held)
	}
}

func TestSecondWriterRefused(t *testing.T) {
	o := testOptions(t)
	s := open(t, o)
	defer s.Close()
	if _, err := sqlitestorage.Open(o, "second", quiet()); !errors.Is(err, sqlitestorage.ErrLocked) {
		t.Fatalf("second writer: %v, want ErrLocked", err)
	}
	// A reader may share the file with the writer.
	ro := o
	ro.ReadOnly = true
	r := open(t, ro)
	defer r.Close()
}

func TestOpenRefusals(t *testing.T) {
	dir := t.TempDir()
	foreign := filepath.Join(dir, "foreign.sqlite")
	db, err := sql.Open("sqlite", foreign)
	must(t, err)
	_, err = db.Exec(`CREATE TABLE t (x)`)
	must(t, errors.Join(err, db.Close()))
	if _, err := sqlitestorage.Open(sqlitestorage.Options{Path: zconfig.ExistingDirPath(foreign)}, "", quiet()); err == nil || !strings.Contains(err.Error(), "not a sqlitestorage database") {
		t.Errorf("a foreign SQLite file: %v", err)
	}
	missing := sqlitestorage.Options{Path: zconfig.ExistingDirPath(filepath.Join(dir, "missing.sqlite")), ReadOnly: true}
	if _, err := sqlitestorage.Open(missing, "", quiet()); err == nil {
		t.Errorf("read-only open of a missing file succeeded")
	}
}

// Errors cross the node boundary once, naming the node, and keep their
// type.
func TestErrorsNameTheNode(t *testing.T) {
	s := open(t, testOptions(t))
	defer s.Close()
	ctx := context.Background()
	_, err := s.LoadBefore(ctx, 7, stack.MaxTid)
	var oe *stack.OpError
	var nf *stack.NotFoundError
	if !errors.As(err, &oe) || oe.Node != "test" || oe.Op != "loadBefore" || !errors.As(err, &nf) {
		t.Fatalf("LoadBefore of a missing oid: %v (%T), want an OpError of node test around a NotFoundError", err, err)
	}
	if strings.Count(err.Error(), "test:") != 1 {
		t.Errorf("the node is named more than once: %v", err)
	}
	if _, err := s.LoadBlob(ctx, 7, 1); !errors.As(err, &oe) || oe.Op != "loadBlob" || !errors.As(err, &nf) {
		t.Errorf("LoadBlob of a missing oid: %v", err)
	}
}

package raidstorage_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/builtin/filestorage"
	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// Compile-time: the local storages can be emptied for a rebuild.
var (
	_ raidstorage.Emptier = (*filestorage.Storage)(nil)
	_ raidstorage.Emptier = mapping()
)

// buildRAID builds `<raidstorage main>` over two filestorages with blobs
// in dir, as zeoraid serve does, and returns the RAID and its children
// (the tree's handles).
func buildRAID(t *testing.T, dir string) (*raidstorage.Storage, []stack.Storage) {
	t.Helper()
	src := "<zeo>\naddress 8100\n</zeo>\n<raidstorage main>\ncall-timeout 5s\n"
	for _, n := range []string{"1", "2"} {
		src += fmt.Sprintf("<filestorage %s>\npath %s\nblob-dir %s\n</filestorage>\n",
			n, filepath.Join(dir, n+".fs"), filepath.Join(dir, "blobs"+n))
	}
	root, err := zconfig.Parse("rebuild.conf", []byte(src+"</raidstorage>\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := stack.DecodeConfig(root)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := stack.Build(context.Background(), cfg, stack.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tree.Close() })
	main := tree.Roots["main"]
	return main.Storage.(*raidstorage.Storage), []stack.Storage{main.Children[0].Storage, main.Children[1].Storage}
}

// A filestorage child that took a foreign commit has diverged: a plain
// recovery refuses it, `raid_recover 2 rebuild` starts it over empty
// while the RAID serves from the other child, keeps the old file aside,
// and ends with both children identical.
func TestRebuildDivergedFileStorage(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	r, children := buildRAID(t, dir)
	for i := 0; i < 20; i++ {
		commit(t, r, fmt.Sprint("shared ", i), stack.Oid(i%5+1))
	}
	foreign, err := tryCommit(ctx, children[1], stack.TxnMeta{Description: []byte("foreign")}, "theirs", 1)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, r, "2", raidstorage.Degraded)
	wantState(t, r, "2", raidstorage.Degraded, "foreign commit "+foreign.String())
	for i := 0; i < 5; i++ {
		commit(t, r, fmt.Sprint("degraded ", i), 1)
	}
	if err := r.Recover("2", false); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, "2", raidstorage.Degraded)
	wantState(t, r, "2", raidstorage.Degraded, "recovery failed: diverged at ")

	// As zeoraid ctl recover 2 rebuild calls it.
	if _, err := r.Extensions()["raid_recover"](ctx, []any{"2", "rebuild"}); err != nil {
		t.Fatal(err)
	}
	// The RAID goes on committing on the other child meanwhile.
	commit(t, r, "during the rebuild", 2)
	waitState(t, r, "2", raidstorage.Optimal)
	last := commit(t, r, "after the rebuild", 3)
	identical(t, last, children...)
	// Every event the RAID waits for arrives (or was dropped at the
	// switch): none is kept for ever.
	for deadline := time.Now().Add(10 * time.Second); raidstorage.Expected(r, "2") != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the RAID still waits for %d events of child 2", raidstorage.Expected(r, "2"))
		}
	}
	res, err := r.Verify(ctx, "1", "2")
	if err != nil || res.Diff != nil {
		t.Fatalf("raid_verify after the rebuild: %+v %v", res, err)
	}

	// The diverged history is kept as Data.fs.old (with its index), a
	// FileStorage of its own that still has the foreign transaction.
	old := filepath.Join(dir, "2.fs.old")
	if _, err := os.Stat(old + ".index"); err != nil {
		t.Fatal(err)
	}
	fs, err := filestorage.Open(old, filestorage.Options{ReadOnly: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if l, _ := fs.LastTransaction(ctx); l != foreign {
		t.Fatalf("2.fs.old ends at %s, want the foreign commit %s", l, foreign)
	}
	if _, err := os.Stat(filepath.Join(dir, "blobs2.old", ".layout")); err != nil {
		t.Fatalf("old blob directory: %v", err)
	}
	if st, _, _ := r.ChildState("1"); st != raidstorage.Optimal || r.Status() != raidstorage.StatusOptimal {
		t.Fatalf("status %s after the rebuild", r.Status())
	}
}

package filestorage

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// reload builds src over prev with pool, as a configuration reload does,
// applies the tree's changes and closes what it no longer uses. It
// returns the new tree and the changes' summary.
func reload(t *testing.T, prev *stack.Tree, pool *stack.Pool, src string) (*stack.Tree, []string, error) {
	t.Helper()
	root, err := zconfig.Parse("zeo.conf", []byte("<zeo>\naddress 1\n</zeo>\n"+src))
	must(t, err)
	cfg, err := stack.DecodeConfig(root)
	must(t, err)
	tree, err := stack.Build(context.Background(), cfg, stack.BuildOptions{Pool: pool, Previous: prev})
	if err != nil || prev == nil {
		return tree, nil, err
	}
	var summary []string
	if b := tree.Roots["main"]; b.Reuse == stack.Reconfigured {
		b.Change.Apply()
		summary = b.Change.Summary()
	}
	must(t, prev.CloseUnused(tree))
	return tree, summary, nil
}

// pooled returns the file behind a tree's storage.
func pooled(t *testing.T, tree *stack.Tree) *Storage {
	t.Helper()
	h, ok := tree.Roots["main"].Storage.(*shared)
	if !ok {
		t.Fatalf("storage of type %T", tree.Roots["main"].Storage)
	}
	return h.Storage
}

// Quota, pack-gc and pack-keep-old change in place: the same open file,
// the next store and the next pack follow the new values. Another path is
// another storage; another read-only or blob-dir on the same open file and
// an unknown packer are refused.
func TestReconfigureInPlace(t *testing.T) {
	dir := t.TempDir()
	conf := func(path, keys string) string {
		return "<filestorage main>\n  path " + dir + "/" + path + "\n" + keys + "</filestorage>\n"
	}
	pool := stack.NewPool()
	tree, _, err := reload(t, nil, pool, conf("Data.fs", ""))
	must(t, err)
	defer func() { must(t, tree.Close()) }()
	s := pooled(t, tree)
	ctx := context.Background()
	t1 := commit(t, s, stack.TxnMeta{}, func(tx stack.Txn) {
		must(t, tx.Store(ctx, 0, 0, statePickle("root", 1)))
		must(t, tx.Store(ctx, 1, 0, statePickle("one")))
		must(t, tx.Store(ctx, 2, 0, statePickle("unreachable")))
	})

	next, sum, err := reload(t, tree, pool, conf("Data.fs", "  quota 100\n  pack-gc false\n  pack-keep-old false\n  create false\n"))
	must(t, err)
	tree = next
	if tree.Roots["main"].Reuse != stack.Reconfigured || pooled(t, tree) != s {
		t.Fatalf("the storage was %v, not reconfigured in place", tree.Roots["main"].Reuse)
	}
	if got, want := strings.Join(sum, "|"), "quota 0 -> 100|pack-gc true -> false|pack-keep-old true -> false"; got != want {
		t.Fatalf("summary %q, want %q", got, want)
	}
	tx, err := s.Begin(ctx, stack.TxnMeta{})
	must(t, err)
	err = tx.Store(ctx, 1, t1, statePickle("over the quota"))
	if err == nil {
		_, err = tx.Vote(ctx)
	}
	var se *stack.StorageError
	if !errors.As(err, &se) || se.Class != QuotaErrorClass {
		t.Fatalf("a store past the new quota: %v", err)
	}
	must(t, tx.Abort(ctx))
	time.Sleep(2 * time.Millisecond)
	must(t, s.Pack(ctx, time.Now(), true))
	if _, err := s.LoadBefore(ctx, 2, stack.MaxTid); err != nil {
		t.Errorf("pack-gc false, yet the unreachable object is gone: %v", err)
	}
	if _, err := os.Stat(dir + "/Data.fs.old"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pack-keep-old false, yet Data.fs.old: %v", err)
	}

	// Keys that need the file reopened.
	next, _, err = reload(t, tree, pool, conf("Other.fs", ""))
	must(t, err)
	if next.Roots["main"].Reuse != stack.Opened || pooled(t, next) == s {
		t.Fatalf("another path: %v, the same file", next.Roots["main"].Reuse)
	}
	tree = next
	s = pooled(t, tree)
	for keys, want := range map[string]string{
		"  read-only true\n":       "already open with",
		"  blob-dir " + dir + "\n": "already open with",
		"  packer my.Packer\n":     `zeo.conf:4:1: main: cannot open <filestorage>: packer "my.Packer" is not supported`,
	} {
		_, _, err := reload(t, tree, pool, conf("Other.fs", keys))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("reload with %q: %v, want %q", keys, err, want)
		}
	}
	if pooled(t, tree) != s || pool.Held("filestorage:"+dir+"/Other.fs") != 1 {
		t.Fatal("a refused reload changed the running file")
	}
}

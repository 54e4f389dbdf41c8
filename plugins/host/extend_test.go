package host_test

import (
	"context"
	"errors"
	"math/big"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/plugins/host"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
	"github.com/zeoraid/zeoraid/zconfig"
)

// A plugin's own OptionsValidator runs in a dry run (zeoraid validate),
// its error at the section's position; a valid section passes.
func TestCheckInDryRun(t *testing.T) {
	t.Setenv(host.EnvPath, pluginDir)
	h := host.New(nil, fastRestarts())
	cfg := loadConfig(t, "%import test\n<zeo>\n  address 127.0.0.1:0\n</zeo>\n<testmapping main>\n  close-marker relative/marker\n</testmapping>\n")
	_, err := stack.Build(context.Background(), cfg, stack.BuildOptions{DryRun: true, Import: h.Import})
	var list zconfig.ErrorList
	if !errors.As(err, &list) || len(list) != 1 || list[0].Pos.Line != 5 || !strings.Contains(list[0].Msg, `close-marker "relative/marker" is not an absolute path`) {
		t.Fatalf("dry run: %v", err)
	}
	cfg = loadConfig(t, "%import test\n<zeo>\n  address 127.0.0.1:0\n</zeo>\n<testmapping main>\n  close-marker /tmp/marker\n</testmapping>\n")
	if _, err := stack.Build(context.Background(), cfg, stack.BuildOptions{DryRun: true, Import: h.Import}); err != nil {
		t.Fatalf("dry run of a valid section: %v", err)
	}
}

// A store conflict the host did not wait for is reported by the vote,
// unless a later store of the same oid in the transaction succeeded (a
// client storing its resolution): as a storage in process answers.
func TestDeferredConflicts(t *testing.T) {
	ctx := context.Background()
	s := open(t, "<testmapping>\n  eager-conflicts true\n</testmapping>\n", nil, host.Options{})
	defer s.Close()
	tid := commit(t, s, 1, 0, "v1")
	// A conflict alone is reported.
	tx, err := s.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Store(ctx, 1, tid-1, []byte("stale")); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Vote(ctx)
	var cs stack.Conflicts
	if !errors.As(err, &cs) || len(cs) != 1 || cs[0].Oid != 1 || string(cs[0].Data) != "stale" {
		t.Fatalf("vote after a conflicting store: %v", err)
	}
	tx.Abort(ctx)
	tx, err = s.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Store(ctx, 1, tid-1, []byte("stale")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Store(ctx, 1, tid, []byte("resolved")); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Vote(ctx); err != nil {
		t.Fatalf("vote after the resolution was stored: %v", err)
	}
	tid2, err := tx.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rev, err := s.LoadBefore(ctx, 1, stack.MaxTid); err != nil || string(rev.Data) != "resolved" || rev.Serial != tid2 {
		t.Fatalf("load: %+v %v", rev, err)
	}
}

// The extension calls of a plugin's storage cross with their arguments
// and result (every kind of ZEO value), and their errors typed.
func TestExtensions(t *testing.T) {
	ctx := context.Background()
	s := open(t, "<testmapping>\n</testmapping>\n", nil, host.Options{})
	defer s.Close()
	ext := s.Extensions()
	if len(ext) != 2 || ext["echo"] == nil || ext["fail"] == nil {
		t.Fatalf("extensions: %v", ext)
	}
	if ro := s.ReadOnlyExtensions(); !reflect.DeepEqual(ro, []string{"echo"}) {
		t.Fatalf("read-only extensions: %v", ro)
	}
	huge, _ := new(big.Int).SetString("123456789012345678901234567890", 10)
	args := []any{nil, true, int64(-5), huge, 2.5, "text", []byte("bytes"), []byte{},
		zeoproto.Tuple{int64(1), "x"}, []any{}, zeoproto.Dict{{Key: "k", Value: []any{false}}, {Key: int64(2), Value: nil}}}
	got, err := ext["echo"](ctx, args)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, zeoproto.Tuple(args)) {
		t.Fatalf("echo:\n got %#v\nwant %#v", got, zeoproto.Tuple(args))
	}
	_, err = ext["fail"](ctx, nil)
	var ce *stack.ConflictError
	if !errors.As(err, &ce) || ce.Oid != 7 || string(ce.Data) != "theirs" || stack.IsBackendFailure(err) {
		t.Fatalf("fail: %v", err)
	}
	if _, err := ext["echo"](ctx, []any{make(chan int)}); err == nil || !strings.Contains(err.Error(), "cannot cross") {
		t.Fatalf("an argument that cannot cross: %v", err)
	}
}

// Empty empties the plugin's storage (the in-memory storage implements
// it; the host forwards it).
func TestEmpty(t *testing.T) {
	ctx := context.Background()
	s := open(t, "<testmapping>\n</testmapping>\n", nil, host.Options{})
	defer s.Close()
	commit(t, s, 1, 0, "v1")
	if err := s.Empty(ctx); err != nil {
		t.Fatal(err)
	}
	if last, err := s.LastTransaction(ctx); err != nil || last != 0 {
		t.Fatalf("after Empty: last %s, %v", last, err)
	}
	var nf *stack.NotFoundError
	if _, err := s.LoadBefore(ctx, 1, stack.MaxTid); !errors.As(err, &nf) {
		t.Fatalf("load after Empty: %v", err)
	}
}

// A RAID rebuilds a plugin child: the recovery empties it through the
// plugin, then copies the history back.
func TestRAIDRebuild(t *testing.T) {
	t.Setenv(host.EnvPath, pluginDir)
	log, logs := newLog(t)
	h := host.New(log, fastRestarts())
	cfg := loadConfig(t, "%import test\n<zeo>\n  address 127.0.0.1:0\n</zeo>\n<raidstorage main>\n  call-timeout 10s\n  <testmapping 1>\n  </testmapping>\n  <testmapping 2>\n  </testmapping>\n</raidstorage>\n")
	ctx := context.Background()
	tree, err := stack.Build(ctx, cfg, stack.BuildOptions{Log: log, Import: h.Import})
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	root := tree.Roots["main"]
	raid := root.Storage.(*raidstorage.Storage)
	child := root.Children[0].Storage.(*host.Storage)
	tid := commit(t, raid, 0, 0, "one")
	tid = commit(t, raid, 0, tid, "two")
	if err := syscall.Kill(child.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	tid = commit(t, raid, 0, tid, "three")
	waitFor(t, "the restarted child", func() bool { return child.PID() != 0 })
	if err := raid.Recover("1", true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rebuild", func() bool {
		state, _, _ := raid.ChildState("1")
		return state == raidstorage.Optimal
	})
	if logs.find(message("emptied")) == nil {
		t.Fatal("the plugin's storage was not emptied")
	}
	if last, err := child.LastTransaction(ctx); err != nil || last != tid {
		t.Fatalf("rebuilt child at %s (%v), want %s", last, err, tid)
	}
	if rev, err := child.LoadBefore(ctx, 0, stack.MaxTid); err != nil || string(rev.Data) != "three" {
		t.Fatalf("load from the rebuilt child: %+v %v", rev, err)
	}
}

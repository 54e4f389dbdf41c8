package host_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/plugins/host"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// loadConfig writes a zeo.conf into a fresh directory and decodes it.
func loadConfig(t *testing.T, text string) *stack.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "zeo.conf")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := stack.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// %import finds the plugin on $ZEORAID_PLUGIN_PATH and registers its
// types; their sections are checked as strictly as a builtin's in a dry
// run; a missing plugin is an error at the %import line naming where it
// looked.
func TestImport(t *testing.T) {
	t.Setenv(host.EnvPath, pluginDir)
	h := host.New(nil, fastRestarts())
	cfg := loadConfig(t, "%import test\n<zeo>\n  address 127.0.0.1:0\n</zeo>\n<testmapping main>\n  nmae x\n  count 1\n  count 2\n</testmapping>\n")
	_, err := stack.Build(context.Background(), cfg, stack.BuildOptions{DryRun: true, Import: h.Import})
	var list zconfig.ErrorList
	if !errors.As(err, &list) || len(list) != 1 || list[0].Pos.Line != 6 || !strings.Contains(list[0].Msg, "did you mean 'name'?") {
		t.Fatalf("dry run: %v", err)
	}
	if _, ok := stack.Lookup("testfile"); !ok {
		t.Fatal("<testfile> not registered")
	}
	cfg = loadConfig(t, "<zeo>\n  address 127.0.0.1:0\n</zeo>\n%import nosuchplugin\n<testmapping main>\n</testmapping>\n")
	_, err = stack.Build(context.Background(), cfg, stack.BuildOptions{DryRun: true, Import: h.Import})
	if !errors.As(err, &list) || list[0].Pos.Line != 4 || !strings.Contains(list[0].Msg, "zeoraid-plugin-nosuchplugin in "+pluginDir+":") {
		t.Fatalf("missing plugin: %v", err)
	}
}

// A RAID of two plugin children: one killed, the RAID degrades it and
// goes on serving; the child's plugin is restarted (empty: it was in
// memory) and a recovery brings it back.
func TestRAIDOfPlugins(t *testing.T) {
	t.Setenv(host.EnvPath, pluginDir)
	log, _ := newLog(t)
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
	tid := commit(t, raid, 0, 0, "before")

	if err := syscall.Kill(child.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The commit reaches the dead child, which is degraded; the client
	// sees nothing.
	tid = commit(t, raid, 0, tid, "after")
	if state, reason, _ := raid.ChildState("1"); state != raidstorage.Degraded {
		t.Fatalf("child 1 is %s (%s), want degraded", state, reason)
	}
	if rev, err := raid.LoadBefore(ctx, 0, stack.MaxTid); err != nil || string(rev.Data) != "after" {
		t.Fatalf("load from the degraded RAID: %+v %v", rev, err)
	}
	waitFor(t, "the restarted child", func() bool { return child.PID() != 0 })
	if err := raid.Recover("1", false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the recovery", func() bool {
		state, _, _ := raid.ChildState("1")
		return state == raidstorage.Optimal
	})
	if last, err := child.LastTransaction(ctx); err != nil || last != tid {
		t.Fatalf("recovered child at %s (%v), want %s", last, err, tid)
	}
}

// waitFor polls cond for up to 30 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(fmt.Sprintf("timed out waiting for %s", what))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package zeoclient_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/zeoraid/zeoraid/builtin/zeoclient"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/zconfig"
)

// countingLoads is a remote storage that counts the loads it serves (and
// packs, whose log lines show the client's label).
type countingLoads struct {
	stack.Storage
	loads atomic.Int64
}

func (c *countingLoads) LoadBefore(ctx context.Context, oid stack.Oid, before stack.Tid) (stack.Revision, error) {
	c.loads.Add(1)
	return c.Storage.LoadBefore(ctx, oid, before)
}

func (c *countingLoads) Pack(ctx context.Context, t time.Time, gc bool) error {
	return c.Storage.(stack.Packer).Pack(ctx, t, gc)
}

// reloadTree builds text over prev as a configuration reload does, applies
// the root's change and closes what the new tree does not use.
func reloadTree(t *testing.T, prev *stack.Tree, log logrus.FieldLogger, text string) (*stack.Tree, []string, error) {
	t.Helper()
	root, err := zconfig.Parse("zeo.conf", []byte(zeoSection+text))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := stack.DecodeConfig(root)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := stack.Build(ctxT(t, 20*time.Second), cfg, stack.BuildOptions{Log: log, Previous: prev})
	if err != nil || prev == nil {
		return tree, nil, err
	}
	var summary []string
	if b := tree.Roots["main"]; b.Reuse == stack.Reconfigured {
		b.Change.Apply()
		summary = b.Change.Summary()
	}
	if err := prev.CloseUnused(tree); err != nil {
		t.Fatal(err)
	}
	return tree, summary, nil
}

// cache-size, name and client-label change on the running connection:
// the same node, no reconnection, the cache emptied and refilled, the new
// name in get_info and the new label at the server. Another server is
// another node; username is refused as at start-up.
func TestReconfigureInPlace(t *testing.T) {
	remote := &countingLoads{Storage: newMapping()}
	srvLog, srvHook := test.NewNullLogger()
	addr := goServerWith(t, remote, server.Options{Log: srvLog})
	log, hook := test.NewNullLogger()
	section := func(keys string) string {
		return "<zeoclient main>\n  server " + addr + "\n" + keys + "</zeoclient>\n"
	}
	tree, _, err := reloadTree(t, nil, log, section("  cache-size 1MB\n  name first\n  client-label one\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { tree.Close() }()
	s := tree.Roots["main"].Storage.(*zeoclient.Storage)
	ctx := ctxT(t, 20*time.Second)
	commit(t, s, store{oid: 0, data: "root"})
	// loads reports how many of two loads of the root reached the server.
	loads := func() int64 {
		t.Helper()
		before := remote.loads.Load()
		for range 2 {
			if _, err := s.LoadBefore(ctx, 0, stack.MaxTid); err != nil {
				t.Fatal(err)
			}
		}
		return remote.loads.Load() - before
	}
	if n := loads(); n > 1 {
		t.Fatalf("with a cache, %d of two loads reached the server", n)
	}

	next, sum, err := reloadTree(t, tree, log, section("  cache-size 0\n  name second\n  client-label two\n"))
	if err != nil {
		t.Fatal(err)
	}
	tree = next
	if tree.Roots["main"].Reuse != stack.Reconfigured || tree.Roots["main"].Storage != s {
		t.Fatalf("the node was %v, not reconfigured in place", tree.Roots["main"].Reuse)
	}
	if got, want := strings.Join(sum, "|"), `cache-size 1048576 -> 0|name "first" -> "second"|client-label "one" -> "two"`; got != want {
		t.Fatalf("summary %q, want %q", got, want)
	}
	if n := loads(); n != 2 {
		t.Errorf("cache-size 0, yet %d of two loads reached the server", n)
	}
	if info, err := s.Info(ctx); err != nil || info.Name != "second" {
		t.Errorf("get_info after the reload: %+v, %v", info, err)
	}
	next, _, err = reloadTree(t, tree, log, section("  cache-size 1MB\n  name second\n  client-label two\n"))
	if err != nil {
		t.Fatal(err)
	}
	tree = next
	if n := loads(); n != 1 {
		t.Errorf("cache back, %d of two loads reached the server, want 1", n)
	}
	// The server knows the new label: it prefixes its log lines of the
	// connection with it (the label is sent without waiting for an answer).
	deadline := time.Now().Add(10 * time.Second)
	for !logged(srvHook, "(two ") {
		if time.Now().After(deadline) {
			t.Fatal("the server never saw client-label two")
		}
		_ = s.Pack(ctx, time.Now(), true)
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(messages(hook), "connected to the ZEO server"); n != 1 {
		t.Errorf("%d connections for three configurations, want 1", n)
	}

	other := goServer(t, newMapping())
	next, _, err = reloadTree(t, tree, log, "<zeoclient main>\n  server "+other+"\n</zeoclient>\n")
	if err != nil {
		t.Fatal(err)
	}
	tree = next
	if tree.Roots["main"].Reuse != stack.Opened || tree.Roots["main"].Storage == s {
		t.Fatalf("another server: %v, the same node", tree.Roots["main"].Reuse)
	}
	_, _, err = reloadTree(t, tree, log, "<zeoclient main>\n  server "+other+"\n  username bob\n</zeoclient>\n")
	if err == nil || !strings.Contains(err.Error(), "ZEO 5 removed authentication") {
		t.Fatalf("username on reload: %v", err)
	}
}

func logged(h *test.Hook, part string) bool { return strings.Contains(messages(h), part) }

func messages(h *test.Hook) string {
	var b strings.Builder
	for _, e := range h.AllEntries() {
		b.WriteString(e.Message + "\n")
	}
	return b.String()
}

package raidstorage_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// rebuild builds src over prev (as a reload does) and applies every
// change of the tree.
func rebuild(t *testing.T, prev *stack.Tree, src string) (*stack.Tree, []string, error) {
	t.Helper()
	root, err := zconfig.Parse("raid.conf", []byte("<zeo>\naddress 1\n</zeo>\n"+src))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := stack.DecodeConfig(root)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := stack.Build(context.Background(), cfg, stack.BuildOptions{Previous: prev})
	if err != nil || prev == nil {
		return tree, nil, err
	}
	var summary []string
	var apply func(b *stack.Built)
	apply = func(b *stack.Built) {
		for _, c := range b.Children {
			apply(c)
		}
		if b.Reuse == stack.Reconfigured {
			b.Change.Apply()
			summary = append(summary, b.Change.Summary()...)
			if err := b.Change.Release(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	apply(tree.Roots["main"])
	if err := prev.CloseUnused(tree); err != nil {
		t.Fatal(err)
	}
	return tree, summary, nil
}

const raidAB = `<raidstorage main>
  read-distribution first
  <mappingstorage a/>
  <mappingstorage b/>
</raidstorage>
`

func TestReconfigureChildrenAndOptions(t *testing.T) {
	tree, _, err := rebuild(t, nil, raidAB)
	if err != nil {
		t.Fatal(err)
	}
	r := tree.Roots["main"].Storage.(*raidstorage.Storage)
	t.Cleanup(func() { tree.Close() })
	commit(t, r, "one", 1)

	// A third child: degraded "added by reload", the others untouched;
	// recovered, it is a mirror like them.
	tree2, sum, err := rebuild(t, tree, `<raidstorage main>
  read-distribution first
  <mappingstorage a/>
  <mappingstorage b/>
  <mappingstorage c/>
</raidstorage>
`)
	if err != nil {
		t.Fatal(err)
	}
	tree = tree2
	if tree.Roots["main"].Storage != r || tree.Roots["main"].Reuse != stack.Reconfigured {
		t.Fatal("the RAID was not reconfigured in place")
	}
	if st, reason, ok := r.ChildState("c"); !ok || st != raidstorage.Degraded || reason != raidstorage.ReasonAdded {
		t.Fatalf("added child: %v %q %v", st, reason, ok)
	}
	if st, _, _ := r.ChildState("a"); st != raidstorage.Optimal {
		t.Fatal("a child that stayed lost its state")
	}
	if strings.Join(sum, "|") != "child c added (degraded: added by reload)" {
		t.Fatalf("summary %q", sum)
	}
	must(t, r.Recover("c", false))
	waitState(t, r, "c", raidstorage.Optimal)
	commit(t, r, "two", 1)

	// Options changed and a child removed.
	tree2, sum, err = rebuild(t, tree, `<raidstorage main>
  read-distribution latency
  call-timeout 5s
  <mappingstorage b/>
  <mappingstorage c/>
</raidstorage>
`)
	if err != nil {
		t.Fatal(err)
	}
	tree = tree2
	want := "read-distribution first -> latency|call-timeout 1m0s -> 5s|child a removed (was optimal)"
	if strings.Join(sum, "|") != want {
		t.Fatalf("summary %q, want %q", sum, want)
	}
	if _, _, ok := r.ChildState("a"); ok {
		t.Fatal("a removed child is still known")
	}
	if got := r.InfoMap()["read_distribution"]; got != "latency" {
		t.Fatalf("read_distribution %v", got)
	}
	tid := commit(t, r, "three", 1)
	cmp, err := r.Verify(ctxT(t), "b", "c")
	if err != nil || cmp.Diff != nil || cmp.Last != tid {
		t.Fatalf("children differ after the reloads: %+v, %v", cmp, err)
	}
	if last, _ := r.LastTransaction(ctxT(t)); last != tid {
		t.Fatal("commit lost")
	}

	// Removing every optimal child is refused, and leaves everything.
	if _, _, err := rebuild(t, tree, "<raidstorage main>\n<mappingstorage z/>\n</raidstorage>\n"); err == nil ||
		!strings.Contains(err.Error(), "every optimal child") {
		t.Fatalf("removing every optimal child: %v", err)
	}
	if st, _, ok := r.ChildState("b"); !ok || st != raidstorage.Optimal {
		t.Fatal("a refused reconfiguration changed the RAID")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// connecting is a child that behaves like a remote server still being
// connected to: until ready, lastTransaction fails with a backend failure
// and it reports no capability (a <zeoclient> opened with wait false).
type connecting struct {
	*mappingstorage.Storage
	ready time.Time // zero: never
}

func (c *connecting) up() bool { return !c.ready.IsZero() && time.Now().After(c.ready) }

func (c *connecting) LastTransaction(ctx context.Context) (stack.Tid, error) {
	if !c.up() {
		return 0, errIO
	}
	return c.Storage.LastTransaction(ctx)
}

func (c *connecting) Capabilities() stack.Capabilities {
	if !c.up() {
		return stack.Capabilities{}
	}
	return c.Storage.Capabilities()
}

func init() {
	type opts struct {
		Delay time.Duration `zconfig:"delay" doc:"until it answers"`
		Never bool          `zconfig:"never" doc:"never answers"`
	}
	stack.Register(stack.Module{Type: "connectingstorage", Doc: "test: a child still connecting", Options: &opts{},
		Open: func(_ context.Context, n *stack.Node, o any) (stack.Storage, error) {
			c := &connecting{Storage: mappingstorage.New(n.Path, nil)}
			if !o.(*opts).Never {
				c.ready = time.Now().Add(o.(*opts).Delay)
			}
			return c, nil
		}})
}

// A child added while it is still connecting is probed as at start-up: one
// that answers within call-timeout has its capabilities checked and is
// recovered; one that does not answer is added degraded all the same.
func TestReconfigureAddConnecting(t *testing.T) {
	tree, _, err := rebuild(t, nil, raidAB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tree.Close() })
	r := tree.Roots["main"].Storage.(*raidstorage.Storage)
	commit(t, r, "one", 1)
	tree2, sum, err := rebuild(t, tree, `<raidstorage main>
  read-distribution first
  call-timeout 5s
  <mappingstorage a/>
  <mappingstorage b/>
  <connectingstorage c>
    delay 1s
  </connectingstorage>
</raidstorage>
`)
	if err != nil {
		t.Fatalf("adding a child that connects within call-timeout: %v", err)
	}
	tree = tree2
	if !strings.Contains(strings.Join(sum, "|"), "child c added (degraded: added by reload)") {
		t.Fatalf("summary %q", sum)
	}
	must(t, r.Recover("c", false))
	waitState(t, r, "c", raidstorage.Optimal)

	tree2, sum, err = rebuild(t, tree, `<raidstorage main>
  read-distribution first
  call-timeout 1s
  <mappingstorage a/>
  <mappingstorage b/>
  <connectingstorage c>
    delay 1s
  </connectingstorage>
  <connectingstorage d>
    never true
  </connectingstorage>
</raidstorage>
`)
	if err != nil {
		t.Fatalf("adding a child that does not answer: %v", err)
	}
	tree = tree2
	if st, reason, ok := r.ChildState("d"); !ok || st != raidstorage.Degraded || reason != raidstorage.ReasonAdded {
		t.Fatalf("unreachable added child: %v %q %v (summary %q)", st, reason, ok, sum)
	}
	if st, _, _ := r.ChildState("c"); st != raidstorage.Optimal {
		t.Fatal("a child that stayed lost its state")
	}
}

package stack_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// fakeStorage records its opening and closing; only what Build touches.
type fakeStorage struct {
	stack.Storage
	name string
	log  *openLog
}

func (f *fakeStorage) Close() error { f.log.add("close " + f.name); return nil }

type openLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *openLog) add(s string) { l.mu.Lock(); l.lines = append(l.lines, s); l.mu.Unlock() }

var events = &openLog{}

// refusal is the typed error of a fake storage that fails to open.
type refusal struct{ node string }

func (r *refusal) Error() string { return "refused to open" }

type fakeOptions struct {
	Fail bool   `zconfig:"fail"`
	Tag  string `zconfig:"tag"`
}

func init() {
	open := func(ctx context.Context, n *stack.Node, opts any) (stack.Storage, error) {
		o := opts.(*fakeOptions)
		if o.Fail {
			return nil, &refusal{node: n.Path}
		}
		events.add("open " + n.Path + " children=" + strings.Join(n.ChildNames, ","))
		return &fakeStorage{name: n.Path, log: events}, nil
	}
	stack.Register(stack.Module{Type: "buildleaf", Options: &fakeOptions{}, Open: open})
	stack.Register(stack.Module{Type: "buildgroup", Options: &fakeOptions{}, Children: true, Open: open})
}

func build(t *testing.T, src string) (*stack.Tree, error) {
	t.Helper()
	root, err := zconfig.Parse("test.conf", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := stack.DecodeConfig(root)
	if err != nil {
		t.Fatal(err)
	}
	return stack.Build(context.Background(), cfg, stack.BuildOptions{})
}

func TestBuildOpensChildrenFirstAndClosesParentsFirst(t *testing.T) {
	events.lines = nil
	tree, err := build(t, `<zeo>
address 8100
</zeo>
<buildgroup main>
  <buildleaf a/>
  <buildgroup b>
    <buildleaf c/>
  </buildgroup>
</buildgroup>
`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"open main/a children=", "open main/b/c children=", "open main/b children=c", "open main children=a,b"}
	if strings.Join(events.lines, "|") != strings.Join(want, "|") {
		t.Fatalf("open order %q, want %q", events.lines, want)
	}
	events.lines = nil
	must(t, tree.Close())
	want = []string{"close main", "close main/a", "close main/b", "close main/b/c"}
	if strings.Join(events.lines, "|") != strings.Join(want, "|") {
		t.Fatalf("close order %q, want %q", events.lines, want)
	}
}

func TestBuildFailureClosesWhatWasOpened(t *testing.T) {
	events.lines = nil
	_, err := build(t, `<zeo>
address 8100
</zeo>
<buildleaf first/>
<buildgroup main>
  <buildleaf a/>
  <buildleaf b>
    fail true
  </buildleaf>
</buildgroup>
`)
	if err == nil || !strings.Contains(err.Error(), "test.conf:7:3: main/b: cannot open <buildleaf>: refused to open") {
		t.Fatalf("error %v", err)
	}
	// The backend's error survives Build, beside the position.
	var r *refusal
	var oe *stack.OpenError
	if !errors.As(err, &r) || r.node != "main/b" || !errors.As(err, &oe) || oe.Pos.Line != 7 || oe.Path != "main/b" {
		t.Fatalf("the cause is lost after Build: %#v", err)
	}
	opened, closed := map[string]bool{}, map[string]bool{}
	for _, l := range events.lines {
		if p, ok := strings.CutPrefix(l, "open "); ok {
			opened[strings.Fields(p)[0]] = true
		}
		if p, ok := strings.CutPrefix(l, "close "); ok {
			closed[p] = true
		}
	}
	for p := range opened {
		if !closed[p] {
			t.Errorf("%s was opened and not closed after the failure", p)
		}
	}
	if len(opened) != 2 {
		t.Fatalf("opened %v", opened)
	}
}

func TestFingerprintFollowsConfiguration(t *testing.T) {
	fp := func(src string) string {
		root, err := zconfig.Parse("f.conf", []byte("<zeo>\naddress 1\n</zeo>\n"+src))
		must(t, err)
		cfg, err := stack.DecodeConfig(root)
		must(t, err)
		tree, err := stack.Build(context.Background(), cfg, stack.BuildOptions{DryRun: true})
		must(t, err)
		return tree.Roots["main"].Fingerprint
	}
	a := fp("<buildgroup main>\ntag x\n<buildleaf 1/>\n</buildgroup>\n")
	b := fp("<buildgroup main>\n  TAG x\n  <buildleaf 1>\n  </buildleaf>\n</buildgroup>\n")
	c := fp("<buildgroup main>\ntag y\n<buildleaf 1/>\n</buildgroup>\n")
	d := fp("<buildgroup main>\ntag x\n<buildleaf 1>\ntag z\n</buildleaf>\n</buildgroup>\n")
	if a != b {
		t.Error("formatting changed the fingerprint")
	}
	if a == c || a == d {
		t.Error("a changed key (own or a child's) kept the fingerprint")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

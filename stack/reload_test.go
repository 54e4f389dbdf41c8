package stack_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// liveStorage is a storage whose "live" key changes in place and whose
// "tag" key needs a new storage.
type liveStorage struct {
	stack.Storage
	n      *stack.Notifier
	path   string
	mu     sync.Mutex
	live   string
	closed bool
}

type liveOptions struct {
	Tag  string `zconfig:"tag"`
	Live string `zconfig:"live"`
	Fail bool   `zconfig:"fail"`
}

var liveOpened sync.Map // path -> *liveStorage, the latest opened

func init() {
	stack.Register(stack.Module{Type: "liveleaf", Options: &liveOptions{}, Open: func(ctx context.Context, n *stack.Node, opts any) (stack.Storage, error) {
		o := opts.(*liveOptions)
		if o.Fail {
			return nil, errors.New("refused to open")
		}
		s := &liveStorage{n: stack.NewNotifier(0), path: n.Path, live: o.Live}
		liveOpened.Store(n.Path, s)
		return s, nil
	}})
}

func (s *liveStorage) Watch(ch chan<- stack.Event) stack.Tid { return s.n.Watch(ch) }
func (s *liveStorage) Unwatch(ch chan<- stack.Event)         { s.n.Unwatch(ch) }
func (s *liveStorage) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

func (s *liveStorage) isClosed() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.closed }
func (s *liveStorage) liveValue() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live
}

// Reconfigure takes a changed live key in place; a changed tag needs a new
// storage.
func (s *liveStorage) Reconfigure(ctx context.Context, n *stack.Node, opts any) (stack.Change, error) {
	o := opts.(*liveOptions)
	if o.Tag != "" {
		return nil, fmt.Errorf("tag %q: %w", o.Tag, stack.ErrReopen)
	}
	return &liveChange{s: s, to: o.Live}, nil
}

type liveChange struct {
	s  *liveStorage
	to string
}

func (c *liveChange) Apply() {
	c.s.mu.Lock()
	c.s.live = c.to
	c.s.mu.Unlock()
}
func (c *liveChange) Discard()                          {}
func (c *liveChange) Summary() []string                 { return []string{"live -> " + c.to} }
func (c *liveChange) Release(ctx context.Context) error { return nil }

// recordingHost is the server side of a reload, recorded.
type recordingHost struct {
	mu      sync.Mutex
	lines   []string
	mounts  map[string]*stack.Mount
	prepErr error
}

func (h *recordingHost) Prepare(cfg *stack.Config) (func() []string, func(), error) {
	if h.prepErr != nil {
		return nil, nil, h.prepErr
	}
	return func() []string { return nil }, func() { h.add("abort") }, nil
}
func (h *recordingHost) AddMount(m *stack.Mount) error {
	h.add("add " + m.Name())
	h.mounts[m.Name()] = m
	return nil
}
func (h *recordingHost) RemoveMount(name, reason string) *stack.Mount {
	h.add("remove " + name)
	m := h.mounts[name]
	delete(h.mounts, name)
	return m
}
func (h *recordingHost) add(s string) { h.mu.Lock(); h.lines = append(h.lines, s); h.mu.Unlock() }

type reloadFixture struct {
	src  string
	r    *stack.Reloader
	host *recordingHost
}

func (f *reloadFixture) load() (*stack.Config, error) {
	root, err := zconfig.Parse("reload.conf", []byte("<zeo>\naddress 1\n</zeo>\n"+f.src))
	if err != nil {
		return nil, err
	}
	return stack.DecodeConfig(root)
}

func newReloadFixture(t *testing.T, src string) *reloadFixture {
	t.Helper()
	f := &reloadFixture{src: src, host: &recordingHost{mounts: map[string]*stack.Mount{}}}
	cfg, err := f.load()
	must(t, err)
	tree, err := stack.Build(context.Background(), cfg, stack.BuildOptions{})
	must(t, err)
	var mounts []*stack.Mount
	for _, name := range tree.Names {
		m := stack.NewMount(name, tree.Roots[name].Storage)
		mounts = append(mounts, m)
		f.host.mounts[name] = m
	}
	f.r = stack.NewReloader(tree, mounts)
	f.r.Load, f.r.Host = f.load, f.host
	f.r.CommitTimeout = 50 * time.Millisecond
	t.Cleanup(func() { must(t, f.r.Close()) })
	return f
}

func opened(path string) *liveStorage {
	s, _ := liveOpened.Load(path)
	return s.(*liveStorage)
}

func (f *reloadFixture) reload(t *testing.T, src string) ([]string, error) {
	t.Helper()
	f.src = src
	sum, err := f.r.Reload(context.Background(), "test")
	f.r.Settle()
	return sum, err
}

func TestReloadReusesReconfiguresAndReplaces(t *testing.T) {
	f := newReloadFixture(t, "<liveleaf a>\nlive 1\n</liveleaf>\n<liveleaf b/>\n")
	a, b := opened("a"), opened("b")
	mountA := f.host.mounts["a"]

	sum, err := f.reload(t, "<liveleaf a>\nlive 1\n</liveleaf>\n<liveleaf b/>\n")
	if err != nil || strings.Join(sum, "|") != "no change" {
		t.Fatalf("same configuration: %q, %v", sum, err)
	}
	if opened("a") != a || opened("b") != b {
		t.Fatal("an unchanged storage was reopened")
	}

	// A live key: the same storage, changed in place.
	sum, err = f.reload(t, "<liveleaf a>\nlive 2\n</liveleaf>\n<liveleaf b/>\n")
	if err != nil || strings.Join(sum, "|") != "a: live -> 2" {
		t.Fatalf("live change: %q, %v", sum, err)
	}
	if mountA.Storage() != a || a.liveValue() != "2" || a.isClosed() {
		t.Fatal("the live change was not applied in place")
	}

	// A key that needs a new storage: swapped, the old one closed.
	sum, err = f.reload(t, "<liveleaf a>\ntag x\n</liveleaf>\n<liveleaf b/>\n")
	if err != nil || len(sum) != 1 || !strings.Contains(sum[0], "storage a replaced") {
		t.Fatalf("reopen: %q, %v", sum, err)
	}
	if mountA.Storage() == a || !a.isClosed() || b.isClosed() {
		t.Fatalf("after the swap: mounted old %v, old closed %v, b closed %v", mountA.Storage() == a, a.isClosed(), b.isClosed())
	}

	// A storage removed and one added.
	f.host.lines = nil
	sum, err = f.reload(t, "<liveleaf a>\ntag x\n</liveleaf>\n<liveleaf c/>\n")
	if err != nil || len(sum) != 2 {
		t.Fatalf("add and remove: %q, %v", sum, err)
	}
	if strings.Join(f.host.lines, "|") != "add c|remove b" && strings.Join(f.host.lines, "|") != "remove b|add c" {
		t.Fatalf("host calls %q", f.host.lines)
	}
	if !b.isClosed() {
		t.Fatal("a removed storage was not closed")
	}
	if st := f.r.Status(); !st.OK || st.Trigger != "test" || st.When.IsZero() {
		t.Fatalf("status %+v", st)
	}
}

func TestReloadErrorsChangeNothing(t *testing.T) {
	f := newReloadFixture(t, "<liveleaf a>\nlive 1\n</liveleaf>\n")
	a := opened("a")
	mountA := f.host.mounts["a"]

	// A syntax error, positioned.
	_, err := f.reload(t, "<liveleaf a>\nlive 2\n")
	if err == nil || !strings.Contains(f.r.Status().Error, "reload.conf:") {
		t.Fatalf("broken file: %v, status %+v", err, f.r.Status())
	}
	// A new storage that fails to open beside a live change: neither
	// applies, and what was opened is closed again.
	_, err = f.reload(t, "<liveleaf a>\nlive 2\n</liveleaf>\n<liveleaf z/>\n<liveleaf y>\nfail true\n</liveleaf>\n")
	var oe *stack.OpenError
	if !errors.As(err, &oe) || oe.Path != "y" {
		t.Fatalf("failing open: %v", err)
	}
	if !opened("z").isClosed() {
		t.Fatal("a storage opened by a refused reload is still open")
	}
	// The host refuses (a listener that cannot bind).
	f.host.prepErr = errors.New("address in use")
	if _, err = f.reload(t, "<liveleaf a>\nlive 2\n</liveleaf>\n"); err == nil {
		t.Fatal("a host refusal must refuse the reload")
	}
	f.host.prepErr = nil
	// A commit in progress past the timeout: refused, host aborted.
	must(t, mountA.LockCommit(context.Background()))
	f.host.lines = nil
	_, err = f.reload(t, "<liveleaf a>\nlive 2\n</liveleaf>\n")
	mountA.UnlockCommit()
	if !errors.Is(err, context.DeadlineExceeded) || strings.Join(f.host.lines, "|") != "abort" {
		t.Fatalf("commit in progress: %v, host %q", err, f.host.lines)
	}
	if a.liveValue() != "1" || a.isClosed() || mountA.Storage() != a {
		t.Fatal("a refused reload changed the running storage")
	}
	if st := f.r.Status(); st.OK || st.Error == "" {
		t.Fatalf("status after a refused reload: %+v", st)
	}
	// The next good edit applies.
	if sum, err := f.reload(t, "<liveleaf a>\nlive 3\n</liveleaf>\n"); err != nil || a.liveValue() != "3" {
		t.Fatalf("good edit after errors: %q, %v", sum, err)
	}
}

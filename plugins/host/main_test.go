package host_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/plugins/host"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// The binaries TestMain builds: the test plugin, the same plugin
// announcing another protocol version, and a host process for the orphan
// test.
var (
	pluginDir    string
	testPlugin   string
	futurePlugin string
	orphanHost   string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "zeoraid-plugins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginDir = dir
	testPlugin = filepath.Join(dir, "zeoraid-plugin-test")
	futurePlugin = filepath.Join(dir, "zeoraid-plugin-future")
	orphanHost = filepath.Join(dir, "orphanhost")
	builds := [][]string{
		{"-o", testPlugin, "./testdata/testplugin"},
		{"-o", futurePlugin, "-ldflags=-X github.com/zeoraid/zeoraid/plugins/sdk.advertisedMajor=3", "./testdata/testplugin"},
		{"-o", orphanHost, "./testdata/orphanhost"},
	}
	for _, args := range builds {
		cmd := exec.Command("go", append([]string{"build"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", strings.Join(args, " "), err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// logs collects a test's log entries and lets it wait for one.
type logs struct {
	mu      sync.Mutex
	entries []*logrus.Entry
	wake    chan struct{}
}

func (l *logs) Levels() []logrus.Level { return logrus.AllLevels }

func (l *logs) Fire(e *logrus.Entry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, e)
	close(l.wake)
	l.wake = make(chan struct{})
	return nil
}

// newLog returns a logger whose entries the returned logs collects (and
// the test's log shows when it fails).
func newLog(t testing.TB) (*logrus.Logger, *logs) {
	l := logrus.New()
	l.SetLevel(logrus.DebugLevel)
	l.SetOutput(testWriter{t})
	h := &logs{wake: make(chan struct{})}
	l.AddHook(h)
	return l, h
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// find returns the first entry matching, or nil.
func (l *logs) find(match func(*logrus.Entry) bool) *logrus.Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.entries {
		if match(e) {
			return e
		}
	}
	return nil
}

// await waits for an entry matching, up to ctx.
func (l *logs) await(ctx context.Context, t testing.TB, what string, match func(*logrus.Entry) bool) *logrus.Entry {
	t.Helper()
	for {
		l.mu.Lock()
		wake := l.wake
		l.mu.Unlock()
		if e := l.find(match); e != nil {
			return e
		}
		select {
		case <-wake:
		case <-ctx.Done():
			t.Fatalf("no log entry %s: %v", what, ctx.Err())
		}
	}
}

// message matches entries by their message.
func message(msg string) func(*logrus.Entry) bool {
	return func(e *logrus.Entry) bool { return e.Message == msg }
}

// section parses one section of configuration text.
func section(t testing.TB, text string) *zconfig.Section {
	t.Helper()
	root, err := zconfig.Parse("test.conf", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return root.Sections[0]
}

// open opens a section of the test plugin as the node main.
func open(t testing.TB, text string, log logrus.FieldLogger, opts host.Options) *host.Storage {
	t.Helper()
	sec := section(t, text)
	if log == nil {
		log, _ = newLog(t)
	}
	n := &stack.Node{Path: "main", Type: sec.Type, Log: log.WithFields(logrus.Fields{"node": "main", "type": sec.Type})}
	s, err := host.Open(context.Background(), testPlugin, n, sec, opts)
	if err != nil {
		t.Fatalf("open %s: %v", sec.Type, err)
	}
	return s
}

// quiet is a logger that drops everything.
func quiet() *logrus.Logger {
	l := logrus.New()
	l.SetLevel(logrus.PanicLevel)
	return l
}

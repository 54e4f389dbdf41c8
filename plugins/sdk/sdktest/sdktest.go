// Package sdktest helps a plugin author test the plugin as zeoraid runs
// it: Build compiles the plugin's main package, Open starts the binary and
// opens one of its sections as a stack.Storage over the real plugin
// protocol, so the conformance suite of the builtins runs against it:
//
//	bin := sdktest.Build(t, ".")
//	storagetest.Run(t, storagetest.Harness{
//		Open: func(t testing.TB) stack.Storage {
//			return sdktest.Open(t, bin, "<mystorage>\n  path "+t.TempDir()+"/db\n</mystorage>\n")
//		},
//		Oracle: func(testing.TB) stack.Storage { return mappingstorage.New("oracle", nil) },
//	})
package sdktest

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/plugins/host"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// Build compiles the plugin main package pkg (a path as go build takes
// it) into a temporary directory and returns the executable's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), host.Prefix+"undertest")
	out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// Open starts the plugin executable bin and opens the one section of
// section (ZConfig text) as the node "main", as zeoraid serve would. The
// plugin's log lines go to the test's log. The caller closes the storage
// (storagetest.Run does).
func Open(t testing.TB, bin, section string) stack.Storage {
	t.Helper()
	root, err := zconfig.Parse(t.Name()+".conf", []byte(section))
	if err != nil {
		t.Fatal(err)
	}
	if len(root.Sections) != 1 {
		t.Fatalf("want one section, got %d", len(root.Sections))
	}
	sec := root.Sections[0]
	log := logrus.New()
	log.SetOutput(testWriter{t})
	log.SetLevel(logrus.DebugLevel)
	n := &stack.Node{Path: "main", Type: sec.Type, Log: log.WithFields(logrus.Fields{"node": "main", "type": sec.Type})}
	s, err := host.Open(context.Background(), bin, n, sec, host.Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatalf("opening <%s> of %s: %v", sec.Type, bin, err)
	}
	return s
}

// testWriter sends log lines to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

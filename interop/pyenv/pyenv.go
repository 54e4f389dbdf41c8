// Package pyenv finds the virtualenv with the real Python ZODB and ZEO that
// interop/setup.sh creates, for tests that drive real Python peers. A test
// that needs Python fails (never skips) when the environment is missing:
// CI must not pass without talking to the real peers.
package pyenv

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// TB is the part of testing.TB these helpers use. pyenv does not import
// testing, so that the zeoraid binary can link the runzeo launcher
// (`zeoraid bench -compare`).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	TempDir() string
	Cleanup(func())
	Failed() bool
}

// Top returns the repository's top directory.
func Top() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Venv returns the virtualenv directory: $ZEORAID_VENV or .venv at the top.
func Venv() string {
	if v := os.Getenv("ZEORAID_VENV"); v != "" {
		return v
	}
	return filepath.Join(Top(), ".venv")
}

// Python returns the virtualenv's python, failing t if it is missing or
// cannot import ZODB and ZEO.
func Python(t TB) string {
	t.Helper()
	py := filepath.Join(Venv(), "bin", "python")
	out, err := exec.Command(py, "-c", "import ZODB, ZEO, msgpack").CombinedOutput()
	if err != nil {
		t.Fatalf("Python ZODB/ZEO not available at %s (run interop/setup.sh, or `make test`): %v\n%s", py, err, out)
	}
	return py
}

// Run runs the virtualenv's python with args and returns its standard
// output, failing t with the standard error if it exits with an error.
func Run(t TB, args ...string) []byte {
	t.Helper()
	py := Python(t)
	cmd := exec.Command(py, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", py, args, err, stderr.String())
	}
	return out
}

// Script returns the path of a helper script in interop/python.
func Script(name string) string {
	return filepath.Join(Top(), "interop", "python", name)
}

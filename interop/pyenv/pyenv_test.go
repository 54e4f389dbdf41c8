package pyenv

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a TB that records the failures instead of stopping.
type recorder struct {
	testing.TB
	fatals []string
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.fatals = append(r.fatals, fmt.Sprintf(format, args...))
}

// Without the virtualenv a test that needs Python fails, with a message
// that says how to make it.
func TestMissingVenvFails(t *testing.T) {
	t.Setenv("ZEORAID_VENV", filepath.Join(t.TempDir(), "none"))
	rec := &recorder{TB: t}
	Python(rec)
	if len(rec.fatals) != 1 || !strings.Contains(rec.fatals[0], "Python ZODB/ZEO not available") || !strings.Contains(rec.fatals[0], "interop/setup.sh") {
		t.Fatalf("failures %q", rec.fatals)
	}
}

// A python that cannot be run is an error, not a hang.
func TestStartRunzeoWithoutPython(t *testing.T) {
	_, err := StartRunzeoContext(context.Background(), filepath.Join(t.TempDir(), "python"), RunzeoOptions{Dir: t.TempDir()})
	if err == nil {
		t.Fatal("runzeo started without a python")
	}
	if _, err := StartRunzeoContext(context.Background(), "python", RunzeoOptions{}); err == nil || !strings.Contains(err.Error(), "no directory") {
		t.Fatalf("without Dir: %v", err)
	}
}

package pyenv

import (
	"context"
	"fmt"
	"go/build/constraint"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
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

// Every test file that uses pyenv is built only with the interop tag, so
// that `go test ./...` passes on a machine without Python.
func TestPythonTestsAreTagged(t *testing.T) {
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(Top(), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != Top() && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		usesPyenv := false
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == "github.com/zeoraid/zeoraid/interop/pyenv" {
				usesPyenv = true
			}
		}
		if !usesPyenv {
			return nil
		}
		checked++
		// Built without interop, whatever the other tags: a mistake.
		withoutInterop := func(tag string) bool { return tag != "interop" }
		for _, group := range f.Comments {
			if group.Pos() > f.Package {
				break
			}
			for _, c := range group.List {
				if constraint.IsGoBuild(c.Text) {
					expr, err := constraint.Parse(c.Text)
					if err != nil {
						return fmt.Errorf("%s: %v", path, err)
					}
					if !expr.Eval(withoutInterop) {
						return nil
					}
				}
			}
		}
		rel, _ := filepath.Rel(Top(), path)
		t.Errorf("%s uses pyenv but builds without the interop tag: give it //go:build interop", rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 10 {
		t.Fatalf("only %d test files use pyenv: the walk saw nothing", checked)
	}
}

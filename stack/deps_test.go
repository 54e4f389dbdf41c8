package stack_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyRules checks the layering of docs/architecture.md §2.2 with `go list`: zconfig
// imports nothing of ours; stack never imports builtin or plugins; a
// builtin never imports another builtin (builtin/all only links them) nor
// plugins; plugins import only stack, zconfig and each other.
func TestDependencyRules(t *testing.T) {
	const mod = "github.com/zeoraid/zeoraid/"
	out, err := exec.Command("go", "list", "-json", mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		checked++
		rel := strings.TrimPrefix(p.ImportPath, mod)
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, mod) {
				continue
			}
			dep := strings.TrimPrefix(imp, mod)
			switch {
			case rel == "zconfig" || strings.HasPrefix(rel, "zconfig/"):
				t.Errorf("%s imports %s: zconfig must import nothing of zeoraid's", rel, dep)
			case strings.HasPrefix(rel, "stack") && (strings.HasPrefix(dep, "builtin") || strings.HasPrefix(dep, "plugins")):
				t.Errorf("%s imports %s: stack must not import builtins or plugins", rel, dep)
			case strings.HasPrefix(rel, "builtin/") && rel != "builtin/all" && strings.HasPrefix(dep, "builtin/"):
				t.Errorf("%s imports %s: a builtin must not import another builtin", rel, dep)
			case strings.HasPrefix(rel, "builtin/") && strings.HasPrefix(dep, "plugins"):
				t.Errorf("%s imports %s: builtins must not import plugins", rel, dep)
			case strings.HasPrefix(rel, "plugins/") && !strings.HasPrefix(dep, "plugins/") && !strings.HasPrefix(dep, "stack") && dep != "zconfig":
				t.Errorf("%s imports %s: plugins import only stack, zconfig and plugins (test plugins under testdata may use builtins)", rel, dep)
			}
		}
	}
	if checked < 5 {
		t.Fatalf("go list returned only %d packages; the check saw nothing", checked)
	}
}

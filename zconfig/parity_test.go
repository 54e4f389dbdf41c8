//go:build interop

package zconfig_test

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/zeoraid/zeoraid/interop/pyenv"
	"github.com/zeoraid/zeoraid/zconfig"
)

// This test lives outside package zconfig so that zconfig itself imports
// nothing of ours; only the test reaches for the Python environment.

// pyTree is the tree testdata/zconfig_dump.py prints.
type pyTree struct {
	Type     string     `json:"type"`
	Name     string     `json:"name"`
	Keys     [][]string `json:"keys"`
	Imports  []string   `json:"imports"`
	Sections []*pyTree  `json:"sections"`
	Error    *string    `json:"error,omitempty"`
}

func toPyTree(s *zconfig.Section) *pyTree {
	t := &pyTree{Type: s.Type, Name: s.Name, Keys: [][]string{}, Imports: []string{}, Sections: []*pyTree{}}
	for _, k := range s.Keys {
		t.Keys = append(t.Keys, []string{k.Name, k.Value})
	}
	for _, imp := range s.Imports {
		t.Imports = append(t.Imports, imp.Package)
	}
	for _, sub := range s.Sections {
		t.Sections = append(t.Sections, toPyTree(sub))
	}
	return t
}

// stricterThanZConfig are broken inputs that ZConfig's own parser accepts;
// the reason is the value.
var stricterThanZConfig = map[string]string{
	"err-bad-key.conf":    "ZConfig reads 'address(8100) x' as key 'address' with value '(8100) x'",
	"err-import-bad.conf": "ZConfig's parser leaves checking the package name to the schema loader",
}

// TestParityWithZConfig parses every testdata file with ZConfig's own parser
// (from the interop virtualenv) and checks that it builds the same tree from
// the files we accept and fails on the ones we reject as syntax errors.
func TestParityWithZConfig(t *testing.T) {
	py := pyenv.Python(t)
	t.Setenv("ZCONFIG_TEST_ROOT", "/srv/zeo")
	t.Setenv("ZCONFIG_TEST_PORT", "9100")
	files, err := filepath.Glob("testdata/*.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			out, _ := exec.Command(py, "testdata/zconfig_dump.py", file).Output()
			var want pyTree
			if err := json.Unmarshal(out, &want); err != nil {
				t.Fatalf("zconfig_dump.py: %v\n%s", err, out)
			}
			root, err := zconfig.ParseFile(file)
			switch {
			case err == nil && want.Error != nil:
				t.Errorf("we accept %s, ZConfig rejects it: %s", file, *want.Error)
			case err != nil && want.Error == nil:
				if _, known := stricterThanZConfig[filepath.Base(file)]; !known {
					t.Errorf("we reject %s, ZConfig accepts it:\n%v", file, err)
				}
			case err == nil:
				if got := toPyTree(root); !reflect.DeepEqual(got, &want) {
					g, _ := json.Marshal(got)
					t.Errorf("trees differ for %s:\n go: %s\n py: %s", file, g, strings.TrimSpace(string(out)))
				}
			}
		})
	}
}

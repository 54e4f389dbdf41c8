//go:build interop

package interop

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeoraid/zeoraid/interop/pyenv"
)

// zeo54Version is the ZEO release of the second virtualenv.
const zeo54Version = "5.4.1"

// python54 returns the python of the ZEO 5.4 virtualenv that
// interop/setup-zeo54.sh creates ($ZEORAID_VENV_ZEO54, or .venv-zeo54 at
// the top), failing t (never skipping) when it is missing or holds
// another ZEO.
func python54(t *testing.T) string {
	t.Helper()
	venv := os.Getenv("ZEORAID_VENV_ZEO54")
	if venv == "" {
		venv = filepath.Join(pyenv.Top(), ".venv-zeo54")
	}
	py := filepath.Join(venv, "bin", "python")
	out, err := exec.Command(py, "-c",
		"import ZODB, ZEO, msgpack; from importlib.metadata import version; print(version('ZEO'))").CombinedOutput()
	if err != nil {
		t.Fatalf("the ZEO %s client is not available at %s (run interop/setup-zeo54.sh, or `make test`): %v\n%s", zeo54Version, py, err, out)
	}
	if v := strings.TrimSpace(string(out)); v != zeo54Version {
		t.Fatalf("%s has ZEO %s, want %s (run interop/setup-zeo54.sh)", py, v, zeo54Version)
	}
	return py
}

// TestZEO54Client runs a ZEO 5.4 client (ZODB 5.8) against zeoraid: the
// application scenario in both encodings, and ZODB's storage mixins
// through ZEO 5.4's GenericTests (pickle) and FullGenericTests over
// mappingstorage (both encodings).
func TestZEO54Client(t *testing.T) {
	t.Parallel()
	python := python54(t)
	for _, enc := range []Encoding{Z5, M5} {
		t.Run("application/"+string(enc), func(t *testing.T) {
			t.Parallel()
			runApplication(t, python, enc, "ZEO 5.4")
		})
	}
	jobs := []suiteJob{
		{"suites/Z5", Z5, []string{"ZEO.tests.testZEO:MappingStorageTests", "interop:MappingStorageFullTests"}},
		{"suites/M5", M5, []string{"interop:MappingStorageFullTests"}},
	}
	if results := runJobs(t, python, "zeo54", jobs); results != nil {
		t.Run("expected_failures.txt", func(t *testing.T) {
			checkListUsed(t, "zeo54", jobs, results)
		})
	}
}

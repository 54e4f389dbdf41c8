//go:build interop

package interop

import (
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/interop/pyenv"
)

// chainClasses run through the chain Python client → zeoraid serving a
// <zeoclient> → Python runzeo serving the test's own storage (the forker's
// ZEORAID_CHAIN mode): ZEO's generic, undo, iteration, conflict resolution
// and blob suites, so everything a ZEO client does survives the hop.
var chainClasses = []string{
	"ZEO.tests.testZEO:MappingStorageTests",
	"ZEO.tests.testZEO:FileStorageTests",
	"ZEO.tests.testZEO:BlobAdaptedFileStorageTests",
}

// undoConflictResolution are ZODB's undo tests that need the application's
// conflict resolvers on the server: only a Python storage can run them
// (see expected_failures.txt). Through zeoclient children the Python
// upstream runs them, so they pass there.
func undoConflictResolution(class string) map[string]string {
	out := map[string]string{}
	for _, m := range []string{"testUndoConflictResolution", "testUndoMultipleConflictResolution", "testUndoMultipleConflictResolutionReversed"} {
		out["ZEO.tests.testZEO."+class+"."+m] = "undo needing server-side conflict resolution (Python resolvers)"
	}
	return out
}

// suiteVariant is ZEO's suites run against one way of serving the storage
// the tests ask for.
type suiteVariant struct {
	env      string            // the forker's mode, NAME=VALUE
	classes  []string          // test classes
	expected map[string]string // test id -> why it cannot pass
	least    int               // at least this many tests must pass
}

// TestChainSuites runs ZEO's suites through zeoraid's zeoclient to a real
// runzeo, in both encodings (the upstream speaks the same one). M5 leaves
// out the blob class to keep the run short; the encoding does not change
// what the blob calls do.
func TestChainSuites(t *testing.T) {
	t.Parallel()
	python := pyenv.Python(t)
	runVariants(t, python, map[Encoding]suiteVariant{
		Z5: {env: "ZEORAID_CHAIN=1", classes: chainClasses, least: 200},
		M5: {env: "ZEORAID_CHAIN=1", classes: chainClasses[:2], least: 150},
	})
}

// TestRAIDSuites runs ZEO's suites against a RAID of two: two copies of
// the storage the test asks for (mappingstorage, filestorage, blobs), and
// two Python runzeo servers behind <zeoclient> children (FileStorage: a
// Python MappingStorage cannot take the RAID's tids, so it cannot be a
// mirror).
func TestRAIDSuites(t *testing.T) {
	t.Parallel()
	python := pyenv.Python(t)
	local := undoConflictResolution("FileStorageTests")
	for k, v := range undoConflictResolution("BlobAdaptedFileStorageTests") {
		local[k] = v
	}
	local["ZEO.tests.testZEO.BlobAdaptedFileStorageTests.checkStoreAndLoadBlob"] = "looks for the server's blob file in the configured blob-dir; the RAID's two copies keep theirs in blob-dir.a and blob-dir.b"
	runVariants(t, python, map[Encoding]suiteVariant{
		Z5: {env: "ZEORAID_RAID=local", classes: chainClasses, expected: local, least: 200},
		M5: {env: "ZEORAID_RAID=zeo", classes: chainClasses[1:2], least: 100},
	})
}

// runVariants runs each variant in its encoding at once, one process per
// class, and checks that every test passes except the expected ones,
// which must fail.
func runVariants(t *testing.T, python string, variants map[Encoding]suiteVariant) {
	for enc, v := range variants {
		t.Run(string(enc)+"/"+v.env, func(t *testing.T) {
			t.Parallel()
			res, err := runEach(t, python, enc, v.classes, v.env)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Refused) > 0 {
				t.Errorf("refused configurations: %v", res.Refused)
			}
			passed := 0
			var ids []string
			for id := range res.Tests {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			for _, id := range ids {
				r := res.Tests[id]
				reason, expected := v.expected[id]
				switch {
				case r.Status == "pass" && expected:
					t.Errorf("%s passes but is listed as failing (%s): remove it", id, reason)
				case r.Status == "pass", r.Status == "skip":
					passed++
				case !expected:
					t.Errorf("%s: %s:\n%s", id, r.Status, lastLines(r.Message, 25))
				}
			}
			if passed < v.least {
				t.Errorf("only %d tests passed", passed)
			}
			t.Logf("%d tests passed", passed)
		})
	}
}

// runEach runs every class in its own run_suites.py process, all at once
// (they mostly wait on sockets and timers, and one process would take the
// sum of their times), and merges their outcomes.
func runEach(t *testing.T, python string, enc Encoding, classes []string, env string) (suiteResult, error) {
	results := make([]suiteResult, len(classes))
	errs := make([]error, len(classes))
	var wg sync.WaitGroup
	for i, class := range classes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = runSuites(t, python, enc, 3*time.Minute, []string{class}, env)
		}()
	}
	wg.Wait()
	all := suiteResult{Tests: map[string]testResult{}}
	for i, r := range results {
		if errs[i] != nil {
			return all, fmt.Errorf("%s: %w", classes[i], errs[i])
		}
		maps.Copy(all.Tests, r.Tests)
		all.Refused = append(all.Refused, r.Refused...)
	}
	return all, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestBadgerSuites runs ZEO's storage suites with every <filestorage> the
// tests ask for served as a <badgerstorage> (the forker's
// ZEORAID_BACKEND=badger): undo, pack, iteration, blobs, conflicts and
// invalidations over Badger through Python's client.
func TestBadgerSuites(t *testing.T) {
	t.Parallel()
	python := pyenv.Python(t)
	expected := undoConflictResolution("FileStorageTests")
	for k, v := range undoConflictResolution("BlobAdaptedFileStorageTests") {
		expected[k] = v
	}
	runVariants(t, python, map[Encoding]suiteVariant{
		Z5: {env: "ZEORAID_BACKEND=badger", classes: chainClasses[1:], expected: expected, least: 150},
		M5: {env: "ZEORAID_BACKEND=badger", classes: chainClasses[1:2], expected: undoConflictResolution("FileStorageTests"), least: 80},
	})
}

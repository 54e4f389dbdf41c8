package interop

import (
	"sort"
	"strings"
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

// chainExpected are the tests that cannot pass through the chain, with the
// reason; any other failure, and any listed test that passes, fails.
var chainExpected = map[string]string{}

// TestChainSuites runs ZEO's suites through zeoraid's zeoclient to a real
// runzeo, in both encodings (the upstream speaks the same one).
func TestChainSuites(t *testing.T) {
	t.Parallel()
	python := pyenv.Python(t)
	for _, enc := range []Encoding{Z5, M5} {
		t.Run(string(enc), func(t *testing.T) {
			t.Parallel()
			// M5 leaves out the blob class to keep the run short; the
			// encoding does not change what the blob calls do.
			classes, least := chainClasses, 200
			if enc == M5 {
				classes, least = chainClasses[:2], 150
			}
			res, err := runSuites(t, python, enc, 3*time.Minute, classes, "ZEORAID_CHAIN=1")
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
				reason, expected := chainExpected[id]
				switch {
				case r.Status == "pass" && expected:
					t.Errorf("%s passes through the chain but is listed as failing (%s): remove it", id, reason)
				case r.Status == "pass", r.Status == "skip":
					passed++
				case !expected:
					t.Errorf("%s: %s through the chain:\n%s", id, r.Status, lastLines(r.Message, 25))
				}
			}
			if passed < least {
				t.Errorf("only %d tests passed through the chain", passed)
			}
			t.Logf("%d tests passed through the chain", passed)
		})
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

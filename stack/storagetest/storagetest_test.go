package storagetest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/storagetest"
)

// offByOne is mappingstorage with a planted bug: LoadBefore answers as if
// asked for one tid later, so it returns a revision committed at `before`.
type offByOne struct{ *mappingstorage.Storage }

func (s offByOne) LoadBefore(ctx context.Context, oid stack.Oid, before stack.Tid) (stack.Revision, error) {
	return s.Storage.LoadBefore(ctx, oid, before+1)
}

func quiet() logrus.FieldLogger {
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	return log
}

// TestBuggyBackend runs the suite against offByOne. It only runs inside
// TestSuiteCatchesPlantedBug's child process, which expects it to fail.
func TestBuggyBackend(t *testing.T) {
	if os.Getenv("STORAGETEST_BUGGY") != "1" {
		t.Skip("runs only as the child of TestSuiteCatchesPlantedBug")
	}
	storagetest.Run(t, storagetest.Harness{
		Open:   func(testing.TB) stack.Storage { return offByOne{mappingstorage.New("buggy", quiet())} },
		Oracle: func(testing.TB) stack.Storage { return mappingstorage.New("oracle", quiet()) },
	})
}

// TestSuiteCatchesPlantedBug proves the suite can fail: it runs
// TestBuggyBackend in a child test process (collecting its failures rather
// than failing this test) and checks the planted bug was caught by the
// groups that should catch it.
func TestSuiteCatchesPlantedBug(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestBuggyBackend$", "-test.v")
	cmd.Env = append(os.Environ(), "STORAGETEST_BUGGY=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the suite passed a backend whose LoadBefore is off by one:\n%s", out)
	}
	for _, group := range []string{"--- FAIL: TestBuggyBackend/LoadBefore", "--- FAIL: TestBuggyBackend/RandomHistory"} {
		if !strings.Contains(string(out), group) {
			t.Errorf("%q missing from the failures:\n%s", group, out)
		}
	}
	if strings.Contains(string(out), "--- FAIL: TestBuggyBackend/NewOIDs") {
		t.Errorf("a group unrelated to the bug failed:\n%s", out)
	}
}

package storagetest_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/builtin/blobstorage"
	"github.com/zeoraid/zeoraid/builtin/filestorage"
	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/storagetest"
	"github.com/zeoraid/zeoraid/zconfig"
)

func quiet() logrus.FieldLogger {
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	return log
}

func oracle(testing.TB) stack.Storage { return mappingstorage.New("oracle", quiet()) }

// offByOne is mappingstorage with a planted bug: LoadBefore answers as if
// asked for one tid later, so it returns a revision committed at `before`.
type offByOne struct{ *mappingstorage.Storage }

func (s offByOne) LoadBefore(ctx context.Context, oid stack.Oid, before stack.Tid) (stack.Revision, error) {
	return s.Storage.LoadBefore(ctx, oid, before+1)
}

// leakyReadOnly is a writable FileStorage with a planted bug: it reports
// ReadOnly and refuses ordinary commits, pack and new oids, but a
// transaction with an explicit tid (the restore path) goes through.
type leakyReadOnly struct{ *filestorage.Storage }

func (s leakyReadOnly) Capabilities() stack.Capabilities {
	c := s.Storage.Capabilities()
	c.ReadOnly = true
	return c
}

func (s leakyReadOnly) Begin(ctx context.Context, meta stack.TxnMeta) (stack.Txn, error) {
	if meta.Tid == 0 {
		return nil, stack.ErrReadOnly
	}
	return s.Storage.Begin(ctx, meta)
}

func (s leakyReadOnly) Pack(context.Context, time.Time, bool) error { return stack.ErrReadOnly }

func (s leakyReadOnly) NewOIDs(context.Context, int) ([]stack.Oid, error) {
	return nil, stack.ErrReadOnly
}

// unreportedReadOnly is a read-only FileStorage with a planted bug: its
// Capabilities do not say ReadOnly.
type unreportedReadOnly struct{ *filestorage.Storage }

func (s unreportedReadOnly) Capabilities() stack.Capabilities {
	c := s.Storage.Capabilities()
	c.ReadOnly = false
	return c
}

// wrongReadOnlyError is a read-only FileStorage with a planted bug: it
// refuses commits as unsupported rather than as read-only.
type wrongReadOnlyError struct{ *filestorage.Storage }

func (s wrongReadOnlyError) Begin(ctx context.Context, meta stack.TxnMeta) (stack.Txn, error) {
	return nil, stack.ErrNotSupported
}

// hiddenCapabilities is a blobstorage over a mappingstorage with a planted
// bug: it reports no capability although all of them work.
type hiddenCapabilities struct{ *blobstorage.Storage }

func (hiddenCapabilities) Capabilities() stack.Capabilities { return stack.Capabilities{} }

// undoLie is mappingstorage with a planted bug: it reports Undo, but every
// undo fails.
type undoLie struct{ *mappingstorage.Storage }

// mappingTxn is what a mappingstorage transaction implements.
type mappingTxn interface {
	stack.Txn
	stack.RestoreTxn
	stack.UndoTxn
	stack.DeleteTxn
}

type undoLieTxn struct{ mappingTxn }

func (s undoLie) Begin(ctx context.Context, meta stack.TxnMeta) (stack.Txn, error) {
	txn, err := s.Storage.Begin(ctx, meta)
	if err != nil {
		return nil, err
	}
	return undoLieTxn{txn.(mappingTxn)}, nil
}

func (undoLieTxn) Undo(context.Context, []byte) ([]stack.Oid, error) {
	return nil, &stack.UndoError{Reason: "planted: undo never works"}
}

// openFileStorage opens a Data.fs with blobs in a new directory.
func openFileStorage(t testing.TB) stack.Storage {
	dir := t.TempDir()
	fs, err := filestorage.Open(filepath.Join(dir, "Data.fs"), filestorage.Options{BlobDir: zconfig.ExistingDirPath(filepath.Join(dir, "blobs")), PackGC: true}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// reopenFileStorage opens the data of the closed FileStorage s again.
func reopenFileStorage(t testing.TB, s stack.Storage, readOnly bool) *filestorage.Storage {
	fs := s.(*filestorage.Storage)
	r, err := filestorage.Open(fs.Path(), filestorage.Options{BlobDir: zconfig.ExistingDirPath(fs.BlobDir()), ReadOnly: readOnly}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// planted are the harnesses of backends with a planted bug, by the name
// STORAGETEST_PLANTED gives TestPlantedBackend.
var planted = map[string]storagetest.Harness{
	"loadbefore-off-by-one": {
		Open:   func(testing.TB) stack.Storage { return offByOne{mappingstorage.New("buggy", quiet())} },
		Oracle: oracle,
	},
	"read-only-restore-leak": {
		Open: openFileStorage,
		ReadOnly: func(t testing.TB, s stack.Storage) stack.Storage {
			return leakyReadOnly{reopenFileStorage(t, s, false)}
		},
		Oracle: oracle,
	},
	"read-only-unreported": {
		Open: openFileStorage,
		ReadOnly: func(t testing.TB, s stack.Storage) stack.Storage {
			return unreportedReadOnly{reopenFileStorage(t, s, true)}
		},
		Oracle: oracle,
	},
	"read-only-wrong-error": {
		Open: openFileStorage,
		ReadOnly: func(t testing.TB, s stack.Storage) stack.Storage {
			return wrongReadOnlyError{reopenFileStorage(t, s, true)}
		},
		Oracle: oracle,
	},
	"read-only-forgets": {
		// The read-only storage is an empty Data.fs, not the one written.
		Open: openFileStorage,
		ReadOnly: func(t testing.TB, _ stack.Storage) stack.Storage {
			empty := openFileStorage(t)
			if err := empty.Close(); err != nil {
				t.Fatal(err)
			}
			return reopenFileStorage(t, empty, true)
		},
		Oracle: oracle,
	},
	"hidden-capabilities": {
		Open: func(t testing.TB) stack.Storage {
			s, err := blobstorage.New(mappingstorage.New("buggy", quiet()), filepath.Join(t.TempDir(), "blobs"), quiet())
			if err != nil {
				t.Fatal(err)
			}
			return hiddenCapabilities{s}
		},
		Oracle: oracle,
	},
	"undo-lie": {
		Open:   func(testing.TB) stack.Storage { return undoLie{mappingstorage.New("buggy", quiet())} },
		Oracle: oracle,
	},
}

// TestPlantedBackend runs the suite against the backend with the planted
// bug STORAGETEST_PLANTED names. It only runs inside
// TestSuiteCatchesPlantedBug's child processes, which expect it to fail.
func TestPlantedBackend(t *testing.T) {
	name := os.Getenv("STORAGETEST_PLANTED")
	if name == "" {
		t.Skip("runs only as the child of TestSuiteCatchesPlantedBug")
	}
	h, ok := planted[name]
	if !ok {
		t.Fatalf("STORAGETEST_PLANTED=%q names no planted bug", name)
	}
	storagetest.Run(t, h)
}

// TestSuiteCatchesPlantedBug proves the suite can fail: for each planted
// bug it runs the groups that should catch it, and one unrelated group, of
// TestPlantedBackend in a child test process (collecting its failures
// rather than failing this test) and checks that the former failed with
// the expected complaints and the latter passed.
func TestSuiteCatchesPlantedBug(t *testing.T) {
	cases := []struct {
		bug       string
		fail      []string // groups that must fail
		complaint []string // messages that must appear
		pass      string   // a group that must not fail
	}{
		{
			bug:  "loadbefore-off-by-one",
			fail: []string{"LoadBefore", "RandomHistory"},
			pass: "NewOIDs",
		},
		{
			bug:       "read-only-restore-leak",
			fail:      []string{"ReadOnly"},
			complaint: []string{"Store with an explicit tid committed on a read-only storage", "Restore committed on a read-only storage"},
			pass:      "Basic",
		},
		{
			bug:       "read-only-wrong-error",
			fail:      []string{"ReadOnly"},
			complaint: []string{"Store of a new object on a read-only storage: not supported by this storage, want ErrReadOnly"},
			pass:      "Basic",
		},
		{
			bug:       "read-only-forgets",
			fail:      []string{"ReadOnly"},
			complaint: []string{"load 0x0000000000000001: "},
			pass:      "Basic",
		},
		{
			bug:       "read-only-unreported",
			fail:      []string{"ReadOnly"},
			complaint: []string{"a storage reopened read-only does not report the ReadOnly capability"},
			pass:      "Basic",
		},
		{
			bug:  "hidden-capabilities",
			fail: []string{"Capabilities"},
			complaint: []string{
				"Iterate works", "RecordIterNext works", "UndoLog works", "Undo works", "Restore works",
				"Delete works", "StoreBlob works", "LoadBlob works", "Pack works",
			},
			pass: "Basic",
		},
		{
			bug:       "undo-lie",
			fail:      []string{"Undo", "RandomHistory"},
			complaint: []string{"planted: undo never works"},
			pass:      "Capabilities",
		},
	}
	for _, c := range cases {
		t.Run(c.bug, func(t *testing.T) {
			groups := strings.Join(append([]string{c.pass}, c.fail...), "|")
			cmd := exec.Command(os.Args[0], "-test.run=^TestPlantedBackend$/^("+groups+")$", "-test.v")
			cmd.Env = append(os.Environ(), "STORAGETEST_PLANTED="+c.bug)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a backend with the planted bug %s:\n%s", c.bug, out)
			}
			for _, group := range c.fail {
				if !strings.Contains(string(out), "--- FAIL: TestPlantedBackend/"+group+" ") {
					t.Errorf("group %s did not fail:\n%s", group, out)
				}
			}
			for _, msg := range c.complaint {
				if !strings.Contains(string(out), msg) {
					t.Errorf("%q missing from the failures:\n%s", msg, out)
				}
			}
			if !strings.Contains(string(out), "--- PASS: TestPlantedBackend/"+c.pass+" ") {
				t.Errorf("group %s, unrelated to the bug, did not pass:\n%s", c.pass, out)
			}
		})
	}
}

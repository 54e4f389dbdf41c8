//go:build interop

package zeoproto

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeoraid/zeoraid/interop/pyenv"
	"github.com/zeoraid/zeoraid/stack"
)

// Every error reply we produce becomes the intended exception in the real
// Python client (its decoder and exception factories), in both encodings.
// A payload of the wrong shape would raise inside the client's receive
// loop and hang the caller.
func TestErrorRepliesInPythonClient(t *testing.T) {
	py := pyenv.Python(t)
	oid, t1, t2 := stack.Oid(5), stack.Tid(0x03f8a4b982222223), stack.Tid(0x03f8a4b982222222)
	cases := []struct {
		err  error
		want string // the Python exception class the client raises
	}{
		{&stack.NotFoundError{Oid: oid}, "ZODB.POSException.POSKeyError"},
		{&stack.NotFoundError{Oid: oid, Tid: t1}, "ZODB.POSException.POSKeyError"},
		{&stack.ConflictError{Oid: oid, Committed: t1, Read: t2}, "ZODB.POSException.ConflictError"},
		{stack.Conflicts{{Oid: oid, Committed: t1, Read: t2}}, "ZODB.POSException.ConflictError"},
		{&stack.ReadConflictError{Oid: oid, Committed: t1, Read: t2}, "ZODB.POSException.ReadConflictError"},
		{stack.ErrReadOnly, "ZODB.POSException.ReadOnlyError"},
		{fmt.Errorf("tpc_finish: %w", stack.ErrTxnState), "ZODB.POSException.StorageTransactionError"},
		{&ArgError{Index: 1, Want: "bytes", Got: nil}, "builtins.TypeError"},
		{&stack.UndoError{Reason: "no"}, "ZODB.POSException.MultipleUndoErrors"},
		{stack.ErrNotSupported, "ZEO.Exceptions.ServerException"},
		{&stack.StorageError{Msg: "quota"}, "ZEO.Exceptions.ServerException"},
		{errors.New("boom"), "ZEO.Exceptions.ServerException"},
	}
	cmd := exec.Command(py, filepath.Join("testdata", "clienterr.py"))
	var in bytes.Buffer
	for _, codec := range []Codec{Pickle, Msgpack} {
		for _, c := range cases {
			p, err := codec.Encode(NewErrorReply(Tuple{oid.Bytes(), t1.Bytes()}, c.err))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&in, "%c %x\n", codec.Protocol(), p)
		}
	}
	cmd.Stdin = &in
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("clienterr.py: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2*len(cases) {
		t.Fatalf("%d answers for %d replies:\n%s", len(lines), 2*len(cases), out)
	}
	for i, line := range lines {
		c := cases[i%len(cases)]
		if class, _, _ := strings.Cut(line, " "); class != c.want {
			t.Errorf("%v (%s): Python client got %s, want %s", c.err, []string{"Z", "M"}[i/len(cases)], line, c.want)
		}
	}
	// The details survive: the oid of a POSKeyError, the serials of a conflict.
	if !strings.Contains(lines[0], `0x05`) {
		t.Errorf("POSKeyError detail: %s", lines[0])
	}
	if !strings.Contains(lines[2], "serial this txn started with 0x03f8a4b982222222") {
		t.Errorf("ConflictError detail: %s", lines[2])
	}
}

package zeoproto

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"testing"

	"github.com/zeoraid/zeoraid/stack"
)

func TestErrorToPython(t *testing.T) {
	oid, t1, t2 := stack.Oid(5), stack.Tid(0x03f8a4b982222223), stack.Tid(0x03f8a4b982222222)
	cases := []struct {
		err     error
		class   string
		payload any
	}{
		{&stack.NotFoundError{Oid: oid}, ClassPOSKeyError, Tuple{oid.Bytes()}},
		{&stack.NotFoundError{Oid: oid, Tid: t1}, ClassPOSKeyError, Tuple{oid.Bytes(), t1.Bytes()}},
		{&stack.OpError{Node: "main/1", Op: "loadBefore", Err: &stack.NotFoundError{Oid: oid}}, ClassPOSKeyError, Tuple{oid.Bytes()}},
		{&stack.ConflictError{Oid: oid, Committed: t1, Read: t2}, ClassConflictError,
			Dict{{"message", "database conflict error"}, {"oid", oid.Bytes()}, {"class_name", nil}, {"serials", Tuple{t1.Bytes(), t2.Bytes()}}}},
		{stack.Conflicts{{Oid: oid, Committed: t1, Read: t2}}, ClassConflictError,
			Dict{{"message", "database conflict error"}, {"oid", oid.Bytes()}, {"class_name", nil}, {"serials", Tuple{t1.Bytes(), t2.Bytes()}}}},
		{&stack.ReadConflictError{Oid: oid, Committed: t1, Read: t2}, ClassReadConflictError,
			Dict{{"message", "database read conflict error"}, {"oid", oid.Bytes()}, {"class_name", nil}, {"serials", Tuple{t1.Bytes(), t2.Bytes()}}}},
		{&stack.UndoError{Reason: "non-undoable", Oid: oid}, ClassMultipleUndoErrors, Dict{{"_reason", "non-undoable"}, {"_oid", oid.Bytes()}, {"_errs", []any{Tuple{oid.Bytes(), "non-undoable"}}}}},
		{&stack.UndoError{Reason: "gone"}, ClassMultipleUndoErrors, Dict{{"_reason", "gone"}, {"_oid", nil}, {"_errs", []any{Tuple{nil, "gone"}}}}},
		{fmt.Errorf("main: store: %w", stack.ErrReadOnly), ClassReadOnlyError, Tuple{}},
		{fmt.Errorf("vote: %w", stack.ErrTxnState), ClassStorageTransactionError, Tuple{"vote: transaction in wrong state"}},
		{stack.ErrNotSupported, ClassUnsupported, Tuple{"not supported by this storage"}},
		{&stack.StorageError{Class: "ZODB.FileStorage.FileStorage.FileStorageQuotaError", Msg: "quota"}, "ZODB.FileStorage.FileStorage.FileStorageQuotaError", Tuple{"quota"}},
		{&stack.StorageError{Msg: "bad pack time"}, ClassStorageError, Tuple{"bad pack time"}},
		{&RemoteError{Class: "builtins.ValueError", Payload: Tuple{"unknown storage: nope"}}, "builtins.ValueError", Tuple{"unknown storage: nope"}},
		{&ArgError{Index: 0, Want: "bytes", Got: int64(1)}, "builtins.TypeError", Tuple{"argument 0: want bytes, got int"}},
		{context.DeadlineExceeded, "builtins.TimeoutError", Tuple{"context deadline exceeded"}},
		{&os.PathError{Op: "open", Path: "/x", Err: os.ErrNotExist}, "builtins.FileNotFoundError", Tuple{"open /x: file does not exist"}},
		{errors.New("boom"), "builtins.RuntimeError", Tuple{"boom"}},
	}
	for _, c := range cases {
		class, payload := ErrorToPython(c.err)
		if class != c.class || !reflect.DeepEqual(payload, c.payload) {
			t.Errorf("%v:\n got %s %#v\nwant %s %#v", c.err, class, payload, c.class, c.payload)
		}
		// Both codecs can carry it.
		for _, codec := range []Codec{Pickle, Msgpack} {
			if _, err := codec.Encode(NewErrorReply(int64(1), c.err)); err != nil {
				t.Errorf("%v: %c: %v", c.err, codec.Protocol(), err)
			}
		}
	}
}

// Error replies map back to the typed errors, and failures versus logical
// answers come out right for stack.IsBackendFailure.
func TestErrorFromPython(t *testing.T) {
	oid, t1, t2 := stack.Oid(5), stack.Tid(0x03f8a4b982222223), stack.Tid(0x03f8a4b982222222)
	for _, e := range []error{
		&stack.NotFoundError{Oid: oid},
		&stack.NotFoundError{Oid: oid, Tid: t1},
		&stack.ConflictError{Oid: oid, Committed: t1, Read: t2},
		&stack.ReadConflictError{Oid: oid, Committed: t1, Read: t2},
		&stack.UndoError{Reason: "non-undoable", Oid: oid},
		&stack.ConflictError{Oid: oid, Committed: t1, Read: t2, ClassName: "BTrees.Length.Length"},
		&stack.StorageError{Class: "ZODB.POSException.StorageError", Msg: "x"},
	} {
		back := ErrorFromPython(ErrorToPython(e))
		if !reflect.DeepEqual(back, e) {
			t.Errorf("round trip of %#v gave %#v", e, back)
		}
	}
	logical := []struct {
		class   string
		payload any
		is      error
	}{
		{ClassReadOnlyError, Tuple{}, stack.ErrReadOnly},
		{ClassStorageTransactionError, Tuple{nil, int64(3)}, stack.ErrTxnState},
		{"builtins.AttributeError", Tuple{"'ZEOStorage' object has no attribute 'new_oid'"}, stack.ErrNotSupported},
		{ClassUnsupported, Tuple{"no"}, stack.ErrNotSupported},
	}
	for _, c := range logical {
		err := ErrorFromPython(c.class, c.payload)
		if !errors.Is(err, c.is) || stack.IsBackendFailure(err) {
			t.Errorf("%s: %v (failure %v)", c.class, err, stack.IsBackendFailure(err))
		}
	}
	for _, c := range []struct {
		class   string
		payload any
	}{
		{"builtins.ValueError", Tuple{"unknown storage: nope"}},
		{"ZEO.Exceptions.ClientDisconnected", Tuple{}},
		{ClassPOSKeyError, "not a tuple"}, // wrong shape: not a typed answer
		{ClassConflictError, Tuple{"x"}},  // ZEO 5 sends a dict
	} {
		err := ErrorFromPython(c.class, c.payload)
		var re *RemoteError
		if !errors.As(err, &re) || re.Class != c.class || !stack.IsBackendFailure(err) {
			t.Errorf("%s: %v", c.class, err)
		}
	}
	if err := ErrorFromPython("builtins.ValueError", Tuple{"unknown storage: nope"}); err.Error() != "builtins.ValueError: unknown storage: nope" {
		t.Errorf("message: %q", err)
	}
}

// Python's sendBlob raises POSKeyError with a message instead of an oid;
// it is still a logical "not found", and survives the round trip.
func TestPOSKeyErrorWithMessage(t *testing.T) {
	err := ErrorFromPython(ClassPOSKeyError, Tuple{"No blob file at /x"})
	var nf *stack.NotFoundError
	if !errors.As(err, &nf) || nf.Msg != "No blob file at /x" || stack.IsBackendFailure(err) {
		t.Fatalf("ErrorFromPython = %#v", err)
	}
	class, payload := ErrorToPython(err)
	if class != ClassPOSKeyError || len(payload.(Tuple)) != 1 || payload.(Tuple)[0] != "No blob file at /x" {
		t.Fatalf("ErrorToPython = %s %v", class, payload)
	}
}

// Python's MultipleUndoErrors puts the oid in _reason and the reason in
// _oid (its constructor passes the (oid, reason) pair in that order); the
// (oid, reason) list in _errs is what counts.
func TestMultipleUndoErrorsFromPython(t *testing.T) {
	oid := stack.Oid(1)
	err := ErrorFromPython(ClassMultipleUndoErrors, Dict{
		{"_reason", oid.Bytes()}, {"_oid", "Some data were modified by a later transaction"},
		{"_errs", []any{Tuple{oid.Bytes(), "Some data were modified by a later transaction"}}},
	})
	var ue *stack.UndoError
	if !errors.As(err, &ue) || ue.Oid != oid || ue.Reason != "Some data were modified by a later transaction" {
		t.Fatalf("got %#v", err)
	}
}

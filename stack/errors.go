package stack

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors of the contract. They are logical answers, not backend
// failures, except ErrClosed.
var (
	// ErrReadOnly: a write on a read-only storage or connection (ZODB ReadOnlyError).
	ErrReadOnly = errors.New("read-only storage")
	// ErrClosed: a call on a closed storage. It is a backend failure: a RAID
	// degrades a child that answers it.
	ErrClosed = errors.New("storage closed")
	// ErrNotSupported: the storage lacks the capability the call needs.
	ErrNotSupported = errors.New("not supported by this storage")
	// ErrTxnState: a transaction call out of order (ZODB StorageTransactionError).
	ErrTxnState = errors.New("transaction in wrong state")
	// ErrEmptyData refuses a record with empty data. ZODB records are
	// pickles, never empty; Python's FileStorage writes an empty record
	// that its own readers then misread as a backpointer (docs/filestorage.md
	// §1.4), so every storage refuses one. Deleting is Delete's job.
	ErrEmptyData = &StorageError{Msg: "empty object data cannot be stored (ZODB records are pickles; delete an object with deleteObject)"}
)

// NotFoundError is ZODB's POSKeyError: no such object, or no such revision.
type NotFoundError struct {
	Oid Oid
	Tid Tid // the serial asked for, or 0
	// Msg, when set, is the message a remote server gave instead of an
	// oid (Python's sendBlob raises POSKeyError("No blob file …")).
	Msg string
}

func (e *NotFoundError) Error() string {
	if e.Msg != "" {
		return e.Msg
	}
	if e.Tid != 0 {
		return fmt.Sprintf("no revision %s of object %s", e.Tid, e.Oid)
	}
	return fmt.Sprintf("object %s not found", e.Oid)
}

// ConflictError is a write conflict: oid was committed at Committed after
// the writer read it at Read. Data is the rejected new state, so a ZEO
// client can resolve the conflict and store again.
type ConflictError struct {
	Oid       Oid
	Committed Tid
	Read      Tid
	Data      []byte
	// ClassName is the object's class (module.Class) when known, as a
	// Python server reports it; ZODB prints it in the message.
	ClassName string
}

func (e *ConflictError) Error() string {
	class := ""
	if e.ClassName != "" {
		class = ", class " + e.ClassName
	}
	return fmt.Sprintf("database conflict error (oid %s%s, serial this txn started with %s, serial currently committed %s)", e.Oid, class, e.Read, e.Committed)
}

// Conflicts is every write conflict one vote found.
type Conflicts []*ConflictError

func (c Conflicts) Error() string {
	parts := make([]string, len(c))
	for i, e := range c {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

// ReadConflictError: a checkCurrentSerial found oid changed (ZODB ReadConflictError).
type ReadConflictError struct {
	Oid       Oid
	Committed Tid // the current tid
	Read      Tid // the tid the writer expected
}

func (e *ReadConflictError) Error() string {
	return fmt.Sprintf("database read conflict error (oid %s, serial this txn started with %s, serial currently committed %s)", e.Oid, e.Read, e.Committed)
}

// UndoError: a transaction cannot be undone (ZODB UndoError).
type UndoError struct {
	Oid    Oid // the object that prevents it, or 0
	Reason string
}

func (e *UndoError) Error() string {
	if e.Oid != 0 {
		return fmt.Sprintf("%s (oid %s)", e.Reason, e.Oid)
	}
	return e.Reason
}

// StorageError is any other logical refusal with a message (ZODB
// StorageError): a quota exceeded, a bad pack time, a malformed request.
// Class, if set, names the more specific ZODB exception class the server
// reports (e.g. "ZODB.FileStorage.FileStorage.FileStorageQuotaError").
type StorageError struct {
	Class string
	Msg   string
}

func (e *StorageError) Error() string { return e.Msg }

// OpError adds where an error happened: the node path (main/2), the
// operation (loadBefore) and the oid or tid involved. It is added once, at
// the node boundary.
type OpError struct {
	Node string
	Op   string
	Oid  *Oid
	Tid  *Tid
	Err  error
}

func (e *OpError) Error() string {
	var b strings.Builder
	b.WriteString(e.Node)
	b.WriteString(": ")
	b.WriteString(e.Op)
	if e.Oid != nil {
		b.WriteString(" " + e.Oid.String())
	}
	if e.Tid != nil {
		b.WriteString(" @" + e.Tid.String())
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *OpError) Unwrap() error { return e.Err }

// WrapOp is how a node adds its boundary: it replaces *err, when set, by an
// *OpError naming node, op and the oid and tid involved (either may be
// nil; their values are copied). An error that already carries an OpError
// is left as it is: it crossed the boundary of the node where it
// happened (a child's), and that path is the one worth reading. Backends
// call it deferred from every exported method:
//
//	func (s *Storage) LoadBefore(ctx context.Context, oid Oid, before Tid) (_ Revision, err error) {
//		defer WrapOp(&err, s.node, "loadBefore", &oid, &before)
func WrapOp(err *error, node, op string, oid *Oid, tid *Tid) {
	if *err == nil {
		return
	}
	var inner *OpError
	if errors.As(*err, &inner) {
		return
	}
	e := &OpError{Node: node, Op: op, Err: *err}
	if oid != nil {
		o := *oid
		e.Oid = &o
	}
	if tid != nil {
		t := *tid
		e.Tid = &t
	}
	*err = e
}

// IsBackendFailure separates failures (I/O errors, disconnects, timeouts, a
// closed or crashed backend) from logical answers (not found, conflicts,
// undo and read-only refusals, transaction state and capability errors,
// StorageError). A RAID degrades a child only for failures; logical answers
// go back to the client. A nil error is not a failure, nor is the caller's
// own cancellation.
func IsBackendFailure(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var (
		nf *NotFoundError
		ce *ConflictError
		cs Conflicts
		rc *ReadConflictError
		ue *UndoError
		se *StorageError
	)
	switch {
	case errors.As(err, &nf), errors.As(err, &ce), errors.As(err, &cs),
		errors.As(err, &rc), errors.As(err, &ue), errors.As(err, &se),
		errors.Is(err, ErrReadOnly), errors.Is(err, ErrNotSupported), errors.Is(err, ErrTxnState):
		return false
	}
	return true
}

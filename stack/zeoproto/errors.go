package zeoproto

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/zeoraid/zeoraid/stack"
)

// Python exception class names used on the wire (docs/protocol.md §7).
const (
	ClassPOSKeyError             = "ZODB.POSException.POSKeyError"
	ClassConflictError           = "ZODB.POSException.ConflictError"
	ClassReadConflictError       = "ZODB.POSException.ReadConflictError"
	ClassBTreesConflictError     = "ZODB.POSException.BTreesConflictError"
	ClassReadOnlyError           = "ZODB.POSException.ReadOnlyError"
	ClassStorageTransactionError = "ZODB.POSException.StorageTransactionError"
	ClassStorageError            = "ZODB.POSException.StorageError"
	ClassUndoError               = "ZODB.POSException.UndoError"
	ClassMultipleUndoErrors      = "ZODB.POSException.MultipleUndoErrors"
	ClassUnsupported             = "ZODB.POSException.Unsupported"
)

// RemoteError is an error reply whose class has no typed equivalent in
// package stack (builtins.ValueError, builtins.AttributeError of a missing
// method, ZEO.Exceptions.*, …). It is a backend failure for
// stack.IsBackendFailure. A server relaying it (a RAID over a zeoclient)
// sends the same class and payload back, so Python clients see the
// original exception.
type RemoteError struct {
	Class   string // the Python class, module.name
	Payload any    // the args tuple or attribute dict, as received
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("%s: %s", e.Class, describePayload(e.Payload))
}

// describePayload renders an exception payload for a message: the str
// arguments joined, or the type of what arrived.
func describePayload(p any) string {
	if s, ok := Seq(p); ok {
		parts := make([]string, 0, len(s))
		for _, it := range s {
			switch v := it.(type) {
			case string:
				parts = append(parts, v)
			case []byte:
				parts = append(parts, fmt.Sprintf("%x", v))
			default:
				parts = append(parts, fmt.Sprint(v))
			}
		}
		return strings.Join(parts, ", ")
	}
	if d, ok := p.(Dict); ok {
		for _, k := range []string{"message", "_reason", "reason"} {
			if v, ok := d.Get(k); ok {
				if s, ok := AsString(v); ok {
					return s
				}
			}
		}
	}
	return fmt.Sprint(p)
}

// ErrorToPython maps an error to the (class_name, payload) of a ZEO error
// reply, with exactly the payload shapes the Python client needs
// (docs/protocol.md §3.4); a wrong shape hangs the Python caller. This is
// the one place the mapping is defined.
//
//	*stack.NotFoundError       POSKeyError, (oid,) or (oid, serial)
//	*stack.ConflictError       ConflictError, {message, oid, class_name: None, serials: (committed, read)}
//	stack.Conflicts            the first conflict, as above
//	*stack.ReadConflictError   ReadConflictError, the same dict
//	*stack.UndoError           UndoError, {_reason, _oid}
//	stack.ErrReadOnly          ReadOnlyError, ()
//	stack.ErrTxnState          StorageTransactionError, (message,)
//	stack.ErrNotSupported      Unsupported, (message,)
//	*stack.StorageError        its Class (default StorageError), (message,)
//	*RemoteError               its class and payload, unchanged
//	*ArgError                  builtins.TypeError, (message,)
//	context deadline           builtins.TimeoutError, (message,)
//	not-exist file errors      builtins.FileNotFoundError, (message,)
//	other OS errors            builtins.OSError, (message,)
//	anything else              builtins.RuntimeError, (message,)
//
// Messages are the full err.Error(), so the node path of a stack.OpError
// reaches the client.
func ErrorToPython(err error) (class string, payload any) {
	var (
		nf *stack.NotFoundError
		ce *stack.ConflictError
		cs stack.Conflicts
		rc *stack.ReadConflictError
		ue *stack.UndoError
		se *stack.StorageError
		re *RemoteError
		ae *ArgError
		pe *fs.PathError
	)
	msg := Tuple{err.Error()}
	switch {
	case errors.As(err, &re):
		return re.Class, re.Payload
	case errors.As(err, &nf):
		if nf.Msg != "" {
			return ClassPOSKeyError, Tuple{nf.Msg}
		}
		if nf.Tid != 0 {
			return ClassPOSKeyError, Tuple{nf.Oid.Bytes(), nf.Tid.Bytes()}
		}
		return ClassPOSKeyError, Tuple{nf.Oid.Bytes()}
	case errors.As(err, &ce):
		return ClassConflictError, conflictDict("database conflict error", ce.Oid, ce.ClassName, ce.Committed, ce.Read)
	case errors.As(err, &cs) && len(cs) > 0:
		return ClassConflictError, conflictDict("database conflict error", cs[0].Oid, cs[0].ClassName, cs[0].Committed, cs[0].Read)
	case errors.As(err, &rc):
		return ClassReadConflictError, conflictDict("database read conflict error", rc.Oid, "", rc.Committed, rc.Read)
	case errors.As(err, &ue):
		// Sent as MultipleUndoErrors, as FileStorage raises it: the only
		// undo error class the Python client rebuilds (others reach the
		// application as ServerException). Its message comes from _errs,
		// a list of (oid, reason).
		var oid any
		if ue.Oid != 0 {
			oid = ue.Oid.Bytes()
		}
		return ClassMultipleUndoErrors, Dict{{"_reason", ue.Reason}, {"_oid", oid}, {"_errs", []any{Tuple{oid, ue.Reason}}}}
	case errors.Is(err, stack.ErrReadOnly):
		return ClassReadOnlyError, Tuple{}
	case errors.Is(err, stack.ErrTxnState):
		return ClassStorageTransactionError, msg
	case errors.Is(err, stack.ErrNotSupported):
		return ClassUnsupported, msg
	case errors.As(err, &se):
		if se.Class != "" {
			return se.Class, msg
		}
		return ClassStorageError, msg
	case errors.As(err, &ae):
		return "builtins.TypeError", msg
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "builtins.TimeoutError", msg
	case errors.Is(err, fs.ErrNotExist):
		return "builtins.FileNotFoundError", msg
	case errors.As(err, &pe):
		return "builtins.OSError", msg
	}
	return "builtins.RuntimeError", msg
}

// conflictDict is the attribute dict of a Python (Read)ConflictError, keys
// in the order the Python server sends them.
func conflictDict(message string, oid stack.Oid, className string, committed, read stack.Tid) Dict {
	var class any
	if className != "" {
		class = className
	}
	return Dict{
		{"message", message},
		{"oid", oid.Bytes()},
		{"class_name", class},
		{"serials", Tuple{committed.Bytes(), read.Bytes()}},
	}
}

// ErrorFromPython maps the (class_name, payload) of an error reply from a
// Python ZEO server to the typed errors of package stack, so that
// stack.IsBackendFailure classifies it: POSKeyError, (Read)ConflictError,
// ReadOnlyError, StorageTransactionError, UndoError, Unsupported and other
// ZODB.POSException classes become logical answers; builtins.AttributeError
// (a method the server lacks) wraps stack.ErrNotSupported; every other
// class becomes a *RemoteError, a failure, naming the class and message.
// A payload that does not have the shape Python sends also gives a
// *RemoteError rather than a wrong typed error.
func ErrorFromPython(class string, payload any) error {
	args, isSeq := Seq(payload)
	dict, isDict := payload.(Dict)
	remote := &RemoteError{Class: class, Payload: payload}
	text := describePayload(payload)
	switch class {
	case ClassPOSKeyError:
		if !isSeq || len(args) < 1 {
			return remote
		}
		if msg, ok := args[0].(string); ok {
			// A message first (Python's sendBlob: "No blob file at …",
			// oid, serial): still a logical "not found", never a failure.
			nf := &stack.NotFoundError{Msg: msg}
			if len(args) > 1 {
				if b, ok := args[1].([]byte); ok && len(b) == 8 {
					nf.Oid, _ = stack.OidFromBytes(b)
				}
			}
			if len(args) > 2 {
				if b, ok := args[2].([]byte); ok && len(b) == 8 {
					nf.Tid, _ = stack.TidFromBytes(b)
				}
			}
			return nf
		}
		if len(args) > 2 {
			return remote
		}
		var nf stack.NotFoundError
		if b, ok := args[0].([]byte); ok && len(b) == 8 {
			nf.Oid, _ = stack.OidFromBytes(b)
		} else {
			return remote
		}
		if len(args) == 2 {
			if b, ok := args[1].([]byte); ok && len(b) == 8 {
				nf.Tid, _ = stack.TidFromBytes(b)
			}
		}
		return &nf
	case ClassConflictError, ClassReadConflictError:
		if !isDict {
			return remote
		}
		var oid stack.Oid
		var committed, read stack.Tid
		if v, ok := dict.Get("oid"); ok {
			if b, ok := v.([]byte); ok && len(b) == 8 {
				oid, _ = stack.OidFromBytes(b)
			}
		}
		if v, ok := dict.Get("serials"); ok {
			if s, ok := Seq(v); ok && len(s) == 2 {
				if b, ok := s[0].([]byte); ok && len(b) == 8 {
					committed, _ = stack.TidFromBytes(b)
				}
				if b, ok := s[1].([]byte); ok && len(b) == 8 {
					read, _ = stack.TidFromBytes(b)
				}
			}
		}
		if class == ClassReadConflictError {
			return &stack.ReadConflictError{Oid: oid, Committed: committed, Read: read}
		}
		ce := &stack.ConflictError{Oid: oid, Committed: committed, Read: read}
		if v, ok := dict.Get("class_name"); ok {
			ce.ClassName, _ = AsString(v)
		}
		return ce
	case ClassBTreesConflictError:
		return &stack.ConflictError{}
	case ClassReadOnlyError:
		if text == "" {
			return stack.ErrReadOnly
		}
		return fmt.Errorf("%w: %s", stack.ErrReadOnly, text)
	case ClassStorageTransactionError:
		return fmt.Errorf("%w: %s", stack.ErrTxnState, text)
	case ClassUnsupported:
		return fmt.Errorf("%w: %s", stack.ErrNotSupported, text)
	case "builtins.AttributeError", "exceptions.AttributeError":
		return fmt.Errorf("%w: %s: %s", stack.ErrNotSupported, class, text)
	case ClassUndoError, ClassMultipleUndoErrors:
		return undoErrorFrom(text, dict, isDict)
	}
	if strings.HasPrefix(class, "ZODB.") {
		return &stack.StorageError{Class: class, Msg: text}
	}
	return remote
}

// undoErrorFrom reads an UndoError or MultipleUndoErrors attribute dict.
// MultipleUndoErrors keeps (oid, reason) pairs in _errs; Python's
// constructor passes the first pair to UndoError in that order, so its
// _reason holds the oid and _oid the reason: _errs is the reliable part.
func undoErrorFrom(text string, dict Dict, isDict bool) *stack.UndoError {
	ue := &stack.UndoError{Reason: text}
	if !isDict {
		return ue
	}
	oidOf := func(v any) (stack.Oid, bool) {
		b, ok := v.([]byte)
		if !ok || len(b) != 8 {
			return 0, false
		}
		o, _ := stack.OidFromBytes(b)
		return o, true
	}
	if v, ok := dict.Get("_errs"); ok {
		if errs, ok := Seq(v); ok && len(errs) > 0 {
			if pair, ok := Seq(errs[0]); ok && len(pair) == 2 {
				ue.Oid, _ = oidOf(pair[0])
				if r, ok := AsString(pair[1]); ok {
					ue.Reason = r
				}
				return ue
			}
		}
	}
	if v, ok := dict.Get("_reason"); ok {
		if r, ok := v.(string); ok {
			ue.Reason = r
		}
	}
	if v, ok := dict.Get("_oid"); ok {
		ue.Oid, _ = oidOf(v)
	}
	return ue
}

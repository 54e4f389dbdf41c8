package wire

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/zeoraid/zeoraid/plugins/proto"
	"github.com/zeoraid/zeoraid/stack"
)

// Failure encodes err, one of the storage contract's errors, so that the
// host rebuilds the same typed error: logical answers stay logical, and
// anything else is a backend failure carried by its message. nil stays nil.
func Failure(err error) *proto.Failure {
	if err == nil {
		return nil
	}
	f := &proto.Failure{Message: err.Error()}
	inner := err
	var op *stack.OpError
	if errors.As(err, &op) {
		f.Op = &proto.Op{Node: op.Node, Op: op.Op}
		if op.Oid != nil {
			f.Op.HasOid, f.Op.Oid = true, uint64(*op.Oid)
		}
		if op.Tid != nil {
			f.Op.HasTid, f.Op.Tid = true, uint64(*op.Tid)
		}
		inner = op.Err
		f.Message = inner.Error()
	}
	var (
		nf *stack.NotFoundError
		ce *stack.ConflictError
		cs stack.Conflicts
		rc *stack.ReadConflictError
		ue *stack.UndoError
		se *stack.StorageError
	)
	switch {
	case errors.As(inner, &cs):
		f.Kind = proto.Failure_CONFLICTS
		for _, c := range cs {
			f.Conflicts = append(f.Conflicts, conflict(c))
		}
	case errors.As(inner, &ce):
		f.Kind = proto.Failure_CONFLICT
		f.Conflicts = []*proto.Conflict{conflict(ce)}
	case errors.As(inner, &rc):
		f.Kind, f.Oid, f.Tid, f.Read = proto.Failure_READ_CONFLICT, uint64(rc.Oid), uint64(rc.Committed), uint64(rc.Read)
	case errors.As(inner, &nf):
		f.Kind, f.Oid, f.Tid, f.Message = proto.Failure_NOT_FOUND, uint64(nf.Oid), uint64(nf.Tid), nf.Msg
	case errors.As(inner, &ue):
		f.Kind, f.Oid, f.Message = proto.Failure_UNDO, uint64(ue.Oid), ue.Reason
	case errors.Is(inner, stack.ErrEmptyData):
		f.Kind = proto.Failure_EMPTY_DATA
	case errors.As(inner, &se):
		f.Kind, f.Class, f.Message = proto.Failure_STORAGE, se.Class, se.Msg
	case errors.Is(inner, stack.ErrReadOnly):
		f.Kind = proto.Failure_READ_ONLY
	case errors.Is(inner, stack.ErrNotSupported):
		f.Kind = proto.Failure_NOT_SUPPORTED
	case errors.Is(inner, stack.ErrTxnState):
		f.Kind = proto.Failure_TXN_STATE
	case errors.Is(inner, stack.ErrClosed):
		f.Kind = proto.Failure_CLOSED
	case errors.Is(inner, context.DeadlineExceeded):
		f.Kind = proto.Failure_DEADLINE
	case errors.Is(inner, context.Canceled):
		f.Kind = proto.Failure_CANCELED
	}
	return f
}

func conflict(c *stack.ConflictError) *proto.Conflict {
	return &proto.Conflict{Oid: uint64(c.Oid), Committed: uint64(c.Committed), Read: uint64(c.Read), Data: c.Data, ClassName: c.ClassName}
}

// Error rebuilds the error Failure encoded; nil stays nil. A sentinel
// keeps its identity behind a message saying what the plugin said, so
// errors.Is still finds it.
func Error(f *proto.Failure) error {
	if f == nil {
		return nil
	}
	var err error
	msg := f.GetMessage()
	sentinel := func(s error) error {
		if msg == "" || msg == s.Error() {
			return s
		}
		return fmt.Errorf("%s: %w", msg, s)
	}
	switch f.GetKind() {
	case proto.Failure_CONFLICTS:
		cs := make(stack.Conflicts, 0, len(f.GetConflicts()))
		for _, c := range f.GetConflicts() {
			cs = append(cs, conflictFrom(c))
		}
		err = cs
	case proto.Failure_CONFLICT:
		if len(f.GetConflicts()) == 1 {
			err = conflictFrom(f.GetConflicts()[0])
		} else {
			err = fmt.Errorf("malformed conflict from the plugin: %s", msg)
		}
	case proto.Failure_READ_CONFLICT:
		err = &stack.ReadConflictError{Oid: stack.Oid(f.GetOid()), Committed: stack.Tid(f.GetTid()), Read: stack.Tid(f.GetRead())}
	case proto.Failure_NOT_FOUND:
		err = &stack.NotFoundError{Oid: stack.Oid(f.GetOid()), Tid: stack.Tid(f.GetTid()), Msg: msg}
	case proto.Failure_UNDO:
		err = &stack.UndoError{Oid: stack.Oid(f.GetOid()), Reason: msg}
	case proto.Failure_EMPTY_DATA:
		err = stack.ErrEmptyData
	case proto.Failure_STORAGE:
		err = &stack.StorageError{Class: f.GetClass(), Msg: msg}
	case proto.Failure_READ_ONLY:
		err = sentinel(stack.ErrReadOnly)
	case proto.Failure_NOT_SUPPORTED:
		err = sentinel(stack.ErrNotSupported)
	case proto.Failure_TXN_STATE:
		err = sentinel(stack.ErrTxnState)
	case proto.Failure_CLOSED:
		err = sentinel(stack.ErrClosed)
	case proto.Failure_DEADLINE:
		err = sentinel(context.DeadlineExceeded)
	case proto.Failure_CANCELED:
		err = sentinel(context.Canceled)
	default:
		err = errors.New(msg)
	}
	if op := f.GetOp(); op != nil {
		e := &stack.OpError{Node: op.GetNode(), Op: op.GetOp(), Err: err}
		if op.GetHasOid() {
			o := stack.Oid(op.GetOid())
			e.Oid = &o
		}
		if op.GetHasTid() {
			t := stack.Tid(op.GetTid())
			e.Tid = &t
		}
		err = e
	}
	return err
}

func conflictFrom(c *proto.Conflict) *stack.ConflictError {
	return &stack.ConflictError{Oid: stack.Oid(c.GetOid()), Committed: stack.Tid(c.GetCommitted()), Read: stack.Tid(c.GetRead()), Data: c.GetData(), ClassName: c.GetClassName()}
}

// Status encodes err as the gRPC status that ends a stream, with its
// Failure in the details.
func Status(err error) error {
	if err == nil {
		return nil
	}
	code := codes.Unknown
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	st := status.New(code, err.Error())
	if d, derr := st.WithDetails(Failure(err)); derr == nil {
		st = d
	}
	return st.Err()
}

// TransportError is a call that did not reach the plugin or whose answer
// never came back: the process died, its socket closed, the call timed
// out. It is always a backend failure.
type TransportError struct {
	Code codes.Code
	Msg  string
	Err  error // context.DeadlineExceeded or context.Canceled when the call's context ended
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("plugin call failed (%s): %s", e.Code, e.Msg)
}

func (e *TransportError) Unwrap() error { return e.Err }

// FromStatus turns an error of a gRPC call into the storage's error: the
// Failure its details carry, or a *TransportError.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return &TransportError{Code: codes.Unknown, Msg: err.Error(), Err: err}
	}
	for _, d := range st.Details() {
		if f, ok := d.(*proto.Failure); ok {
			return Error(f)
		}
	}
	te := &TransportError{Code: st.Code(), Msg: st.Message()}
	switch st.Code() {
	case codes.DeadlineExceeded:
		te.Err = context.DeadlineExceeded
	case codes.Canceled:
		te.Err = context.Canceled
	}
	return te
}

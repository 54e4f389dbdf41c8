package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"
)

func TestIsBackendFailure(t *testing.T) {
	oid := Oid(7)
	logical := []error{
		&NotFoundError{Oid: 1},
		&ConflictError{Oid: 1},
		Conflicts{{Oid: 1}},
		&ReadConflictError{Oid: 1},
		&UndoError{Reason: "no"},
		&StorageError{Msg: "quota"},
		ErrReadOnly, ErrNotSupported, ErrTxnState,
		context.Canceled,
		&OpError{Node: "main/1", Op: "loadBefore", Oid: &oid, Err: &NotFoundError{Oid: 7}},
		fmt.Errorf("wrapped: %w", ErrReadOnly),
	}
	for _, err := range logical {
		if IsBackendFailure(err) {
			t.Errorf("%v (%T) classified as a failure", err, err)
		}
	}
	failures := []error{
		io.ErrUnexpectedEOF, syscall.ECONNREFUSED, context.DeadlineExceeded, ErrClosed,
		errors.New("disk on fire"),
		&OpError{Node: "main/2", Op: "vote", Err: syscall.EIO},
	}
	for _, err := range failures {
		if !IsBackendFailure(err) {
			t.Errorf("%v (%T) not classified as a failure", err, err)
		}
	}
	if IsBackendFailure(nil) {
		t.Error("nil is not a failure")
	}
}

func TestOpErrorMessage(t *testing.T) {
	oid := Oid(7)
	err := &OpError{Node: "main/zeoclient 1", Op: "loadBefore", Oid: &oid, Err: syscall.ECONNREFUSED}
	want := "main/zeoclient 1: loadBefore 0x0000000000000007: connection refused"
	if err.Error() != want {
		t.Fatalf("got %q, want %q", err.Error(), want)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatal("OpError must unwrap")
	}
}

func TestWrapOp(t *testing.T) {
	oid, tid := Oid(7), Tid(0x03e5a1b2c3d4e5f6)
	var err error
	WrapOp(&err, "main/1", "loadBefore", &oid, &tid)
	if err != nil {
		t.Fatalf("nil wrapped into %v", err)
	}
	err = &NotFoundError{Oid: oid}
	WrapOp(&err, "main/1", "loadBefore", &oid, &tid)
	oid, tid = 8, 9 // the wrapper keeps the values it was given
	want := "main/1: loadBefore 0x0000000000000007 @0x03e5a1b2c3d4e5f6: object 0x0000000000000007 not found"
	if err.Error() != want {
		t.Fatalf("got %q, want %q", err.Error(), want)
	}
	var nf *NotFoundError
	if !errors.As(err, &nf) || IsBackendFailure(err) {
		t.Fatalf("%v: the logical answer is lost behind the wrapper", err)
	}
	// A parent passing a child's error on keeps the child's boundary.
	outer := fmt.Errorf("vote: %w", err)
	WrapOp(&outer, "main", "tpc_vote", nil, nil)
	if got := outer.Error(); got != "vote: "+want {
		t.Fatalf("wrapped twice: %q", got)
	}
	fail := error(syscall.EIO)
	WrapOp(&fail, "main/2", "tpc_finish", nil, nil)
	if fail.Error() != "main/2: tpc_finish: input/output error" || !IsBackendFailure(fail) || !errors.Is(fail, syscall.EIO) {
		t.Fatalf("failure wrapped as %q", fail)
	}
}

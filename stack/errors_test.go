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

// Package storagetest is the conformance suite every storage backend runs:
// storagetest.Run(t, harness) exercises the stack.Storage contract in
// groups modelled on ZODB's storage test mixins, and replays a seeded random
// history on the backend and on an oracle (builtin/mappingstorage, passed in
// by the harness so that stack/ never imports a builtin), comparing them at
// every tid. A group is skipped only when the backend does not report the
// capability it needs.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/stack"
)

// Harness tells the suite how to get storages.
type Harness struct {
	// Open returns a fresh, empty storage. The suite closes it.
	Open func(t testing.TB) stack.Storage
	// Reopen, if not nil, opens again the storage s after the suite closed
	// it, for the Persistence group; nil means the backend forgets
	// everything on Close and Persistence is skipped.
	Reopen func(t testing.TB, s stack.Storage) stack.Storage
	// ReadOnly, if not nil, opens the data of the storage s again, after
	// the suite closed it, as a read-only storage, for the ReadOnly group;
	// nil means the backend cannot reopen its data read-only (it forgets
	// everything on Close, or has no read-only mode) and ReadOnly is
	// skipped.
	ReadOnly func(t testing.TB, s stack.Storage) stack.Storage
	// Oracle returns a fresh reference storage (mappingstorage.New) the
	// RandomHistory group compares the backend with.
	Oracle func(t testing.TB) stack.Storage
	// Seed seeds RandomHistory; 0 means a fixed default.
	Seed int64
}

// Run runs every group as a subtest of t.
func Run(t *testing.T, h Harness) {
	groups := []struct {
		name string
		f    func(*testing.T, Harness)
	}{
		{"Basic", testBasic},
		{"LoadBefore", testLoadBefore},
		{"History", testHistory},
		{"NewOIDs", testNewOIDs},
		{"TwoPhaseCommit", testTwoPhaseCommit},
		{"Iterate", testIterate},
		{"RecordIter", testRecordIter},
		{"Restore", testRestore},
		{"Undo", testUndo},
		{"Pack", testPack},
		{"Blobs", testBlobs},
		{"ReadOnly", testReadOnly},
		{"Watch", testWatch},
		{"Concurrency", testConcurrency},
		{"AfterClose", testAfterClose},
		{"Persistence", testPersistence},
		{"Capabilities", testCapabilities},
		{"RandomHistory", testRandomHistory},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) { g.f(t, h) })
	}
}

// open opens a fresh storage closed at the end of the test.
func open(t *testing.T, h Harness) stack.Storage {
	t.Helper()
	s := h.Open(t)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func ctxOf(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// op is one write of a transaction.
type op struct {
	oid    stack.Oid
	serial stack.Tid
	data   []byte // nil with del: a deletion
	del    bool
}

func st(oid stack.Oid, serial stack.Tid, data string) op {
	return op{oid: oid, serial: serial, data: []byte(data)}
}

// tryCommit runs one whole transaction and returns its tid, or the first
// error (after aborting).
func tryCommit(ctx context.Context, s stack.Storage, meta stack.TxnMeta, ops ...op) (stack.Tid, error) {
	txn, err := s.Begin(ctx, meta)
	if err != nil {
		return 0, err
	}
	fail := func(err error) (stack.Tid, error) {
		_ = txn.Abort(ctx)
		return 0, err
	}
	for _, o := range ops {
		if o.del {
			d, ok := txn.(stack.DeleteTxn)
			if !ok {
				return fail(stack.ErrNotSupported)
			}
			err = d.Delete(ctx, o.oid, o.serial)
		} else {
			err = txn.Store(ctx, o.oid, o.serial, o.data)
		}
		if err != nil {
			return fail(err)
		}
	}
	if _, err := txn.Vote(ctx); err != nil {
		return fail(err)
	}
	tid, err := txn.Finish(ctx)
	if err != nil {
		return fail(err)
	}
	return tid, nil
}

// commit is tryCommit that fails the test on error.
func commit(t *testing.T, s stack.Storage, ops ...op) stack.Tid {
	t.Helper()
	tid, err := tryCommit(ctxOf(t), s, stack.TxnMeta{}, ops...)
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	return tid
}

// current loads oid's current revision, failing the test on error.
func current(t *testing.T, s stack.Storage, oid stack.Oid) stack.Revision {
	t.Helper()
	r, err := s.LoadBefore(ctxOf(t), oid, stack.MaxTid)
	if err != nil {
		t.Fatalf("load %s: %v", oid, err)
	}
	return r
}

func wantData(t *testing.T, s stack.Storage, oid stack.Oid, data string, serial stack.Tid) {
	t.Helper()
	r := current(t, s, oid)
	if string(r.Data) != data || r.Serial != serial || r.NextSerial != 0 {
		t.Fatalf("load %s = {%q serial %s next %s}, want {%q serial %s next 0}", oid, r.Data, r.Serial, r.NextSerial, data, serial)
	}
}

func isNotFound(err error) bool {
	var nf *stack.NotFoundError
	return errors.As(err, &nf)
}

func wantNotFound(t *testing.T, s stack.Storage, oid stack.Oid) {
	t.Helper()
	if r, err := s.LoadBefore(ctxOf(t), oid, stack.MaxTid); !isNotFound(err) {
		t.Fatalf("load %s = %+v, %v; want NotFoundError", oid, r, err)
	}
}

// conflictOids returns the oids of a ConflictError or Conflicts, or nil.
func conflictOids(err error) []stack.Oid {
	var cs stack.Conflicts
	if errors.As(err, &cs) {
		var oids []stack.Oid
		for _, c := range cs {
			oids = append(oids, c.Oid)
		}
		return oids
	}
	var ce *stack.ConflictError
	if errors.As(err, &ce) {
		return []stack.Oid{ce.Oid}
	}
	return nil
}

// record builds a ZODB-like data record: a class pickle and a state (a
// list) holding a persistent reference (bytes oid, BINPERSID) to each of
// refs, so pack's garbage collection sees them.
func record(tag string, refs ...stack.Oid) []byte {
	var b bytes.Buffer
	b.WriteString("\x80\x03cstoragetest\nRecord\nq\x00N\x86q\x01.")
	b.WriteString("\x80\x03](")
	for _, r := range refs {
		b.WriteString("C\x08")
		b.Write(r.Bytes())
		b.WriteByte('Q')
	}
	b.WriteByte('X')
	b.Write([]byte{byte(len(tag)), 0, 0, 0})
	b.WriteString(tag)
	b.WriteString("e.")
	return b.Bytes()
}

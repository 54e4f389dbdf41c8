package raidstorage_test

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/stack"
)

// errIO is the injected backend failure.
var errIO = errors.New("input/output error")

// fault is what a faulty child does at one method.
type fault struct {
	err   error         // returned (nil with hang or slow)
	hang  bool          // block until the call's context ends
	slow  time.Duration // sleep this long, then succeed
	after int           // let this many calls succeed first
}

// faulty is a mappingstorage child whose methods can be made to fail, hang
// or slow down: loadBefore, lastTransaction, tpc_begin, store, tpc_vote,
// tpc_finish, next (iterator).
type faulty struct {
	*mappingstorage.Storage
	mu     sync.Mutex
	faults map[string]*fault
}

func newFaulty() *faulty {
	return &faulty{Storage: mappingstorage.New("faulty", nil), faults: map[string]*fault{}}
}

func (f *faulty) set(method string, ft fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[method] = &ft
}

func (f *faulty) check(ctx context.Context, method string) error {
	f.mu.Lock()
	ft := f.faults[method]
	if ft != nil && ft.after > 0 {
		ft.after--
		ft = nil
	}
	f.mu.Unlock()
	switch {
	case ft == nil:
		return nil
	case ft.hang:
		<-ctx.Done()
		return ctx.Err()
	case ft.slow > 0:
		select {
		case <-time.After(ft.slow):
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	}
	return ft.err
}

func (f *faulty) LoadBefore(ctx context.Context, oid stack.Oid, before stack.Tid) (stack.Revision, error) {
	if err := f.check(ctx, "loadBefore"); err != nil {
		return stack.Revision{}, err
	}
	return f.Storage.LoadBefore(ctx, oid, before)
}

func (f *faulty) LastTransaction(ctx context.Context) (stack.Tid, error) {
	if err := f.check(ctx, "lastTransaction"); err != nil {
		return 0, err
	}
	return f.Storage.LastTransaction(ctx)
}

func (f *faulty) Begin(ctx context.Context, meta stack.TxnMeta) (stack.Txn, error) {
	if err := f.check(ctx, "tpc_begin"); err != nil {
		return nil, err
	}
	t, err := f.Storage.Begin(ctx, meta)
	if err != nil {
		return nil, err
	}
	return &faultyTxn{Txn: t, f: f}, nil
}

func (f *faulty) Iterate(ctx context.Context, start, stop stack.Tid) (stack.TxnIterator, error) {
	it, err := f.Storage.Iterate(ctx, start, stop)
	if err != nil {
		return nil, err
	}
	return &faultyIter{TxnIterator: it, f: f}, nil
}

type faultyIter struct {
	stack.TxnIterator
	f *faulty
}

func (it *faultyIter) Next(ctx context.Context) (stack.TxnRecord, bool, error) {
	if err := it.f.check(ctx, "next"); err != nil {
		return stack.TxnRecord{}, false, err
	}
	return it.TxnIterator.Next(ctx)
}

type faultyTxn struct {
	stack.Txn
	f *faulty
}

func (t *faultyTxn) Store(ctx context.Context, oid stack.Oid, serial stack.Tid, data []byte) error {
	if err := t.f.check(ctx, "store"); err != nil {
		return err
	}
	return t.Txn.Store(ctx, oid, serial, data)
}

func (t *faultyTxn) Vote(ctx context.Context) ([]stack.Oid, error) {
	if err := t.f.check(ctx, "tpc_vote"); err != nil {
		return nil, err
	}
	return t.Txn.Vote(ctx)
}

func (t *faultyTxn) Finish(ctx context.Context) (stack.Tid, error) {
	if err := t.f.check(ctx, "tpc_finish"); err != nil {
		_ = t.Txn.Abort(ctx)
		return 0, err
	}
	return t.Txn.Finish(ctx)
}

func (t *faultyTxn) Restore(ctx context.Context, oid stack.Oid, data []byte, prev stack.Tid) error {
	if err := t.f.check(ctx, "restore"); err != nil {
		return err
	}
	return t.Txn.(stack.RestoreTxn).Restore(ctx, oid, data, prev)
}

func (t *faultyTxn) Undo(ctx context.Context, id []byte) ([]stack.Oid, error) {
	return t.Txn.(stack.UndoTxn).Undo(ctx, id)
}

func (t *faultyTxn) Delete(ctx context.Context, oid stack.Oid, serial stack.Tid) error {
	return t.Txn.(stack.DeleteTxn).Delete(ctx, oid, serial)
}

package server

import (
	"fmt"
	"sync"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// iterators are a connection's open transaction and record iterators
// (docs/protocol.md §4.18). Ids come from one per-connection counter starting at 0.
type iterators struct {
	mu   sync.Mutex
	next int64
	txns map[int64]*txnIter
	recs map[int64]*recIter
}

type txnIter struct {
	it      stack.TxnIterator
	last    *stack.TxnRecord // the transaction most recently returned
	release func()           // ends the lease on the mount's root the iterator reads
}

// close closes the storage's iterator and ends its lease.
func (t *txnIter) close() {
	t.it.Close()
	t.release()
}

type recIter struct {
	records []stack.DataRecord
}

func (is *iterators) add() int64 {
	id := is.next
	is.next++
	return id
}

func (is *iterators) closeAll() {
	is.mu.Lock()
	defer is.mu.Unlock()
	for _, t := range is.txns {
		t.close()
	}
	is.txns, is.recs = nil, nil
}

func (c *conn) iteratorStart(id any, a zeoproto.Args) error {
	// An iterator lives across calls: it holds a lease on the root it
	// reads until it ends, so a reload never closes that root under it.
	st, release := c.ms.mount.Lease()
	kept := false
	defer func() {
		if !kept {
			release()
		}
	}()
	it, canIterate := stack.AsIterator(st)
	if !canIterate {
		return fmt.Errorf("%w: iteration", stack.ErrNotSupported)
	}
	var start, stop stack.Tid
	var err error
	if !a.IsNone(0) {
		if start, err = a.Tid(0); err != nil {
			return err
		}
	}
	if !a.IsNone(1) {
		if stop, err = a.Tid(1); err != nil {
			return err
		}
	}
	ti, err := it.Iterate(c.ctx, start, stop)
	if err != nil {
		return err
	}
	is := &c.iters
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.txns == nil {
		is.txns, is.recs = map[int64]*txnIter{}, map[int64]*recIter{}
	}
	iid := is.add()
	is.txns[iid] = &txnIter{it: ti, release: release}
	kept = true
	c.reply(id, iid)
	return nil
}

func (c *conn) iteratorNext(id any, a zeoproto.Args) error {
	iid, err := a.Int(0)
	if err != nil {
		return err
	}
	is := &c.iters
	is.mu.Lock()
	t, ok := is.txns[iid]
	is.mu.Unlock()
	if !ok {
		return &zeoproto.RemoteError{Class: "builtins.KeyError", Payload: zeoproto.Tuple{iid}}
	}
	rec, more, err := t.it.Next(c.ctx)
	if err != nil {
		return err
	}
	if !more {
		t.close()
		is.mu.Lock()
		delete(is.txns, iid)
		is.mu.Unlock()
		c.reply(id, nil)
		return nil
	}
	t.last = &rec
	status := rec.Status
	if status == 0 {
		status = ' '
	}
	c.reply(id, zeoproto.Tuple{rec.Tid, string([]byte{status}), nonNilBytes(rec.User), nonNilBytes(rec.Description), c.srv.extension(rec.Extension)})
	return nil
}

func (c *conn) iteratorRecordStart(id any, a zeoproto.Args) error {
	iid, err := a.Int(0)
	if err != nil {
		return err
	}
	tid, err := a.Tid(1)
	if err != nil {
		return err
	}
	is := &c.iters
	is.mu.Lock()
	defer is.mu.Unlock()
	t, ok := is.txns[iid]
	if !ok || t.last == nil || t.last.Tid != tid {
		return &zeoproto.RemoteError{Class: "builtins.Exception", Payload: zeoproto.Tuple{fmt.Sprintf("Out-of-order request for record iterator for transaction %s", tid)}}
	}
	riid := is.add()
	is.recs[riid] = &recIter{records: t.last.Records}
	c.reply(id, riid)
	return nil
}

func (c *conn) iteratorRecordNext(id any, a zeoproto.Args) error {
	riid, err := a.Int(0)
	if err != nil {
		return err
	}
	is := &c.iters
	is.mu.Lock()
	r, ok := is.recs[riid]
	if !ok {
		is.mu.Unlock()
		return &zeoproto.RemoteError{Class: "builtins.KeyError", Payload: zeoproto.Tuple{riid}}
	}
	if len(r.records) == 0 {
		delete(is.recs, riid)
		is.mu.Unlock()
		c.reply(id, nil)
		return nil
	}
	rec := r.records[0]
	r.records = r.records[1:]
	is.mu.Unlock()
	var data, dataTxn any
	if rec.Data != nil {
		data = rec.Data
	}
	if rec.DataTxn != 0 {
		dataTxn = rec.DataTxn
	}
	c.reply(id, zeoproto.Tuple{rec.Oid, rec.Tid, data, dataTxn})
	return nil
}

func (c *conn) iteratorGC(a zeoproto.Args) error {
	if err := a.Need(1, 1); err != nil {
		return err
	}
	ids, ok := zeoproto.Seq(a[0])
	if !ok {
		return &zeoproto.ArgError{Index: 0, Want: "a list of iterator ids"}
	}
	is := &c.iters
	is.mu.Lock()
	defer is.mu.Unlock()
	for _, v := range ids {
		n, ok := zeoproto.AsInt(v)
		if !ok {
			continue
		}
		if t, ok := is.txns[n]; ok {
			t.close()
			delete(is.txns, n)
		}
		delete(is.recs, n)
	}
	return nil
}

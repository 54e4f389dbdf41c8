package zeoclient

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// Iterate implements stack.Iterator over the remote storage
// (iterator_start/next, iterator_record_start/next, iterator_gc). The
// iterator lives on the current connection and fails once it is gone.
func (s *Storage) Iterate(ctx context.Context, start, stop stack.Tid) (stack.TxnIterator, error) {
	ss, err := s.current()
	if err == nil && !s.Capabilities().Iterate {
		err = fmt.Errorf("%w: the remote storage cannot iterate", stack.ErrNotSupported)
	}
	if err != nil {
		return nil, s.opErr("iterator_start", nil, nil, err)
	}
	it := &txnIter{c: ss.c, s: s}
	if err := it.start(ctx, start, stop); err != nil {
		return nil, s.opErr("iterator_start", nil, nil, err)
	}
	return it, nil
}

// txnIter is a remote transaction iterator.
type txnIter struct {
	c    *zeoproto.Client
	s    *Storage // for error context; nil inside catch-up
	iid  any
	done bool
}

func (it *txnIter) start(ctx context.Context, start, stop stack.Tid) error {
	var a, b any
	if start != 0 {
		a = start
	}
	if stop != 0 {
		b = stop
	}
	iid, err := it.c.Call(ctx, "iterator_start", a, b)
	if err != nil {
		return err
	}
	it.iid = iid
	return nil
}

// Next implements stack.TxnIterator.
func (it *txnIter) Next(ctx context.Context) (stack.TxnRecord, bool, error) {
	rec, ok, err := it.next(ctx)
	if err != nil && it.s != nil {
		err = it.s.opErr("iterator_next", nil, nil, err)
	}
	return rec, ok, err
}

func (it *txnIter) next(ctx context.Context) (stack.TxnRecord, bool, error) {
	if it.done {
		return stack.TxnRecord{}, false, nil
	}
	r, err := it.c.Call(ctx, "iterator_next", it.iid)
	if err != nil {
		return stack.TxnRecord{}, false, err
	}
	if r == nil {
		it.done = true
		return stack.TxnRecord{}, false, nil
	}
	t, ok := zeoproto.Seq(r)
	if !ok || len(t) != 5 {
		return stack.TxnRecord{}, false, fmt.Errorf("iterator_next returned %s", zeoproto.TypeName(r))
	}
	a := zeoproto.Args(t)
	var rec stack.TxnRecord
	if rec.Tid, err = a.Tid(0); err != nil {
		return rec, false, fmt.Errorf("iterator_next: %w", err)
	}
	status, _ := zeoproto.AsString(t[1])
	rec.Status = ' '
	if len(status) == 1 {
		rec.Status = status[0]
	}
	rec.User, _ = zeoproto.AsBytes(t[2])
	rec.Description, _ = zeoproto.AsBytes(t[3])
	if d, ok := t[4].(zeoproto.Dict); ok {
		rec.Extension, _ = zeoproto.ExtensionFromWire(d)
	} else if b, ok := t[4].([]byte); ok {
		rec.Extension = b
	}
	riid, err := it.c.Call(ctx, "iterator_record_start", it.iid, rec.Tid)
	if err != nil {
		return rec, false, err
	}
	for {
		r, err := it.c.Call(ctx, "iterator_record_next", riid)
		if err != nil {
			return rec, false, err
		}
		if r == nil {
			break
		}
		f, ok := zeoproto.Seq(r)
		if !ok || len(f) != 4 {
			return rec, false, fmt.Errorf("iterator_record_next returned %s", zeoproto.TypeName(r))
		}
		a := zeoproto.Args(f)
		var d stack.DataRecord
		if d.Oid, err = a.Oid(0); err == nil {
			d.Tid, err = a.Tid(1)
		}
		if err == nil && !a.IsNone(2) {
			d.Data, err = a.Bytes(2)
		}
		if err == nil && !a.IsNone(3) {
			d.DataTxn, err = a.Tid(3)
		}
		if err != nil {
			return rec, false, fmt.Errorf("iterator_record_next: %w", err)
		}
		rec.Records = append(rec.Records, d)
	}
	return rec, true, nil
}

// Close implements stack.TxnIterator: iterator_gc for an unfinished one.
func (it *txnIter) Close() error {
	if !it.done && it.iid != nil && it.c.Err() == nil {
		it.done = true
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = it.c.CallAsync(ctx, "iterator_gc", []any{it.iid})
	}
	it.done = true
	return nil
}

// RecordIterNext implements stack.RecordIterator (record_iternext). An
// empty remote storage (Python's ValueError "empty tree") answers
// *stack.NotFoundError.
func (s *Storage) RecordIterNext(ctx context.Context, from stack.Oid) (stack.DataRecord, stack.Oid, bool, error) {
	fail := func(err error) (stack.DataRecord, stack.Oid, bool, error) {
		return stack.DataRecord{}, 0, false, s.opErr("record_iternext", &from, nil, err)
	}
	if _, err := s.current(); err == nil && !s.Capabilities().RecordIter {
		return fail(fmt.Errorf("%w: the remote storage has no record_iternext", stack.ErrNotSupported))
	}
	r, err := s.call(ctx, "record_iternext", from)
	if err != nil {
		var re *zeoproto.RemoteError
		if errors.As(err, &re) && re.Class == "builtins.ValueError" {
			return fail(&stack.NotFoundError{Oid: from})
		}
		return fail(err)
	}
	t, ok := zeoproto.Seq(r)
	if !ok || len(t) != 4 {
		return fail(fmt.Errorf("server returned %s", zeoproto.TypeName(r)))
	}
	a := zeoproto.Args(t)
	var rec stack.DataRecord
	if rec.Oid, err = a.Oid(0); err == nil {
		rec.Tid, err = a.Tid(1)
	}
	if err == nil && !a.IsNone(2) {
		rec.Data, err = a.Bytes(2)
	}
	var next stack.Oid
	more := !a.IsNone(3)
	if err == nil && more {
		next, err = a.Oid(3)
	}
	if err != nil {
		return fail(err)
	}
	return rec, next, more, nil
}

// undoPage is how many undoLog entries one call asks for when filtering.
const undoPage = 100

// UndoLog implements stack.Undoer (undoLog). A match function cannot
// travel to the server: the log is then read in pages and filtered here.
func (s *Storage) UndoLog(ctx context.Context, first, last int, match func(stack.UndoInfo) bool) ([]stack.UndoInfo, error) {
	ss, err := s.current()
	if err == nil && !s.Capabilities().Undo {
		err = fmt.Errorf("%w: the remote storage cannot undo", stack.ErrNotSupported)
	}
	if err != nil {
		return nil, s.opErr("undoLog", nil, nil, err)
	}
	if match == nil {
		out, err := undoLog(ctx, ss.c, first, last)
		return out, s.opErr("undoLog", nil, nil, err)
	}
	want := last - first
	if last < 0 {
		want = -last
	}
	var out []stack.UndoInfo
	skip := first
	for off := 0; len(out) < want; off += undoPage {
		page, err := undoLog(ctx, ss.c, off, off+undoPage)
		if err != nil {
			return nil, s.opErr("undoLog", nil, nil, err)
		}
		for _, u := range page {
			if !match(u) {
				continue
			}
			if skip > 0 {
				skip--
				continue
			}
			if len(out) < want {
				out = append(out, u)
			}
		}
		if len(page) < undoPage {
			break
		}
	}
	return out, nil
}

func undoLog(ctx context.Context, c *zeoproto.Client, first, last int) ([]stack.UndoInfo, error) {
	r, err := c.Call(ctx, "undoLog", first, last)
	if err != nil {
		return nil, err
	}
	list, ok := zeoproto.Seq(r)
	if !ok {
		return nil, fmt.Errorf("undoLog returned %s", zeoproto.TypeName(r))
	}
	out := make([]stack.UndoInfo, 0, len(list))
	for _, it := range list {
		d, ok := it.(zeoproto.Dict)
		if !ok {
			return nil, fmt.Errorf("undoLog entry is %s", zeoproto.TypeName(it))
		}
		u := stack.UndoInfo{ID: dictBytes(d, "id"), User: dictBytes(d, "user_name"), Description: dictBytes(d, "description")}
		if v, ok := d.Get("size"); ok {
			n, _ := zeoproto.AsInt(v)
			u.Size = int(n)
		}
		u.Tid = undoTid(d, u.ID)
		u.Extension, _ = zeoproto.ExtensionFromWire(extensionOf(d, "id", "time", "user_name", "description", "size", "tid"))
		out = append(out, u)
	}
	return out, nil
}

// undoTid finds the tid of an undoLog entry: a "tid" key if the server
// sends one, else the id itself when it is a tid (8 bytes) or FileStorage's
// base64 of one, else the entry's time (to the resolution of a float).
func undoTid(d zeoproto.Dict, id []byte) stack.Tid {
	if b := dictBytes(d, "tid"); len(b) == 8 {
		t, _ := stack.TidFromBytes(b)
		return t
	}
	if len(id) == 8 {
		t, _ := stack.TidFromBytes(id)
		return t
	}
	if b, err := base64.StdEncoding.DecodeString(string(id)); err == nil && len(b) == 8 {
		t, _ := stack.TidFromBytes(b)
		return t
	}
	if v, ok := d.Get("time"); ok {
		if f, ok := v.(float64); ok {
			sec := int64(f)
			return stack.TidFromTime(time.Unix(sec, int64((f-float64(sec))*1e9)))
		}
	}
	return 0
}

// findUndo looks id up in the remote's undo log.
func (s *Storage) findUndo(ctx context.Context, ss *session, id []byte) (stack.UndoInfo, error) {
	for off := 0; ; off += undoPage {
		page, err := undoLog(ctx, ss.c, off, off+undoPage)
		if err != nil {
			return stack.UndoInfo{}, err
		}
		for _, u := range page {
			if string(u.ID) == string(id) {
				return u, nil
			}
		}
		if len(page) < undoPage {
			return stack.UndoInfo{}, &stack.UndoError{Reason: fmt.Sprintf("no undoable transaction with id %q", id)}
		}
	}
}

// Pack implements stack.Packer (pack, waiting for it to finish). ZEO's
// pack carries no garbage-collection flag: the remote storage's own
// configuration (FileStorage's pack-gc) decides, so Pack(gc false) is
// refused rather than silently collecting garbage.
func (s *Storage) Pack(ctx context.Context, t time.Time, gc bool) error {
	if !gc {
		return s.opErr("pack", nil, nil, fmt.Errorf("%w: pack without garbage collection cannot be requested over ZEO (the server's storage configuration decides)", stack.ErrNotSupported))
	}
	sec := float64(t.UnixNano()) / 1e9
	_, err := s.call(ctx, "pack", sec, true)
	if err == nil {
		// The pack removed old revisions and unreachable objects, which
		// the cache may hold (those this node committed, above all).
		s.cache.clear()
	}
	return s.opErr("pack", nil, nil, err)
}

// extensionOf is d without the standard keys: the transaction's own
// extension keys (or the "extension" dict MappingStorage's history sends).
func extensionOf(d zeoproto.Dict, std ...string) zeoproto.Dict {
	if v, ok := d.Get("extension"); ok {
		if e, ok := v.(zeoproto.Dict); ok {
			return e
		}
	}
	out := zeoproto.Dict{}
next:
	for _, it := range d {
		k, _ := zeoproto.AsString(it.Key)
		for _, s := range std {
			if k == s {
				continue next
			}
		}
		out = append(out, it)
	}
	return out
}

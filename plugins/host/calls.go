package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/zeoraid/zeoraid/plugins/internal/wire"
	"github.com/zeoraid/zeoraid/plugins/proto"
	"github.com/zeoraid/zeoraid/stack"
)

// The calls below forward one stack.Storage method each. Errors leave as
// the plugin's typed errors, inside an OpError naming the node (the
// plugin's own, when its storage added one).

func (s *Storage) wrap(err *error, op string, oid *stack.Oid, tid *stack.Tid) {
	stack.WrapOp(err, s.node.GetPath(), op, oid, tid)
}

func (s *Storage) LoadBefore(ctx context.Context, oid stack.Oid, before stack.Tid) (_ stack.Revision, err error) {
	defer s.wrap(&err, "loadBefore", &oid, &before)
	c, err := s.conn()
	if err != nil {
		return stack.Revision{}, err
	}
	rep, err := s.call(ctx, c, &proto.Call{Call: &proto.Call_LoadBefore{LoadBefore: &proto.LoadBeforeRequest{Oid: uint64(oid), Before: uint64(before)}}})
	r := rep.GetLoadBefore()
	if err = answer(err, r); err != nil {
		return stack.Revision{}, err
	}
	return stack.Revision{Data: r.GetData(), Serial: stack.Tid(r.GetSerial()), NextSerial: stack.Tid(r.GetNextSerial())}, nil
}

// call makes one call on c's Calls stream; a lost stream marks c broken.
func (s *Storage) call(ctx context.Context, c *conn, call *proto.Call) (*proto.Reply, error) {
	r, err := c.mux.call(ctx, call)
	if err != nil {
		s.noticeLost(c, err)
	}
	return r, err
}

// send sends a call that wants no reply on c's Calls stream.
func (s *Storage) send(ctx context.Context, c *conn, call *proto.Call) error {
	err := c.mux.send(ctx, call)
	if err != nil {
		s.noticeLost(c, err)
	}
	return err
}

// answer is the error of a call on the Calls stream: the stream's, or
// the Failure in its reply.
func answer(err error, r failed) error {
	if err != nil {
		return err
	}
	return wire.Error(r.GetFailure())
}

// failed is a response carrying a Failure.
type failed interface{ GetFailure() *proto.Failure }

// answer is the error of a unary call: the transport's, or the Failure in
// its response.
func (s *Storage) answer(c *conn, err error, r failed) error {
	if err != nil {
		return s.check(c, err)
	}
	return wire.Error(r.GetFailure())
}

func (s *Storage) LoadSerial(ctx context.Context, oid stack.Oid, serial stack.Tid) (_ []byte, err error) {
	defer s.wrap(&err, "loadSerial", &oid, &serial)
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	rep, err := s.call(ctx, c, &proto.Call{Call: &proto.Call_LoadSerial{LoadSerial: &proto.LoadSerialRequest{Oid: uint64(oid), Serial: uint64(serial)}}})
	r := rep.GetData()
	if err = answer(err, r); err != nil {
		return nil, err
	}
	return wire.Data(r.GetData(), false), nil
}

func (s *Storage) History(ctx context.Context, oid stack.Oid, size int) (_ []stack.HistoryEntry, err error) {
	defer s.wrap(&err, "history", &oid, nil)
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	r, err := c.rpc.History(ctx, &proto.HistoryRequest{Oid: uint64(oid), Size: int64(size)})
	if err = s.answer(c, err, r); err != nil {
		return nil, err
	}
	out := make([]stack.HistoryEntry, 0, len(r.GetEntries()))
	for _, h := range r.GetEntries() {
		out = append(out, stack.HistoryEntry{Tid: stack.Tid(h.GetTid()), User: h.GetUser(), Description: h.GetDescription(), Extension: h.GetExtension(), Size: int(h.GetSize())})
	}
	return out, nil
}

func (s *Storage) LastTransaction(ctx context.Context) (_ stack.Tid, err error) {
	defer s.wrap(&err, "lastTransaction", nil, nil)
	c, err := s.conn()
	if err != nil {
		return 0, err
	}
	rep, err := s.call(ctx, c, &proto.Call{Call: &proto.Call_LastTransaction{LastTransaction: &proto.Empty{}}})
	r := rep.GetTid()
	if err = answer(err, r); err != nil {
		return 0, err
	}
	return stack.Tid(r.GetTid()), nil
}

func (s *Storage) NewOIDs(ctx context.Context, n int) (_ []stack.Oid, err error) {
	defer s.wrap(&err, "new_oids", nil, nil)
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	rep, err := s.call(ctx, c, &proto.Call{Call: &proto.Call_NewOids{NewOids: &proto.NewOIDsRequest{N: int32(n)}}})
	r := rep.GetOids()
	if err = answer(err, r); err != nil {
		return nil, err
	}
	return wire.OidsFrom(r.GetOids()), nil
}

func (s *Storage) Info(ctx context.Context) (_ stack.Info, err error) {
	defer s.wrap(&err, "get_info", nil, nil)
	c, err := s.conn()
	if err != nil {
		return stack.Info{}, err
	}
	r, err := c.rpc.Info(ctx, &proto.Empty{})
	if err = s.answer(c, err, r); err != nil {
		return stack.Info{}, err
	}
	return stack.Info{Name: r.GetName(), Length: r.GetLength(), Size: r.GetSize()}, nil
}

func (s *Storage) Begin(ctx context.Context, meta stack.TxnMeta) (_ stack.Txn, err error) {
	defer s.wrap(&err, "tpc_begin", nil, nil)
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	if s.caps.ReadOnly {
		return nil, stack.ErrReadOnly
	}
	// The begin is sent without waiting: the plugin runs it first in the
	// transaction's queue, and the vote reports its failure.
	t := &txn{s: s, c: c, id: c.nextTxn.Add(1)}
	if err := t.write(ctx, &proto.Call{Call: &proto.Call_Begin{Begin: &proto.BeginRequest{Txn: t.id, Meta: wire.TxnMeta(meta)}}}); err != nil {
		return nil, err
	}
	return t, nil
}

// txn is a transaction open in one plugin process: when that process is
// gone, the transaction is too. Its writes (stores, checks, deletes,
// restores) are sent without waiting for an answer; the plugin runs them
// in order and reports their errors at the vote, as the contract allows.
type txn struct {
	s        *Storage
	c        *conn
	id       uint64
	unsynced bool     // writes were sent since the last answered call
	uploaded []string // host-side blob files sent to the plugin
}

// write sends one write call of the transaction.
func (t *txn) write(ctx context.Context, call *proto.Call) error {
	c, err := t.live()
	if err != nil {
		return err
	}
	t.unsynced = true
	return t.s.send(ctx, c, call)
}

// sync waits until the plugin ran the writes sent so far (a blob upload,
// which takes another stream, keeps its place behind them).
func (t *txn) sync(ctx context.Context) error {
	if !t.unsynced {
		return nil
	}
	c, err := t.live()
	if err != nil {
		return err
	}
	rep, err := t.s.call(ctx, c, &proto.Call{Call: &proto.Call_Sync{Sync: &proto.TxnRef{Txn: t.id}}})
	if err = answer(err, rep.GetResult()); err != nil {
		return err
	}
	t.unsynced = false
	return nil
}

// ref names the transaction in a call.
func (t *txn) ref() *proto.TxnRef { return &proto.TxnRef{Txn: t.id} }

// errTxnLost fails the calls of a transaction whose process died.
var errTxnLost = errors.New("the plugin process of this transaction is gone; the transaction is lost")

// live returns the transaction's conn while it is the node's current one.
func (t *txn) live() (*conn, error) {
	select {
	case <-t.c.broken:
		return nil, fmt.Errorf("%w: %w", errTxnLost, t.c.cause)
	default:
		return t.c, nil
	}
}

func (t *txn) Store(ctx context.Context, oid stack.Oid, serial stack.Tid, data []byte) (err error) {
	defer t.s.wrap(&err, "store", &oid, &serial)
	return t.write(ctx, &proto.Call{Call: &proto.Call_Store{Store: &proto.StoreRequest{Txn: t.id, Oid: uint64(oid), Serial: uint64(serial), Data: data}}})
}

func (t *txn) CheckCurrentSerial(ctx context.Context, oid stack.Oid, serial stack.Tid) (err error) {
	defer t.s.wrap(&err, "checkCurrentSerialInTransaction", &oid, &serial)
	return t.write(ctx, &proto.Call{Call: &proto.Call_CheckCurrentSerial{CheckCurrentSerial: &proto.StoreRequest{Txn: t.id, Oid: uint64(oid), Serial: uint64(serial)}}})
}

func (t *txn) Delete(ctx context.Context, oid stack.Oid, serial stack.Tid) (err error) {
	defer t.s.wrap(&err, "deleteObject", &oid, &serial)
	return t.write(ctx, &proto.Call{Call: &proto.Call_Delete{Delete: &proto.StoreRequest{Txn: t.id, Oid: uint64(oid), Serial: uint64(serial)}}})
}

func (t *txn) Restore(ctx context.Context, oid stack.Oid, data []byte, prevTxn stack.Tid) (err error) {
	defer t.s.wrap(&err, "restore", &oid, nil)
	return t.write(ctx, &proto.Call{Call: &proto.Call_Restore{Restore: &proto.RestoreRequest{Txn: t.id, Oid: uint64(oid), Data: data, DataNil: data == nil, PrevTxn: uint64(prevTxn)}}})
}

func (t *txn) Undo(ctx context.Context, id []byte) (_ []stack.Oid, err error) {
	defer t.s.wrap(&err, "undo", nil, nil)
	c, err := t.live()
	if err != nil {
		return nil, err
	}
	rep, err := t.s.call(ctx, c, &proto.Call{Call: &proto.Call_Undo{Undo: &proto.UndoRequest{Txn: t.id, Id: id}}})
	r := rep.GetOids()
	if err = answer(err, r); err != nil {
		return nil, err
	}
	t.unsynced = false
	return wire.OidsFrom(r.GetOids()), nil
}

func (t *txn) Vote(ctx context.Context) (_ []stack.Oid, err error) {
	defer t.s.wrap(&err, "tpc_vote", nil, nil)
	c, err := t.live()
	if err != nil {
		return nil, err
	}
	rep, err := t.s.call(ctx, c, &proto.Call{Call: &proto.Call_Vote{Vote: t.ref()}})
	r := rep.GetOids()
	if err = answer(err, r); err != nil {
		return nil, err
	}
	t.unsynced = false
	return wire.OidsFrom(r.GetOids()), nil
}

// Finish commits. The watchers have the transaction's event when it
// returns, as the contract wants: the plugin published it before it
// answered, and the host waits for it on the event stream.
func (t *txn) Finish(ctx context.Context) (_ stack.Tid, err error) {
	defer t.s.wrap(&err, "tpc_finish", nil, nil)
	c, err := t.live()
	if err != nil {
		return 0, err
	}
	rep, err := t.s.call(ctx, c, &proto.Call{Call: &proto.Call_Finish{Finish: t.ref()}})
	r := rep.GetTid()
	if err = answer(err, r); err != nil {
		return 0, err
	}
	t.removeUploads()
	tid := stack.Tid(r.GetTid())
	if err := t.s.awaitEvent(ctx, c, tid); err != nil {
		return tid, err
	}
	return tid, nil
}

// Abort aborts; a transaction whose process is gone is aborted already.
func (t *txn) Abort(ctx context.Context) (err error) {
	defer t.s.wrap(&err, "tpc_abort", nil, nil)
	defer t.removeUploads()
	c, err := t.live()
	if err != nil {
		return nil
	}
	rep, err := t.s.call(ctx, c, &proto.Call{Call: &proto.Call_Abort{Abort: t.ref()}})
	if err = answer(err, rep.GetResult()); err != nil && stack.IsBackendFailure(err) {
		select {
		case <-c.broken:
			return nil
		default:
		}
	}
	return err
}

func (t *txn) StoreBlob(ctx context.Context, oid stack.Oid, serial stack.Tid, data []byte, blobPath string) (err error) {
	defer t.s.wrap(&err, "storeBlob", &oid, &serial)
	return t.upload(ctx, &proto.BlobHeader{Txn: t.id, Oid: uint64(oid), Serial: uint64(serial), Data: data}, blobPath)
}

func (t *txn) RestoreBlob(ctx context.Context, oid stack.Oid, data []byte, blobPath string, prevTxn stack.Tid) (err error) {
	defer t.s.wrap(&err, "restoreBlob", &oid, nil)
	return t.upload(ctx, &proto.BlobHeader{Txn: t.id, Oid: uint64(oid), Data: data, DataNil: data == nil, Restore: true, PrevTxn: uint64(prevTxn)}, blobPath)
}

// Pack forwards a pack; blob files cached from before may be gone in the
// plugin now, so the cache is emptied.
func (s *Storage) Pack(ctx context.Context, t time.Time, gc bool) (err error) {
	defer s.wrap(&err, "pack", nil, nil)
	c, err := s.conn()
	if err != nil {
		return err
	}
	r, err := c.rpc.Pack(ctx, &proto.PackRequest{UnixNano: t.UnixNano(), Gc: gc})
	s.blobs.clear()
	return s.answer(c, err, r)
}

func (s *Storage) RecordIterNext(ctx context.Context, from stack.Oid) (_ stack.DataRecord, _ stack.Oid, _ bool, err error) {
	defer s.wrap(&err, "record_iternext", &from, nil)
	c, err := s.conn()
	if err != nil {
		return stack.DataRecord{}, 0, false, err
	}
	r, err := c.rpc.RecordIterNext(ctx, &proto.RecordIterNextRequest{From: uint64(from)})
	if err = s.answer(c, err, r); err != nil {
		return stack.DataRecord{}, 0, false, err
	}
	return wire.RecordFrom(r.GetRecord()), stack.Oid(r.GetNext()), r.GetMore(), nil
}

// UndoLog lists undoable transactions. Without match the plugin selects
// first..last itself; a match function cannot cross to the plugin, so the
// host then reads the plugin's list page by page and selects from the
// entries that match.
func (s *Storage) UndoLog(ctx context.Context, first, last int, match func(stack.UndoInfo) bool) (_ []stack.UndoInfo, err error) {
	defer s.wrap(&err, "undoLog", nil, nil)
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	if match == nil {
		return s.undoPage(ctx, c, first, last)
	}
	if last < 0 {
		last = first - last
	}
	var out []stack.UndoInfo
	matched := 0
	for from := 0; matched < last; from += wire.UndoLogPage {
		page, err := s.undoPage(ctx, c, from, from+wire.UndoLogPage)
		if err != nil {
			return nil, err
		}
		for _, u := range page {
			if !match(u) {
				continue
			}
			if matched >= first && matched < last {
				out = append(out, u)
			}
			matched++
		}
		if len(page) < wire.UndoLogPage {
			break
		}
	}
	return out, nil
}

func (s *Storage) undoPage(ctx context.Context, c *conn, first, last int) ([]stack.UndoInfo, error) {
	r, err := c.rpc.UndoLog(ctx, &proto.UndoLogRequest{First: int64(first), Last: int64(last)})
	if err = s.answer(c, err, r); err != nil {
		return nil, err
	}
	out := make([]stack.UndoInfo, 0, len(r.GetEntries()))
	for _, u := range r.GetEntries() {
		out = append(out, stack.UndoInfo{ID: u.GetId(), Tid: stack.Tid(u.GetTid()), User: u.GetUser(), Description: u.GetDescription(), Extension: u.GetExtension(), Size: int(u.GetSize())})
	}
	return out, nil
}

// Iterate streams the plugin's transactions.
func (s *Storage) Iterate(ctx context.Context, start, stop stack.Tid) (_ stack.TxnIterator, err error) {
	defer s.wrap(&err, "iterator", nil, nil)
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	it, err := newIterator(ctx, c.rpc, start, stop)
	if err != nil {
		return nil, s.check(c, err)
	}
	it.node = s.node.GetPath()
	return it, nil
}

// iterator reads one Iterate stream. The stream has its own context,
// cancelled by Close; each Next is bounded by its own ctx too.
type iterator struct {
	node   string
	stream proto.Storage_IterateClient
	cancel context.CancelFunc
	done   bool
}

func newIterator(ctx context.Context, rpc proto.StorageClient, start, stop stack.Tid) (*iterator, error) {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stream, err := rpc.Iterate(sctx, &proto.IterateRequest{Start: uint64(start), Stop: uint64(stop)})
	if err != nil {
		cancel()
		return nil, err
	}
	return &iterator{stream: stream, cancel: cancel}, nil
}

func (it *iterator) Next(ctx context.Context) (rec stack.TxnRecord, ok bool, err error) {
	if it.node != "" {
		defer stack.WrapOp(&err, it.node, "iterator.next", nil, nil)
	}
	if it.done {
		return stack.TxnRecord{}, false, nil
	}
	// The call's ctx ends the stream if it ends first.
	stopWatch := context.AfterFunc(ctx, it.cancel)
	defer stopWatch()
	item, err := it.stream.Recv()
	if err == io.EOF {
		it.done = true
		return stack.TxnRecord{}, false, nil
	}
	if err != nil {
		it.done = true
		if ctx.Err() != nil {
			return stack.TxnRecord{}, false, ctx.Err()
		}
		return stack.TxnRecord{}, false, wire.FromStatus(err)
	}
	hdr := item.GetTxn()
	if hdr == nil {
		it.done = true
		return stack.TxnRecord{}, false, errors.New("plugin iteration: a record without its transaction")
	}
	rec.TxnMeta = wire.TxnMetaFrom(hdr.GetMeta())
	rec.Records = make([]stack.DataRecord, 0, hdr.GetRecords())
	for range hdr.GetRecords() {
		item, err := it.stream.Recv()
		if err != nil {
			it.done = true
			if err == io.EOF {
				err = errors.New("plugin iteration ended inside a transaction")
			} else if ctx.Err() != nil {
				err = ctx.Err()
			} else {
				err = wire.FromStatus(err)
			}
			return stack.TxnRecord{}, false, err
		}
		r := item.GetRecord()
		if r == nil {
			it.done = true
			return stack.TxnRecord{}, false, errors.New("plugin iteration: a transaction with too few records")
		}
		rec.Records = append(rec.Records, wire.RecordFrom(r))
	}
	return rec, true, nil
}

func (it *iterator) Close() error {
	it.done = true
	it.cancel()
	return nil
}

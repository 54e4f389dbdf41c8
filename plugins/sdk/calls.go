package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/zeoraid/zeoraid/plugins/internal/wire"
	"github.com/zeoraid/zeoraid/plugins/proto"
	"github.com/zeoraid/zeoraid/stack"
)

// Calls serves the host's stream of frequent calls. Each call runs on its
// own goroutine, so a slow load does not hold up the others, except that
// the calls of one transaction run one after the other, in the order they
// came (txnState). A call's context ends at its deadline, when the host
// cancels it, or when the stream ends.
func (s *server) Calls(stream proto.Storage_CallsServer) error {
	cs := &callStream{s: s, stream: stream, running: map[uint64]context.CancelFunc{}}
	cs.out = wire.NewBatcher(func(replies []*proto.Reply) error {
		return stream.Send(&proto.ReplyBatch{Replies: replies})
	}, replySize)
	for {
		batch, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		for _, call := range batch.GetCalls() {
			cs.dispatch(call)
		}
	}
}

// replySize is the payload of a reply, for the batches' bound.
func replySize(r *proto.Reply) int {
	switch x := r.GetReply().(type) {
	case *proto.Reply_LoadBefore:
		return 32 + len(x.LoadBefore.GetData())
	case *proto.Reply_Data:
		return 32 + len(x.Data.GetData())
	case *proto.Reply_Oids:
		n := 32 + 8*len(x.Oids.GetOids())
		for _, c := range x.Oids.GetFailure().GetConflicts() {
			n += len(c.GetData())
		}
		return n
	case *proto.Reply_Result:
		n := 32
		for _, c := range x.Result.GetFailure().GetConflicts() {
			n += len(c.GetData())
		}
		return n
	}
	return 32
}

// callStream is one Calls stream: its running calls (by id, for cancels)
// and its sending side, which the calls' goroutines share.
type callStream struct {
	s      *server
	stream proto.Storage_CallsServer
	out    *wire.Batcher[*proto.Reply]

	mu      sync.Mutex
	running map[uint64]context.CancelFunc
}

// context makes the context of call c: the stream's, bounded by c's
// deadline, registered for a cancel when c wants a reply.
func (cs *callStream) context(c *proto.Call) (context.Context, context.CancelFunc) {
	ctx, cancel := cs.stream.Context(), context.CancelFunc(func() {})
	if d := c.GetDeadline(); d != 0 {
		ctx, cancel = context.WithDeadline(ctx, time.Unix(0, d))
	} else if c.GetId() != 0 {
		ctx, cancel = context.WithCancel(ctx)
	}
	if id := c.GetId(); id != 0 {
		cs.mu.Lock()
		cs.running[id] = cancel
		cs.mu.Unlock()
	}
	return ctx, cancel
}

// cancel ends the running call id, if it still runs.
func (cs *callStream) cancel(id uint64) {
	cs.mu.Lock()
	cancel := cs.running[id]
	cs.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// done ends call id (its context) and sends r as its answer, unless the
// host asked for none.
func (cs *callStream) done(id uint64, cancel context.CancelFunc, r *proto.Reply) {
	cancel()
	if id == 0 {
		return
	}
	cs.mu.Lock()
	delete(cs.running, id)
	cs.mu.Unlock()
	r.Id = id
	// An error means the stream is gone; the host sees that itself.
	_ = cs.out.Add(r)
}

// dispatch starts call c.
func (cs *callStream) dispatch(c *proto.Call) {
	if x, ok := c.GetCall().(*proto.Call_Cancel); ok {
		cs.cancel(x.Cancel)
		return
	}
	s, id := cs.s, c.GetId()
	ctx, cancel := cs.context(c)
	reply := func(r *proto.Reply) { cs.done(id, cancel, r) }
	result := func(err error) {
		reply(&proto.Reply{Reply: &proto.Reply_Result{Result: &proto.Result{Failure: wire.Failure(err)}}})
	}
	switch x := c.GetCall().(type) {
	case *proto.Call_LoadBefore:
		go func() {
			reply(&proto.Reply{Reply: &proto.Reply_LoadBefore{LoadBefore: s.LoadBefore(ctx, x.LoadBefore)}})
		}()
	case *proto.Call_LoadSerial:
		go func() { reply(&proto.Reply{Reply: &proto.Reply_Data{Data: s.LoadSerial(ctx, x.LoadSerial)}}) }()
	case *proto.Call_LastTransaction:
		go func() { reply(&proto.Reply{Reply: &proto.Reply_Tid{Tid: s.LastTransaction(ctx)}}) }()
	case *proto.Call_NewOids:
		go func() { reply(&proto.Reply{Reply: &proto.Reply_Oids{Oids: s.NewOIDs(ctx, x.NewOids)}}) }()
	case *proto.Call_Begin:
		txn := x.Begin.GetTxn()
		ts, err := s.openTxn(txn)
		if err != nil {
			reply(&proto.Reply{Reply: &proto.Reply_Begin{Begin: &proto.BeginResponse{Txn: txn, Failure: wire.Failure(err)}}})
			return
		}
		ts.enqueue(func() {
			err := ts.begin(ctx, s, x.Begin.GetMeta())
			reply(&proto.Reply{Reply: &proto.Reply_Begin{Begin: &proto.BeginResponse{Txn: txn, Failure: wire.Failure(err)}}})
		})
	case *proto.Call_Store, *proto.Call_CheckCurrentSerial, *proto.Call_Delete, *proto.Call_Restore, *proto.Call_Sync:
		ts, err := s.txn(txnOf(c))
		if err != nil {
			result(err)
			return
		}
		ts.enqueue(func() {
			err := ts.write(ctx, c)
			if id == 0 {
				// The host did not wait: the vote reports it.
				ts.noteDeferred(c, err)
			}
			result(err)
		})
	case *proto.Call_Undo:
		ts, err := s.txn(x.Undo.GetTxn())
		if err != nil {
			reply(&proto.Reply{Reply: &proto.Reply_Oids{Oids: &proto.OidsResponse{Failure: wire.Failure(err)}}})
			return
		}
		ts.enqueue(func() {
			var oids []stack.Oid
			ut, ok := ts.t.(stack.UndoTxn)
			switch {
			case ts.t == nil:
				err = ts.failed
			case !ok:
				err = stack.ErrNotSupported
			default:
				oids, err = ut.Undo(ctx, x.Undo.GetId())
			}
			reply(&proto.Reply{Reply: &proto.Reply_Oids{Oids: &proto.OidsResponse{Oids: wire.Oids(oids), Failure: wire.Failure(err)}}})
		})
	case *proto.Call_Vote:
		ts, err := s.txn(x.Vote.GetTxn())
		if err != nil {
			reply(&proto.Reply{Reply: &proto.Reply_Oids{Oids: &proto.OidsResponse{Failure: wire.Failure(err)}}})
			return
		}
		ts.enqueue(func() {
			oids, err := ts.vote(ctx)
			reply(&proto.Reply{Reply: &proto.Reply_Oids{Oids: &proto.OidsResponse{Oids: wire.Oids(oids), Failure: wire.Failure(err)}}})
		})
	case *proto.Call_Finish:
		ts, err := s.txn(x.Finish.GetTxn())
		if err != nil {
			reply(&proto.Reply{Reply: &proto.Reply_Tid{Tid: &proto.TidResponse{Failure: wire.Failure(err)}}})
			return
		}
		ts.enqueue(func() {
			if ts.t == nil {
				reply(&proto.Reply{Reply: &proto.Reply_Tid{Tid: &proto.TidResponse{Failure: wire.Failure(ts.failed)}}})
				return
			}
			tid, err := ts.t.Finish(ctx)
			if err == nil {
				s.dropTxn(x.Finish.GetTxn())
			}
			reply(&proto.Reply{Reply: &proto.Reply_Tid{Tid: &proto.TidResponse{Tid: uint64(tid), Failure: wire.Failure(err)}}})
		})
	case *proto.Call_Abort:
		ts, err := s.txn(x.Abort.GetTxn())
		if err != nil {
			// Abort is idempotent: a finished or aborted transaction is gone.
			result(nil)
			return
		}
		ts.enqueue(func() {
			var err error
			if ts.t != nil {
				err = ts.t.Abort(ctx)
			}
			s.dropTxn(x.Abort.GetTxn())
			result(err)
		})
	default:
		result(errors.New("a call this plugin does not know (is its plugins/sdk older than zeoraid?)"))
	}
}

// txnOf is the transaction a write call belongs to.
func txnOf(c *proto.Call) uint64 {
	switch x := c.GetCall().(type) {
	case *proto.Call_Store:
		return x.Store.GetTxn()
	case *proto.Call_CheckCurrentSerial:
		return x.CheckCurrentSerial.GetTxn()
	case *proto.Call_Delete:
		return x.Delete.GetTxn()
	case *proto.Call_Restore:
		return x.Restore.GetTxn()
	case *proto.Call_Sync:
		return x.Sync.GetTxn()
	}
	return 0
}

func (s *server) LoadBefore(ctx context.Context, r *proto.LoadBeforeRequest) *proto.LoadBeforeResponse {
	st, err := s.storage()
	if err != nil {
		return &proto.LoadBeforeResponse{Failure: wire.Failure(err)}
	}
	rev, err := st.LoadBefore(ctx, stack.Oid(r.GetOid()), stack.Tid(r.GetBefore()))
	if err != nil {
		return &proto.LoadBeforeResponse{Failure: wire.Failure(err)}
	}
	return &proto.LoadBeforeResponse{Data: rev.Data, Serial: uint64(rev.Serial), NextSerial: uint64(rev.NextSerial)}
}

func (s *server) LoadSerial(ctx context.Context, r *proto.LoadSerialRequest) *proto.DataResponse {
	st, err := s.storage()
	if err != nil {
		return &proto.DataResponse{Failure: wire.Failure(err)}
	}
	data, err := st.LoadSerial(ctx, stack.Oid(r.GetOid()), stack.Tid(r.GetSerial()))
	return &proto.DataResponse{Data: data, Failure: wire.Failure(err)}
}

func (s *server) LastTransaction(ctx context.Context) *proto.TidResponse {
	st, err := s.storage()
	if err != nil {
		return &proto.TidResponse{Failure: wire.Failure(err)}
	}
	tid, err := st.LastTransaction(ctx)
	return &proto.TidResponse{Tid: uint64(tid), Failure: wire.Failure(err)}
}

func (s *server) NewOIDs(ctx context.Context, r *proto.NewOIDsRequest) *proto.OidsResponse {
	st, err := s.storage()
	if err != nil {
		return &proto.OidsResponse{Failure: wire.Failure(err)}
	}
	oids, err := st.NewOIDs(ctx, int(r.GetN()))
	return &proto.OidsResponse{Oids: wire.Oids(oids), Failure: wire.Failure(err)}
}

// openTxn registers the transaction id the host chose; its begin runs
// first in its queue.
func (s *server) openTxn(id uint64) (*txnState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil {
		return nil, errNotOpen
	}
	if _, dup := s.txns[id]; dup || id == 0 {
		return nil, fmt.Errorf("transaction id %d is in use: %w", id, stack.ErrTxnState)
	}
	ts := &txnState{}
	s.txns[id] = ts
	return ts, nil
}

// begin starts the storage's transaction. When it fails, the
// transaction's later calls fail with its error.
func (ts *txnState) begin(ctx context.Context, s *server, meta *proto.TxnMeta) error {
	st, err := s.storage()
	if err == nil {
		ts.t, err = st.Begin(ctx, wire.TxnMetaFrom(meta))
	}
	if err != nil {
		ts.failed = err
	}
	return err
}

func (s *server) dropTxn(id uint64) {
	s.mu.Lock()
	delete(s.txns, id)
	s.mu.Unlock()
}

// txnState is an open transaction with the queue its calls run in: the
// host sends a transaction's stores without waiting for their answers,
// and they must run in the order they were sent, before the vote.
type txnState struct {
	t      stack.Txn // nil until begin ran, and when it failed
	failed error     // why begin failed
	// deferred are the errors of calls the host did not wait for; the
	// vote reports them. Only the queue's functions touch it.
	deferred []error

	mu      sync.Mutex
	queue   []func()
	running bool
}

// enqueue runs f after the functions enqueued before it.
func (ts *txnState) enqueue(f func()) {
	ts.mu.Lock()
	ts.queue = append(ts.queue, f)
	if ts.running {
		ts.mu.Unlock()
		return
	}
	ts.running = true
	ts.mu.Unlock()
	go ts.run()
}

// run runs the queue until it is empty.
func (ts *txnState) run() {
	for {
		ts.mu.Lock()
		if len(ts.queue) == 0 {
			ts.running = false
			ts.queue = nil
			ts.mu.Unlock()
			return
		}
		f := ts.queue[0]
		ts.queue[0] = nil
		ts.queue = ts.queue[1:]
		ts.mu.Unlock()
		f()
	}
}

// do runs f in the queue and returns its error.
func (ts *txnState) do(f func() error) error {
	done := make(chan error, 1)
	ts.enqueue(func() { done <- f() })
	return <-done
}

// write runs one write call of the transaction.
func (ts *txnState) write(ctx context.Context, c *proto.Call) error {
	if ts.t == nil {
		return ts.failed
	}
	switch x := c.GetCall().(type) {
	case *proto.Call_Store:
		r := x.Store
		return ts.t.Store(ctx, stack.Oid(r.GetOid()), stack.Tid(r.GetSerial()), r.GetData())
	case *proto.Call_CheckCurrentSerial:
		r := x.CheckCurrentSerial
		return ts.t.CheckCurrentSerial(ctx, stack.Oid(r.GetOid()), stack.Tid(r.GetSerial()))
	case *proto.Call_Delete:
		d, ok := ts.t.(stack.DeleteTxn)
		if !ok {
			return stack.ErrNotSupported
		}
		return d.Delete(ctx, stack.Oid(x.Delete.GetOid()), stack.Tid(x.Delete.GetSerial()))
	case *proto.Call_Restore:
		rt, ok := ts.t.(stack.RestoreTxn)
		if !ok {
			return stack.ErrNotSupported
		}
		r := x.Restore
		return rt.Restore(ctx, stack.Oid(r.GetOid()), wire.Data(r.GetData(), r.GetDataNil()), stack.Tid(r.GetPrevTxn()))
	}
	return nil // sync: its place in the queue is all it asks
}

// noteDeferred keeps the error of a write call the host did not wait
// for. A store that succeeds cancels an earlier conflict of its oid, as if
// the conflict had been answered at once (a client stores its resolution
// of a conflict in the same transaction).
func (ts *txnState) noteDeferred(c *proto.Call, err error) {
	if err != nil {
		ts.deferred = append(ts.deferred, err)
		return
	}
	st := c.GetStore()
	if st == nil {
		return
	}
	kept := ts.deferred[:0]
	for _, d := range ts.deferred {
		var ce *stack.ConflictError
		if errors.As(d, &ce) && ce.Oid == stack.Oid(st.GetOid()) {
			continue
		}
		kept = append(kept, d)
	}
	ts.deferred = kept
}

// vote votes, reporting first the errors of the stores the host did not
// wait for: a write conflict joins the vote's conflicts (all of them, as
// the contract wants), any other error fails the vote.
func (ts *txnState) vote(ctx context.Context) ([]stack.Oid, error) {
	if ts.t == nil {
		return nil, ts.failed
	}
	var conflicts stack.Conflicts
	for _, err := range ts.deferred {
		var ce *stack.ConflictError
		if !errors.As(err, &ce) {
			return nil, err
		}
		conflicts = append(conflicts, ce)
	}
	oids, err := ts.t.Vote(ctx)
	if len(conflicts) == 0 {
		return oids, err
	}
	var more stack.Conflicts
	if errors.As(err, &more) {
		conflicts = append(conflicts, more...)
	} else if err != nil {
		return nil, err
	}
	return nil, conflicts
}

package host

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"

	"github.com/zeoraid/zeoraid/plugins/internal/wire"
	"github.com/zeoraid/zeoraid/plugins/proto"
)

// mux multiplexes the frequent calls on the plugin's Calls stream: many
// callers send at once, each waits for the reply with its id. One stream
// message each way per call costs much less than a unary RPC (no HTTP/2
// stream to open, no headers and trailers), and calls that want no reply
// (a transaction's stores) cost no round trip at all.
type mux struct {
	stream proto.Storage_CallsClient
	out    *wire.Batcher[*proto.Call]

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan *proto.Reply
	// ended is closed when the stream is gone, err says why.
	ended chan struct{}
	err   error
}

// replyChans recycles the one-reply channels of calls.
var replyChans = sync.Pool{New: func() any { return make(chan *proto.Reply, 1) }}

// newMux starts the Calls stream on rpc; ctx ends it. lost is called once
// if the stream ends on its own (the process is gone).
func newMux(ctx context.Context, rpc proto.StorageClient, lost func(error)) (*mux, error) {
	stream, err := rpc.Calls(ctx)
	if err != nil {
		return nil, err
	}
	m := &mux{stream: stream, pending: map[uint64]chan *proto.Reply{}, ended: make(chan struct{})}
	m.out = wire.NewBatcher(func(calls []*proto.Call) error {
		return stream.Send(&proto.CallBatch{Calls: calls})
	}, callSize)
	go m.receive(ctx, lost)
	return m, nil
}

// receive hands each reply to its caller until the stream ends.
func (m *mux) receive(ctx context.Context, lost func(error)) {
	for {
		batch, err := m.stream.Recv()
		if err != nil {
			m.mu.Lock()
			m.err = &wire.TransportError{Code: codes.Unavailable, Msg: "the plugin's call stream ended: " + wire.FromStatus(err).Error()}
			close(m.ended)
			m.mu.Unlock()
			if ctx.Err() == nil {
				lost(m.err)
			}
			return
		}
		for _, r := range batch.GetReplies() {
			m.mu.Lock()
			ch := m.pending[r.GetId()]
			delete(m.pending, r.GetId())
			m.mu.Unlock()
			if ch != nil {
				ch <- r
			}
		}
	}
}

// callSize is the payload of a call, for the batches' bound.
func callSize(c *proto.Call) int {
	switch x := c.GetCall().(type) {
	case *proto.Call_Store:
		return 32 + len(x.Store.GetData())
	case *proto.Call_Restore:
		return 32 + len(x.Restore.GetData())
	case *proto.Call_Begin:
		m := x.Begin.GetMeta()
		return 32 + len(m.GetUser()) + len(m.GetDescription()) + len(m.GetExtension())
	}
	return 32
}

// send sends c, which wants no reply.
func (m *mux) send(ctx context.Context, c *proto.Call) error {
	if d, ok := ctx.Deadline(); ok {
		c.Deadline = d.UnixNano()
	}
	return m.write(c)
}

func (m *mux) write(c *proto.Call) error {
	if err := m.out.Add(c); err != nil {
		<-m.ended // Send fails only on a broken stream; Recv sees why
		return m.err
	}
	return nil
}

// call sends c and waits for its reply, up to ctx: a call whose context
// ends first is cancelled in the plugin and fails with ctx's error, as a
// transport failure (the plugin did not answer).
func (m *mux) call(ctx context.Context, c *proto.Call) (*proto.Reply, error) {
	if err := ctx.Err(); err != nil {
		return nil, canceled(err)
	}
	ch := replyChans.Get().(chan *proto.Reply)
	m.mu.Lock()
	if m.err != nil {
		m.mu.Unlock()
		replyChans.Put(ch)
		return nil, m.err
	}
	m.nextID++
	id := m.nextID
	m.pending[id] = ch
	m.mu.Unlock()
	c.Id = id
	if d, ok := ctx.Deadline(); ok {
		c.Deadline = d.UnixNano()
	}
	if err := m.write(c); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		replyChans.Put(ch)
		return r, nil
	case <-ctx.Done():
		m.mu.Lock()
		_, waiting := m.pending[id]
		delete(m.pending, id)
		m.mu.Unlock()
		if waiting {
			replyChans.Put(ch)
			// Best effort: the plugin stops working on it.
			_ = m.write(&proto.Call{Call: &proto.Call_Cancel{Cancel: id}})
		} // else the reply is on its way into ch, which is dropped
		return nil, canceled(ctx.Err())
	case <-m.ended:
		return nil, m.err
	}
}

// canceled is the failure of a call whose context ended before the
// plugin answered.
func canceled(err error) error {
	code := codes.Canceled
	if err == context.DeadlineExceeded {
		code = codes.DeadlineExceeded
	}
	return &wire.TransportError{Code: code, Msg: err.Error(), Err: err}
}

package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// maxBacklog is how many bytes of replies and invalidations may wait for a
// client that does not read; past it the client is disconnected rather
// than letting the server's memory grow without bound.
const maxBacklog = 1 << 30

// conn is one client connection. One goroutine reads and dispatches its
// messages strictly in arrival order (async stores must precede the vote
// that follows them); one goroutine writes its outgoing queue. Calls that
// may wait long (a vote waiting for the commit lock, pack, undoLog) run on
// their own goroutines and reply when done; replies are matched by msgid.
type conn struct {
	srv   *Server
	nc    net.Conn
	codec zeoproto.Codec
	log   logrus.FieldLogger

	ctx    context.Context // cancelled when the connection closes
	cancel context.CancelFunc

	outMu      sync.Mutex
	out        [][]byte // encoded frames waiting for the writer
	outBytes   int
	outSignal  chan struct{}
	closedOnce sync.Once

	// Registration state, set once by register.
	ms       *mountState
	readOnly bool
	label    string

	// Transaction and iterator state; touched by the reader goroutine and,
	// for the vote and finish, by the goroutine running them (never both
	// at once: the client waits for the vote reply before going on).
	txMu  sync.Mutex
	tx    *txnBuffer
	iters iterators
}

func newConn(srv *Server, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(srv.ctx)
	c := &conn{
		srv: srv, nc: nc, ctx: ctx, cancel: cancel,
		outSignal: make(chan struct{}, 1),
		log:       srv.log.WithField("peer", nc.RemoteAddr().String()),
	}
	return c
}

// serve runs the connection until it closes.
func (c *conn) serve() {
	defer c.close("connection ended")
	fr := zeoproto.NewFrameReader(c.nc, c.srv.opts.MaxFrame)
	fw := zeoproto.NewFrameWriter(c.nc)
	announce := zeoproto.Pickle
	if c.srv.opts.Msgpack {
		announce = zeoproto.Msgpack
	}
	_ = c.nc.SetDeadline(time.Now().Add(handshakeTimeout))
	codec, ruok, err := zeoproto.ServerHandshake(fr, fw, announce)
	_ = c.nc.SetDeadline(time.Time{})
	if err != nil {
		c.log.WithError(err).Debug("handshake failed")
		return
	}
	if ruok {
		if err := fw.WriteFrame(c.srv.ruokJSON()); err != nil {
			c.log.WithError(err).Debug("ruok reply failed")
		}
		return
	}
	c.codec = codec
	go c.writeLoop()
	for {
		p, err := fr.ReadFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) && c.ctx.Err() == nil {
				c.log.WithError(err).Info("closing connection: bad frame")
			}
			return
		}
		m, err := codec.Decode(p)
		if err != nil {
			c.log.WithError(err).Warn("closing connection: undecodable message")
			return
		}
		if m.IsHeartbeat() {
			continue
		}
		if err := c.dispatch(m); err != nil {
			c.log.WithError(err).WithField("method", m.Name).Warn("closing connection")
			return
		}
	}
}

// handshakeTimeout bounds the wait for the client's handshake reply.
const handshakeTimeout = 30 * time.Second

// close ends the connection once: aborts its transaction, releases the
// commit lock, leaves the broadcast set and closes its iterators.
func (c *conn) close(reason string) {
	c.closedOnce.Do(func() {
		c.cancel()
		_ = c.nc.Close()
		if c.ms != nil {
			c.ms.unregister(c)
		}
		c.txMu.Lock()
		if c.tx != nil {
			c.abortTxn(context.Background())
		}
		c.txMu.Unlock()
		c.iters.closeAll()
		c.outMu.Lock()
		c.out = nil
		c.outMu.Unlock()
		c.srv.forget(c)
		c.log.WithField("reason", reason).Debug("connection closed")
	})
}

// writeLoop writes queued frames until the connection closes. Frames
// queued together go out in one buffered write.
func (c *conn) writeLoop() {
	bw := bufio.NewWriterSize(c.nc, 64<<10)
	fw := zeoproto.NewFrameWriter(bw)
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.outSignal:
		}
		c.outMu.Lock()
		batch := c.out
		c.out = nil
		c.outBytes = 0
		c.outMu.Unlock()
		for _, p := range batch {
			if err := fw.WriteFrame(p); err != nil {
				c.close("write failed: " + err.Error())
				return
			}
		}
		if err := bw.Flush(); err != nil {
			c.close("write failed: " + err.Error())
			return
		}
	}
}

// send queues one message; messages are written in the order send is
// called.
func (c *conn) send(m zeoproto.Message) {
	p, err := c.codec.Encode(m)
	if err != nil {
		// An unencodable reply is our bug; the client would hang waiting
		// for it, so tell it through an error reply instead.
		c.log.WithError(err).WithField("method", m.Name).Error("cannot encode message")
		if m.IsReply() && !m.IsError() {
			c.send(zeoproto.NewErrorReply(m.ID, fmt.Errorf("server could not encode the reply: %v", err)))
		}
		return
	}
	c.outMu.Lock()
	if c.ctx.Err() != nil {
		c.outMu.Unlock()
		return
	}
	c.out = append(c.out, p)
	c.outBytes += len(p)
	over := c.outBytes > maxBacklog
	c.outMu.Unlock()
	if over {
		go c.close("client does not read its replies")
		return
	}
	select {
	case c.outSignal <- struct{}{}:
	default:
	}
}

func (c *conn) reply(id any, v any) { c.send(zeoproto.NewReply(id, v)) }

func (c *conn) replyErr(id any, err error) {
	if stack.IsBackendFailure(err) {
		c.log.WithError(err).Warn("storage failure")
	}
	c.send(zeoproto.NewErrorReply(id, err))
}

func (c *conn) sendAsync(name string, args ...any) { c.send(zeoproto.NewAsync(name, args...)) }

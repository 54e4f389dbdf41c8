package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/eventlog"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// maxBacklog is how many bytes of replies and invalidations may wait for a
// client that does not read; past it the client is disconnected rather
// than letting the server's memory grow without bound.
const maxBacklog = 1 << 30

// frameHeader is the length prefix of every frame, counted in the bytes
// read and written.
const frameHeader = 4

// conn is one client connection. One goroutine reads and dispatches its
// messages strictly in arrival order (async stores must precede the vote
// that follows them); one goroutine writes its outgoing queue. Calls that
// may wait long (a vote waiting for the commit lock, pack, undoLog) run on
// their own goroutines and reply when done; replies are matched by msgid.
// The reader goroutine alone releases what the connection holds, when it
// ends (see cleanup); close only makes it end.
type conn struct {
	srv   *Server
	nc    net.Conn
	codec zeoproto.Codec
	peer  string // the client's address, as log lines name the connection

	// label is what the client called itself with set_client_label; any
	// goroutine of the connection may log while the reader sets it.
	label atomic.Pointer[string]

	ctx    context.Context // cancelled when the connection closes
	cancel context.CancelFunc

	outMu      sync.Mutex
	out        [][]byte // encoded frames waiting for the writer
	outBytes   int
	outSignal  chan struct{}
	closedOnce sync.Once
	reason     atomic.Pointer[string] // why the server closed it, if it did

	// Registration state, set once by register on the reader goroutine,
	// before the connection joins the mount's broadcast set and before any
	// goroutine that reads it starts.
	ms       *mountState
	readOnly bool

	// Transaction and iterator state; touched by the reader goroutine and,
	// for the vote and finish, by the goroutine running them (never both
	// at once: the client waits for the vote reply before going on).
	txMu  sync.Mutex
	tx    *txnBuffer
	iters iterators

	// Synchronous calls whose reply comes later, for their latency
	// (metrics.go); npending lets a reply skip the lock when none is.
	pendMu   sync.Mutex
	pending  map[int64]pendingCall
	npending atomic.Int32
}

func newConn(srv *Server, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(srv.ctx)
	peer := nc.RemoteAddr().String()
	if peer == "" || peer == "@" { // a unix socket's client has no name
		peer = nc.LocalAddr().String()
	}
	return &conn{
		srv: srv, nc: nc, peer: peer, ctx: ctx, cancel: cancel,
		outSignal: make(chan struct{}, 1),
	}
}

// storageServerLogger and asyncioServerLogger are the Python loggers whose
// lines zeoraid's connections keep, in wording and level: what operators
// and ZEO's own tests look for in a runzeo log (a client's label, the
// transaction timeout, disconnects) is found in zeoraid's.
const (
	storageServerLogger = "ZEO.StorageServer"
	asyncioServerLogger = "ZEO.asyncio.server"
)

// levelCritical is Python's CRITICAL, which logrus lacks: its fatal level,
// which eventlog shows as CRITICAL, logged through Entry.Log, which (unlike
// Entry.Fatal) does not exit.
const levelCritical = logrus.FatalLevel

// log is the connection's logger: ZEO.StorageServer's lines, with the
// storage once registered. Messages go through labelled.
func (c *conn) log() *logrus.Entry {
	e := c.srv.log.WithField(eventlog.LoggerField, storageServerLogger)
	if c.ms != nil {
		e = e.WithField("storage", c.ms.mount.Name())
	}
	return e
}

// labelled prefixes msg with the connection's label as ZEO's StorageServer
// does: "(host:port) msg", or "(client-label host:port) msg" once the
// client named itself with set_client_label.
func (c *conn) labelled(msg string) string {
	if l := c.label.Load(); l != nil {
		return "(" + *l + " " + c.peer + ") " + msg
	}
	return "(" + c.peer + ") " + msg
}

// serve runs the connection until it closes, and then releases what it
// holds.
func (c *conn) serve() {
	defer c.cleanup()
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
		c.log().WithError(err).Debug(c.labelled("handshake failed"))
		return
	}
	if ruok {
		if err := fw.WriteFrame(c.srv.ruokJSON()); err != nil {
			c.log().WithError(err).Debug(c.labelled("ruok reply failed"))
		}
		return
	}
	c.srv.log.WithFields(logrus.Fields{eventlog.LoggerField: asyncioServerLogger, "peer": c.peer}).
		Infof("received handshake '%c%s'", codec.Protocol(), zeoproto.ProtocolVersion)
	c.codec = codec
	c.srv.spawn(c.writeLoop)
	for {
		p, err := fr.ReadFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) && c.ctx.Err() == nil {
				c.log().WithError(err).Info(c.labelled("closing connection: bad frame"))
			}
			return
		}
		m, err := codec.Decode(p)
		if err != nil {
			c.log().WithError(err).Warn(c.labelled("closing connection: undecodable message"))
			return
		}
		if m.IsHeartbeat() {
			continue
		}
		if c.ms != nil {
			c.ms.metrics.read.Add(int64(len(p) + frameHeader))
		}
		if err := c.dispatch(m); err != nil {
			c.log().WithError(err).WithField("method", m.Name).Warn(c.labelled("closing connection"))
			return
		}
	}
}

// handshakeTimeout bounds the wait for the client's handshake reply.
const handshakeTimeout = 30 * time.Second

// close ends the connection: it cancels the connection's calls and closes
// the socket, which ends the reader goroutine, and that releases what the
// connection holds (cleanup). Any goroutine may call it, any number of
// times; the first reason is logged with the disconnect ("" when the
// client ended it or the reader closed it after logging why).
func (c *conn) close(reason string) {
	c.closedOnce.Do(func() {
		if reason != "" {
			c.reason.Store(&reason)
		}
		c.cancel()
		_ = c.nc.Close()
	})
}

// logDisconnect logs the end of a handshaken connection as ZEO does, with
// the transaction it leaves and the server's reason for closing it.
func (c *conn) logDisconnect() {
	msg := "disconnected"
	c.txMu.Lock()
	if c.tx != nil {
		if c.tx.locked {
			msg = "disconnected during locked transaction"
		} else {
			msg = "disconnected during unlocked transaction"
		}
	}
	c.txMu.Unlock()
	e := c.log()
	if r := c.reason.Load(); r != nil {
		e = e.WithField("reason", *r)
	}
	e.Info(c.labelled(msg))
}

// cleanup runs on the reader goroutine as it ends: the connection's calls
// are cancelled, it leaves the broadcast set, aborts its transaction
// (releasing the commit lock) and closes its iterators.
func (c *conn) cleanup() {
	c.close("")
	if c.codec != nil {
		c.logDisconnect()
	}
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
		c.log().WithError(err).WithField("method", m.Name).Error(c.labelled("cannot encode message"))
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
	if c.ms != nil {
		c.ms.metrics.written.Add(int64(len(p) + frameHeader))
	}
	if over {
		c.close("client does not read its replies")
		return
	}
	select {
	case c.outSignal <- struct{}{}:
	default:
	}
}

func (c *conn) reply(id any, v any) {
	c.send(zeoproto.NewReply(id, v))
	c.settle(id)
}

func (c *conn) replyErr(id any, err error) {
	defer c.settle(id)
	if stack.IsBackendFailure(err) {
		c.log().WithError(err).Warn(c.labelled("storage failure"))
	}
	c.send(zeoproto.NewErrorReply(id, err))
}

func (c *conn) sendAsync(name string, args ...any) { c.send(zeoproto.NewAsync(name, args...)) }

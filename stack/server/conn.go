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
	"syscall"
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
// that follows them). Outgoing frames go through one queue, written in the
// order they were queued by whichever goroutine owns the socket: the
// reader itself, which writes its replies without blocking once it has no
// request left to read (a serial client's reply costs no hand-off to
// another goroutine), or the writer goroutine, which takes over whatever
// could not be written at once and everything queued by other goroutines
// (invalidations, late replies). Calls that may wait long (a vote waiting
// for the commit lock, pack, undoLog) run on their own goroutines and
// reply when done; replies are matched by msgid. The reader goroutine
// alone releases what the connection holds, when it ends (see cleanup);
// close only makes it end.
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

	// raw writes the socket without blocking (writeNow); nil when the
	// connection cannot (TLS): the writer goroutine writes everything.
	raw syscall.RawConn

	outMu    sync.Mutex
	out      []*frame // whole frames (or the unwritten rest of some), in order
	spare    []*frame // the array of a written batch, for the next
	outBytes int
	// writing: a goroutine owns the socket and writes out until it is
	// empty before giving it up. holding: the reader is answering a call
	// and writes out itself afterwards (flush), so a send wakes nobody.
	writing, holding bool
	outSignal        chan struct{} // hands the socket to the writer goroutine
	// The writer goroutine starts at the first hand-off (an idle
	// connection has none); writerDone is closed when it has ended.
	writerStarted bool
	writerDone    chan struct{}
	closedOnce    sync.Once
	reason        atomic.Pointer[string] // why the server closed it, if it did

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
	c := &conn{
		srv: srv, nc: nc, peer: peer, ctx: ctx, cancel: cancel,
		outSignal: make(chan struct{}, 1),
	}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	return c
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
	for {
		// When the next read waits for the client, what the calls
		// answered so far goes out now, in one write. While requests are
		// already buffered (a pipelining client), replies pile up and
		// leave together.
		c.flush(fr.Buffered() == 0)
		p, err := fr.Next()
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
			c.flush(true) // the answers to the calls before it still go out
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
	started := c.writerStarted
	c.writerStarted = true // none starts from now on
	c.outMu.Unlock()
	if started {
		<-c.writerDone
	}
	c.srv.forget(c)
}

// writeLoop writes the queue whenever it is handed the socket, until the
// queue is empty, and then gives the socket up. Frames queued together go
// out in one buffered write.
func (c *conn) writeLoop() {
	bw := bufio.NewWriterSize(c.nc, 64<<10) // made at the first hand-off

	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.outSignal:
		}
		for {
			c.outMu.Lock()
			batch := c.takeOut()
			if len(batch) == 0 {
				c.writing = false
				c.outMu.Unlock()
				break
			}
			c.outMu.Unlock()
			for _, f := range batch {
				if _, err := bw.Write(f.b); err != nil {
					c.close("write failed: " + err.Error())
					return
				}
				f.free()
			}
			c.giveBack(batch)
			if err := bw.Flush(); err != nil {
				c.close("write failed: " + err.Error())
				return
			}
		}
	}
}

// hold marks the reader as answering a call whose reply it queues before
// returning: sends wake nobody until flush. Only calls that answer before
// they return are held, so what other goroutines queue meanwhile waits at
// most for that call.
func (c *conn) hold() {
	c.outMu.Lock()
	c.holding = true
	c.outMu.Unlock()
}

// flushBytes is how much the reader lets held replies pile up while
// requests are still buffered.
const flushBytes = 64 << 10

// flush ends a hold, unless the reader is not idle (more requests are
// buffered) and little is held: the reader writes the queue itself when no
// other goroutine owns the socket, without blocking, and hands what the
// socket did not take (and what was queued meanwhile) to the writer
// goroutine.
func (c *conn) flush(idle bool) {
	c.outMu.Lock()
	if !c.holding || !idle && c.outBytes < flushBytes {
		c.outMu.Unlock()
		return
	}
	c.holding = false
	if c.writing || len(c.out) == 0 {
		c.outMu.Unlock()
		return
	}
	c.writing = true
	batch := c.takeOut()
	c.outMu.Unlock()
	rest := batch
	if c.raw != nil {
		rest = c.writeNow(batch)
	}
	c.outMu.Lock()
	if rest == nil {
		c.giveBackLocked(batch)
	}
	if len(rest) == 0 && len(c.out) == 0 {
		c.writing = false
		c.outMu.Unlock()
		return
	}
	for _, f := range rest {
		c.outBytes += len(f.b)
	}
	for _, f := range c.out {
		c.outBytes += len(f.b)
	}
	c.out = append(rest, c.out...)
	c.startWriterLocked()
	c.outMu.Unlock()
	c.outSignal <- struct{}{} // writing stays set: the writer owns the socket now
}

// startWriterLocked starts the writer goroutine unless it runs (or the
// connection is being released); outMu is held. The reader waits for it
// in cleanup, so the server's count of the reader covers it.
func (c *conn) startWriterLocked() {
	if c.writerStarted {
		return
	}
	c.writerStarted = true
	c.writerDone = make(chan struct{})
	go func() {
		defer close(c.writerDone)
		c.writeLoop()
	}()
}

// takeOut empties the queue and returns what it held; outMu is held.
func (c *conn) takeOut() []*frame {
	batch := c.out
	c.out, c.spare = c.spare[:0], nil
	c.outBytes = 0
	return batch
}

// giveBack keeps the array of a written batch for the next one.
func (c *conn) giveBack(batch []*frame) {
	c.outMu.Lock()
	c.giveBackLocked(batch)
	c.outMu.Unlock()
}

func (c *conn) giveBackLocked(batch []*frame) {
	clear(batch)
	if c.spare == nil && cap(batch) <= 1024 {
		c.spare = batch[:0]
	}
}

// writeNow writes batch to the socket as far as it takes it without
// waiting (one write system call for the whole batch), frees what it
// wrote and returns nil, or what is left for the writer goroutine. A
// failed write closes the connection.
func (c *conn) writeNow(batch []*frame) []*frame {
	f := batch[0]
	if len(batch) > 1 {
		n := 0
		for _, p := range batch {
			n += len(p.b)
		}
		f = newFrame(n)
		for _, p := range batch {
			f.b = append(f.b, p.b...)
			p.free()
		}
	}
	buf := f.b
	var done int
	var werr error
	err := c.raw.Write(func(fd uintptr) bool {
		for done < len(buf) {
			n, err := syscall.Write(int(fd), buf[done:])
			if n > 0 {
				done += n
			}
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				if err != syscall.EAGAIN {
					werr = err
				}
				break
			}
		}
		return true // never wait: the rest is the writer's
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		f.free()
		c.close("write failed: " + err.Error())
		return nil
	}
	if done == len(buf) {
		f.free()
		return nil
	}
	rest := &frame{b: append([]byte(nil), buf[done:]...)}
	f.free()
	return []*frame{rest}
}

// frame is an encoded outgoing frame (or what is left of frames), in a
// buffer that goes back to frames once written.
type frame struct{ b []byte }

// frames are the buffers replies are encoded into, back from the socket
// once written.
var frames = sync.Pool{New: func() any { return &frame{b: make([]byte, 0, 1024)} }}

// maxPooledFrame bounds the buffers kept for reuse: a reply carrying a
// large record does not pin its buffer.
const maxPooledFrame = 64 << 10

// newFrame returns an empty frame with room for n bytes.
func newFrame(n int) *frame {
	if n > maxPooledFrame {
		return &frame{b: make([]byte, 0, n)}
	}
	f := frames.Get().(*frame)
	if cap(f.b) < n {
		f.b = make([]byte, 0, n)
	}
	return f
}

func (f *frame) free() {
	if cap(f.b) > maxPooledFrame {
		return
	}
	f.b = f.b[:0]
	frames.Put(f)
}

// send queues one message; messages are written in the order send is
// called.
func (c *conn) send(m zeoproto.Message) {
	f := newFrame(0)
	var err error
	f.b, err = zeoproto.AppendMessageFrame(c.codec, f.b, m)
	if err != nil {
		f.free()
		// An unencodable reply is our bug; the client would hang waiting
		// for it, so tell it through an error reply instead.
		c.log().WithError(err).WithField("method", m.Name).Error(c.labelled("cannot encode message"))
		if m.IsReply() && !m.IsError() {
			c.send(zeoproto.NewErrorReply(m.ID, fmt.Errorf("server could not encode the reply: %v", err)))
		}
		return
	}
	n := len(f.b) // f is the writer's once queued
	c.outMu.Lock()
	if c.ctx.Err() != nil {
		c.outMu.Unlock()
		f.free()
		return
	}
	c.out = append(c.out, f)
	c.outBytes += n
	over := c.outBytes > maxBacklog
	wake := !c.writing && !c.holding
	if wake {
		c.writing = true
		c.startWriterLocked()
	}
	c.outMu.Unlock()
	if c.ms != nil {
		c.ms.metrics.written.Add(int64(n))
	}
	if over {
		c.close("client does not read its replies")
		return
	}
	if wake {
		c.outSignal <- struct{}{} // the writer owns the socket now
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

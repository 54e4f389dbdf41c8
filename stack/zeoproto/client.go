package zeoproto

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/zeoraid/zeoraid/stack"
)

// errClosing is why the connection of a closed Client is gone.
var errClosing = errors.New("connection closed")

// HeartbeatInterval is how often a client sends a heartbeat, as Python's
// ClientStorage does.
const HeartbeatInterval = 60 * time.Second

// ClientOptions configures Dial. The zero value is usable.
type ClientOptions struct {
	// TLS, if set, wraps the connection in TLS (the ZEO stream inside is
	// unchanged). Set ServerName (or InsecureSkipVerify) as crypto/tls
	// requires; a ZEO server with TLS also wants a client certificate.
	TLS *tls.Config
	// Logger receives connection events; fields addr and protocol are
	// added. Nil discards them.
	Logger logrus.FieldLogger
	// Handler receives every asynchronous message the server sends
	// (invalidateTransaction, info, receiveBlobStart/Chunk/Stop), in
	// arrival order, on the connection's reader goroutine: replies that
	// arrive after a message are delivered only once Handler returns,
	// which keeps invalidations and loads ordered (docs/protocol.md §6.6).
	// Handler must not block for long and must not make synchronous calls
	// on the same Client (they would wait for the blocked reader). Nil
	// drops such messages.
	Handler func(Message)
	// Heartbeat is the heartbeat interval: 0 means HeartbeatInterval, a
	// negative value disables heartbeats.
	Heartbeat time.Duration
	// MaxFrame bounds incoming frames (DefaultMaxFrame when 0).
	MaxFrame int
}

// DisconnectedError fails every call made on, or pending on, a connection
// that is gone (Python's ClientDisconnected). It names the server address
// and is a backend failure for stack.IsBackendFailure.
type DisconnectedError struct {
	Addr string
	Err  error // why: the read or write error, or the local Close
}

func (e *DisconnectedError) Error() string {
	return fmt.Sprintf("zeo %s: disconnected: %v", e.Addr, e.Err)
}

func (e *DisconnectedError) Unwrap() error { return e.Err }

// Client is a connection to a ZEO 5/6 server (Python runzeo or zeoraid)
// after the handshake. Its methods are safe for concurrent use: calls are
// pipelined, and replies are matched to calls by msgid whatever their
// order. A Client does not reconnect; when the connection drops, every
// pending and later call fails with a *DisconnectedError and Done is
// closed. Close releases it.
type Client struct {
	addr    string
	conn    net.Conn
	codec   Codec
	r       *FrameReader
	w       *FrameWriter
	log     logrus.FieldLogger
	handler func(Message)

	mu      sync.Mutex
	nextID  int64
	pending map[int64]chan Message
	err     error // non-nil once the connection is gone

	done chan struct{}
	wg   sync.WaitGroup
}

// SplitAddress turns a ZEO address into a network and an address for
// net.Dial: a string containing "/" is a Unix socket path, anything else
// host:port over TCP.
func SplitAddress(addr string) (network, address string) {
	if strings.Contains(addr, "/") {
		return "unix", addr
	}
	return "tcp", addr
}

// Dial connects to a ZEO server at address over network ("tcp", "tcp4",
// "tcp6" or "unix"), with TLS if opts.TLS is set, and performs the
// handshake, all bounded by ctx. The connection is not yet registered:
// call Register next.
func Dial(ctx context.Context, network, address string, opts ClientOptions) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, &DisconnectedError{Addr: address, Err: err}
	}
	if opts.TLS != nil {
		conn = tls.Client(conn, opts.TLS)
	}
	// Bound the TLS and ZEO handshakes by ctx.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	fr := NewFrameReader(conn, opts.MaxFrame)
	fw := NewFrameWriter(conn)
	var codec Codec
	if tc, ok := conn.(*tls.Conn); ok {
		err = tc.HandshakeContext(ctx)
	}
	if err == nil {
		codec, err = ClientHandshake(fr, fw)
	}
	if !stop() || err != nil {
		conn.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, &DisconnectedError{Addr: address, Err: err}
	}
	log := opts.Logger
	if log == nil {
		l := logrus.New()
		l.Out = io.Discard
		log = l
	}
	c := &Client{
		addr:    address,
		conn:    conn,
		codec:   clientCodec(codec),
		r:       fr,
		w:       fw,
		log:     log.WithFields(logrus.Fields{"addr": address, "protocol": string(codec.Protocol()) + ProtocolVersion}),
		handler: opts.Handler,
		pending: make(map[int64]chan Message),
		done:    make(chan struct{}),
	}
	c.wg.Add(1)
	go c.readLoop()
	if opts.Heartbeat >= 0 {
		every := opts.Heartbeat
		if every == 0 {
			every = HeartbeatInterval
		}
		c.wg.Add(1)
		go c.heartbeat(every)
	}
	return c, nil
}

// Addr is the server address the client dialed.
func (c *Client) Addr() string { return c.addr }

// Codec is the codec of the negotiated protocol; Protocol() tells 'Z' or
// 'M'. (In pickle mode it decodes server messages with DecodeReplyPickle.)
func (c *Client) Codec() Codec { return c.codec }

// Done is closed when the connection is gone.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns the *DisconnectedError once the connection is gone, else nil.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection, fails pending calls and waits for the
// client's goroutines to end. It must not be called from the Handler.
func (c *Client) Close() error {
	c.fail(errClosing)
	c.wg.Wait()
	return nil
}

// fail tears the connection down once, failing every pending call.
func (c *Client) fail(why error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = &DisconnectedError{Addr: c.addr, Err: why}
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	c.conn.Close()
	close(c.done)
	for _, ch := range pending {
		close(ch)
	}
	if why != errClosing {
		c.log.WithError(why).Warn("zeo connection lost")
	}
}

func (c *Client) readLoop() {
	defer c.wg.Done()
	for {
		p, err := c.r.ReadFrame()
		if err != nil {
			c.fail(err)
			return
		}
		m, err := c.codec.Decode(p)
		if err != nil {
			c.fail(fmt.Errorf("undecodable message from server: %w", err))
			return
		}
		if !m.IsReply() {
			if c.handler != nil {
				c.handler(m)
			}
			continue
		}
		id, ok := m.ID.(int64)
		c.mu.Lock()
		ch := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if !ok || ch == nil {
			c.log.WithField("msgid", m.ID).Warn("reply to no pending call")
			continue
		}
		ch <- m // buffered
	}
}

func (c *Client) heartbeat(every time.Duration) {
	defer c.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			if err := c.send(context.Background(), Heartbeat()); err != nil {
				return
			}
		}
	}
}

// send encodes and writes one message; ctx bounds the write. A failed or
// cancelled write may leave a partial frame, so it closes the connection.
func (c *Client) send(ctx context.Context, m Message) error {
	p, err := c.codec.Encode(m)
	if err != nil {
		return fmt.Errorf("zeo %s: %s: %w", c.addr, m.Name, err)
	}
	if err := c.Err(); err != nil {
		return err
	}
	if err := c.w.WriteFrameContext(ctx, p); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && err == ctxErr {
			// ctx ended before the frame was started: the stream is intact.
			return fmt.Errorf("zeo %s: %s: %w", c.addr, m.Name, err)
		}
		c.fail(err)
		return c.Err()
	}
	return nil
}

// Call makes a synchronous call and returns its result. An error reply
// comes back as the typed error ErrorFromPython maps it to; a lost
// connection as a *DisconnectedError; a cancelled ctx as ctx's error
// (the reply, if it comes, is dropped).
func (c *Client) Call(ctx context.Context, name string, args ...any) (any, error) {
	ch := make(chan Message, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()
	if err := c.send(ctx, NewCall(id, name, args...)); err != nil {
		c.forget(id)
		return nil, err
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return nil, c.Err()
		}
		if m.IsError() {
			return nil, errorReply(m.Args)
		}
		return m.Args, nil
	case <-ctx.Done():
		c.forget(id)
		return nil, fmt.Errorf("zeo %s: %s: %w", c.addr, name, ctx.Err())
	}
}

func (c *Client) forget(id int64) {
	c.mu.Lock()
	if c.pending != nil {
		delete(c.pending, id)
	}
	c.mu.Unlock()
}

// errorReply maps the (class_name, payload) of an error reply.
func errorReply(args any) error {
	s, ok := Seq(args)
	if ok && len(s) == 2 {
		if class, ok := AsString(s[0]); ok {
			return ErrorFromPython(class, s[1])
		}
	}
	return &RemoteError{Class: "<malformed error reply>", Payload: args}
}

// CallAsync sends an asynchronous call (tpc_begin, storea, …): no reply
// comes back. A Python server closes the connection when such a call
// fails, which later calls see as a *DisconnectedError.
func (c *Client) CallAsync(ctx context.Context, name string, args ...any) error {
	return c.send(ctx, NewAsync(name, args...))
}

// CallAsyncs sends several asynchronous calls (NewAsync messages) with
// one write, in order, as CallAsync sends each.
func (c *Client) CallAsyncs(ctx context.Context, calls ...Message) error {
	payloads := make([][]byte, len(calls))
	for i, m := range calls {
		p, err := c.codec.Encode(m)
		if err != nil {
			return fmt.Errorf("zeo %s: %s: %w", c.addr, m.Name, err)
		}
		payloads[i] = p
	}
	if err := c.Err(); err != nil {
		return err
	}
	if err := c.w.WriteFramesContext(ctx, payloads...); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && err == ctxErr {
			return fmt.Errorf("zeo %s: %w", c.addr, err)
		}
		c.fail(err)
		return c.Err()
	}
	return nil
}

// Register binds the connection to a storage (the first call on every
// connection) and returns the storage's last tid. A read-only server
// answers a writable registration with stack.ErrReadOnly; the caller may
// then register again read-only.
func (c *Client) Register(ctx context.Context, storage string, readOnly bool) (stack.Tid, error) {
	r, err := c.Call(ctx, "register", storage, readOnly)
	if err != nil {
		return 0, err
	}
	return tidResult("register", r)
}

// LastTransaction returns the storage's last tid (0 when empty).
func (c *Client) LastTransaction(ctx context.Context) (stack.Tid, error) {
	r, err := c.Call(ctx, "lastTransaction")
	if err != nil {
		return 0, err
	}
	return tidResult("lastTransaction", r)
}

// LoadBefore calls loadBefore(oid, before): the zero Revision when the
// object has no revision before `before`, a *stack.NotFoundError when it
// does not exist.
func (c *Client) LoadBefore(ctx context.Context, oid stack.Oid, before stack.Tid) (stack.Revision, error) {
	r, err := c.Call(ctx, "loadBefore", oid, before)
	if err != nil || r == nil {
		return stack.Revision{}, err
	}
	s, ok := Seq(r)
	if !ok || len(s) != 3 {
		return stack.Revision{}, fmt.Errorf("zeo %s: loadBefore: bad result %s", c.addr, TypeName(r))
	}
	a := Args(s)
	var rev stack.Revision
	if rev.Data, err = a.Bytes(0); err == nil {
		rev.Serial, err = a.Tid(1)
	}
	if err == nil && !a.IsNone(2) {
		rev.NextSerial, err = a.Tid(2)
	}
	if err != nil {
		return stack.Revision{}, fmt.Errorf("zeo %s: loadBefore result: %w", c.addr, err)
	}
	return rev, nil
}

// NewOIDs calls new_oids() and returns the server's batch of new oids.
func (c *Client) NewOIDs(ctx context.Context) ([]stack.Oid, error) {
	r, err := c.Call(ctx, "new_oids")
	if err != nil {
		return nil, err
	}
	s, ok := Seq(r)
	if !ok {
		return nil, fmt.Errorf("zeo %s: new_oids: bad result %s", c.addr, TypeName(r))
	}
	oids := make([]stack.Oid, len(s))
	for i := range s {
		if oids[i], err = Args(s).Oid(i); err != nil {
			return nil, fmt.Errorf("zeo %s: new_oids result: %w", c.addr, err)
		}
	}
	return oids, nil
}

// Ping makes a round trip (ZEO's ping).
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.Call(ctx, "ping")
	return err
}

func tidResult(op string, r any) (stack.Tid, error) {
	b, ok := r.([]byte)
	if !ok {
		return 0, fmt.Errorf("%s: want an 8-byte tid, got %s", op, TypeName(r))
	}
	t, err := stack.TidFromBytes(b)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	return t, nil
}

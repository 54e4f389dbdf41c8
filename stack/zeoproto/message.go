package zeoproto

import (
	"encoding/binary"
	"fmt"
)

// Flag values of a message (docs/protocol.md §3.1).
const (
	// FlagSync marks a call that expects a reply, and a successful reply.
	FlagSync = 0
	// FlagAsync marks a call that gets no reply.
	FlagAsync = 1
	// FlagError marks an error reply; its Args are (class_name, payload).
	FlagError = 2
)

// ReplyName is the method name every reply (and the heartbeat) carries.
const ReplyName = ".reply"

// HeartbeatID is the msgid of heartbeats; servers ignore every message
// with this id.
const HeartbeatID = -1

// Message is one ZEO message, the 4-tuple (msgid, flag, name, args).
//
// ID is an int64 for ordinary calls (0 for async calls, -1 for
// heartbeats), or the Tuple (oid, tid) a Python client uses for
// loadBefore; replies must echo it unchanged. Flag is FlagSync, FlagAsync
// or FlagError (any non-zero flag on a reply is an error, any non-zero
// flag on a call makes it async, as Python reads them by truthiness).
// Name is the method, or ReplyName. Args is the argument Tuple of a call,
// the result itself for a reply, and Tuple{class_name, payload} for an
// error reply.
//
// Encoding follows Python: a call's flag is written as a bool
// (False/True), a reply's flag as an int (0/2).
type Message struct {
	ID   any
	Flag int
	Name string
	Args any
}

// NewCall builds a synchronous call with msgid id.
func NewCall(id int64, name string, args ...any) Message {
	return Message{ID: id, Flag: FlagSync, Name: name, Args: Tuple(nonNil(args))}
}

// NewAsync builds an asynchronous call (msgid 0, flag true): client
// requests such as storea, and server messages such as
// invalidateTransaction.
func NewAsync(name string, args ...any) Message {
	return Message{ID: int64(0), Flag: FlagAsync, Name: name, Args: Tuple(nonNil(args))}
}

// NewReply builds the successful reply to the call with msgid id.
func NewReply(id any, result any) Message {
	return Message{ID: id, Flag: FlagSync, Name: ReplyName, Args: result}
}

// NewErrorReply builds the error reply to the call with msgid id, mapping
// err to a Python exception class and payload with ErrorToPython.
func NewErrorReply(id any, err error) Message {
	class, payload := ErrorToPython(err)
	return Message{ID: id, Flag: FlagError, Name: ReplyName, Args: Tuple{class, payload}}
}

// Heartbeat is the message a client sends every 60 seconds:
// (-1, 0, ".reply", None).
func Heartbeat() Message {
	return Message{ID: int64(HeartbeatID), Flag: FlagSync, Name: ReplyName}
}

func nonNil(args []any) []any {
	if args == nil {
		return []any{}
	}
	return args
}

// IsReply reports whether m is a reply (or a heartbeat): its name is ".reply".
func (m Message) IsReply() bool { return m.Name == ReplyName }

// IsError reports whether m is an error reply.
func (m Message) IsError() bool { return m.IsReply() && m.Flag != FlagSync }

// IsAsync reports whether m is a call that expects no reply.
func (m Message) IsAsync() bool { return !m.IsReply() && m.Flag != FlagSync }

// IsHeartbeat reports whether m has the heartbeat msgid -1; a server
// ignores such messages whatever their name.
func (m Message) IsHeartbeat() bool {
	id, ok := m.ID.(int64)
	return ok && id == HeartbeatID
}

// CallArgs returns the arguments of a call for typed access.
func (m Message) CallArgs() (Args, error) {
	a, err := ArgsOf(m.Args)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Name, err)
	}
	return a, nil
}

// Codec encodes and decodes message payloads (the frame contents after
// the handshake). Both codecs are stateless and safe for concurrent use.
type Codec interface {
	// Protocol is the handshake letter: 'Z' (pickle) or 'M' (msgpack).
	Protocol() byte
	// Encode returns the payload of m, without the frame length.
	Encode(m Message) ([]byte, error)
	// Decode parses a payload into a Message.
	Decode(p []byte) (Message, error)
	// EncodeValue and DecodeValue encode one value of the value model.
	EncodeValue(v any) ([]byte, error)
	DecodeValue(p []byte) (any, error)
}

// Pickle is the 'Z' codec: pickle protocol 3, as ZEO's Python peers write
// it (docs/protocol.md §3.5).
var Pickle Codec = pickleCodec{}

// Msgpack is the 'M' codec (docs/protocol.md §3.7).
var Msgpack Codec = msgpackCodec{}

// CodecFor returns the codec for a handshake letter, or nil.
func CodecFor(letter byte) Codec {
	switch letter {
	case 'Z':
		return Pickle
	case 'M':
		return Msgpack
	}
	return nil
}

// replyPickle is the 'Z' codec a client uses: it decodes with
// DecodeReplyPickle, keeping globals of any module as opaque values.
var replyPickle Codec = pickleCodec{replies: true}

// clientCodec is the codec a client decodes server messages with.
func clientCodec(c Codec) Codec {
	if c == Pickle {
		return replyPickle
	}
	return c
}

type pickleCodec struct {
	replies bool // decoding server messages: any global is kept opaque
}

func (pickleCodec) Protocol() byte                    { return 'Z' }
func (pickleCodec) EncodeValue(v any) ([]byte, error) { return EncodePickle(v) }
func (c pickleCodec) DecodeValue(p []byte) (any, error) {
	return decodePickle(p, c.replies)
}
func (c pickleCodec) Encode(m Message) ([]byte, error) {
	return EncodePickle(m.tuple())
}
func (c pickleCodec) Decode(p []byte) (Message, error) {
	v, err := c.DecodeValue(p)
	if err != nil {
		return Message{}, err
	}
	return messageFrom(v)
}

type msgpackCodec struct{}

func (msgpackCodec) Protocol() byte                    { return 'M' }
func (msgpackCodec) EncodeValue(v any) ([]byte, error) { return EncodeMsgpack(v) }
func (msgpackCodec) DecodeValue(p []byte) (any, error) { return DecodeMsgpack(p) }
func (c msgpackCodec) Encode(m Message) ([]byte, error) {
	return EncodeMsgpack(m.tuple())
}
func (c msgpackCodec) Decode(p []byte) (Message, error) {
	v, err := DecodeMsgpack(p)
	if err != nil {
		return Message{}, err
	}
	return messageFrom(v)
}

// AppendMessageFrame appends the whole frame of m (the length prefix and
// the payload Encode would return) to b, encoding in place: a server
// replying from a reused buffer then allocates neither the payload nor
// the frame.
func AppendMessageFrame(c Codec, b []byte, m Message) ([]byte, error) {
	start := len(b)
	b = append(b, 0, 0, 0, 0)
	var err error
	if _, ok := c.(pickleCodec); ok {
		b, err = appendMessagePickle(b, m)
	} else {
		var p []byte
		p, err = c.Encode(m)
		b = append(b, p...)
	}
	if err != nil {
		return b[:start], err
	}
	n := len(b) - start - 4
	if uint64(n) > 1<<32-1 {
		return b[:start], fmt.Errorf("frame of %d bytes is too large for the 32-bit length", n)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(n))
	return b, nil
}

// appendMessagePickle appends the pickle of m.tuple() without building
// the tuple (or boxing its name and flag): PROTO 3, MARK, the four items,
// TUPLE, STOP.
func appendMessagePickle(b []byte, m Message) ([]byte, error) {
	b = append(b, opProto, 3, opMark)
	var err error
	if m.ID == nil {
		b = appendPickleInt(b, 0)
	} else if b, err = appendPickleDepth(b, m.ID, 1); err != nil {
		return b, err
	}
	switch {
	case m.IsReply():
		b = appendPickleInt(b, int64(m.Flag))
	case m.Flag != FlagSync:
		b = append(b, opNewTrue)
	default:
		b = append(b, opNewFalse)
	}
	b = appendPickleString(b, m.Name)
	if b, err = appendPickleDepth(b, m.Args, 1); err != nil {
		return b, err
	}
	return append(b, opTuple, opStop), nil
}

// tuple is the 4-tuple Python would encode for m.
func (m Message) tuple() Tuple {
	var flag any = int64(m.Flag)
	if !m.IsReply() {
		flag = m.Flag != FlagSync
	}
	id := m.ID
	if id == nil {
		id = int64(0)
	}
	return Tuple{id, flag, m.Name, m.Args}
}

func messageFrom(v any) (Message, error) {
	s, ok := Seq(v)
	if !ok || len(s) != 4 {
		return Message{}, fmt.Errorf("message must be a 4-tuple, got %s", TypeName(v))
	}
	var m Message
	switch id := s[0].(type) {
	case int64:
		m.ID = id
	case Tuple:
		m.ID = id
	case []any: // tolerate a list; echo it as a tuple
		m.ID = Tuple(id)
	default:
		return Message{}, fmt.Errorf("message id must be an int or a tuple, got %s", TypeName(s[0]))
	}
	switch f := s[1].(type) {
	case bool:
		if f {
			m.Flag = FlagAsync
		}
	case int64:
		if f < 0 || f > 255 {
			return Message{}, fmt.Errorf("message flag %d out of range", f)
		}
		m.Flag = int(f)
	default:
		return Message{}, fmt.Errorf("message flag must be a bool or an int, got %s", TypeName(s[1]))
	}
	name, ok := AsString(s[2])
	if !ok {
		return Message{}, fmt.Errorf("message name must be a str, got %s", TypeName(s[2]))
	}
	m.Name = name
	m.Args = s[3]
	return m, nil
}

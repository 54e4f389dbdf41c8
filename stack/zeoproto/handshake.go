package zeoproto

import (
	"bytes"
	"fmt"
)

// ProtocolVersion is the only ZEO protocol version spoken: "5" (ZEO 5 and 6).
const ProtocolVersion = "5"

// RuokProbe is the handshake reply of a monitoring client (zeo-nagios)
// asking for the server status as JSON.
const RuokProbe = "ruok"

// HandshakeError is a handshake the peer got wrong: an unsupported
// protocol or a letter we do not speak.
type HandshakeError struct {
	Got []byte // the peer's handshake frame
	Msg string
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("zeo handshake: %s (peer sent %q)", e.Msg, e.Got)
}

// ServerHandshake performs the server side of the handshake
// (docs/protocol.md §2.3): it sends announce (Pickle or Msgpack; "Z5" or
// "M5") and reads the client's reply. It returns the codec the client
// chose by its reply's first letter, whatever was announced. When the
// client sent "ruok", it returns ruok true and a nil codec: the caller
// answers one frame of JSON status and closes. Any other reply is a
// *HandshakeError, and the caller closes the connection.
func ServerHandshake(r *FrameReader, w *FrameWriter, announce Codec) (codec Codec, ruok bool, err error) {
	if err := w.WriteFrame([]byte{announce.Protocol(), ProtocolVersion[0]}); err != nil {
		return nil, false, fmt.Errorf("zeo handshake: send: %w", err)
	}
	reply, err := r.ReadFrame()
	if err != nil {
		return nil, false, fmt.Errorf("zeo handshake: read: %w", err)
	}
	if string(reply) == RuokProbe {
		return nil, true, nil
	}
	if len(reply) < 1 || string(reply[1:]) != ProtocolVersion {
		return nil, false, &HandshakeError{Got: reply, Msg: "unsupported protocol version"}
	}
	codec = CodecFor(reply[0])
	if codec == nil {
		return nil, false, &HandshakeError{Got: reply, Msg: "unknown encoding letter"}
	}
	return codec, false, nil
}

// ClientHandshake performs the client side: it reads the server's
// announcement, applies the ZEO 5.4+ rule (the version is the bytewise
// minimum of the server's and "5" and must equal "5"; so Z6 or Z99 are
// answered with Z5 while Z4 or Z310 are refused), and replies with the
// server's letter and "5". It returns the codec of that letter.
func ClientHandshake(r *FrameReader, w *FrameWriter) (Codec, error) {
	ann, err := r.ReadFrame()
	if err != nil {
		return nil, fmt.Errorf("zeo handshake: read: %w", err)
	}
	if len(ann) < 2 {
		return nil, &HandshakeError{Got: ann, Msg: "announcement too short"}
	}
	v := ann[1:]
	if bytes.Compare(v, []byte(ProtocolVersion)) > 0 {
		v = []byte(ProtocolVersion)
	}
	if string(v) != ProtocolVersion {
		return nil, &HandshakeError{Got: ann, Msg: "server protocol older than ZEO 5"}
	}
	codec := CodecFor(ann[0])
	if codec == nil {
		return nil, &HandshakeError{Got: ann, Msg: "unknown encoding letter"}
	}
	if err := w.WriteFrame([]byte{ann[0], ProtocolVersion[0]}); err != nil {
		return nil, fmt.Errorf("zeo handshake: send: %w", err)
	}
	return codec, nil
}

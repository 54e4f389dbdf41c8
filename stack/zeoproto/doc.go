// Package zeoproto is the ZEO 5/6 wire protocol, both sides: framing, the
// protocol handshake, the pickle ('Z') and msgpack ('M') message codecs,
// the mapping between zeoraid's typed storage errors and Python exception
// replies, and a client connection. It is byte-compatible with Python's
// ZEO (docs/protocol.md); the golden tests are real captures of Python
// ZEO (vectors_test.go, docs/protocol.md §3.8), and further tests talk to the real Python runzeo and to ZEO's
// own encoders.
//
// # Layers
//
// Framing: every frame is a uint32 big-endian length and a payload.
// FrameReader reads them (split or pipelined) with a maximum size;
// FrameWriter writes whole frames atomically, so several goroutines may
// share one. A zero-length or oversized frame is an error after which the
// connection must be closed.
//
// Handshake: the first frame each way is a bare protocol string.
// ServerHandshake announces Z5 or M5, accepts Z5 or M5 from the client
// (picking the codec from the reply's letter, not from the announcement),
// and reports the "ruok" status probe. ClientHandshake applies the ZEO
// 5.4+ rule and answers with the server's letter and "5".
//
// Messages: after the handshake every frame is one Message, the tuple
// (msgid, flag, name, args), encoded by a Codec (Pickle or Msgpack).
// Values inside use one model for both codecs (see Tuple, Dict, Global,
// Object and the comment in value.go): nil, bool, int64/*big.Int, float64,
// string (Python str), []byte (Python bytes), Tuple, []any (list), Dict
// (ordered). Args gives typed access to call arguments with positioned
// errors (oids and tids from 8 bytes, str accepted as bytes, bools by
// truthiness, optional None).
//
// The pickle encoder is our own: it writes exactly what Python's
// protocol-3 fast-mode pickler writes (BINUNICODE for str,
// SHORT_BINBYTES/BINBYTES for bytes, TUPLE1-3, APPENDS/SETITEMS batches of
// 1000, minimal LONG1). The decoder is our own too, checked against
// github.com/kisielk/og-rek in the tests: og-rek's decoder keeps dicts in
// Go maps, losing the insertion order that the ConflictError payload and transaction
// extension dicts depend on, and it builds class references for any
// module. Ours refuses, with a *GlobalError, every global a Python ZEO
// server refuses (only ZopeUndo.Prefix, zodbpickle, builtins, copy_reg and
// __builtin__ pass), keeps the allowed ones as opaque Global/*Object
// values, never instantiates anything, and never allocates more than the
// input justifies.
//
// Errors: ErrorToPython maps package stack's typed errors to the
// (class_name, payload) of an error reply with the payload shapes Python
// clients need; NewErrorReply uses it. ErrorFromPython is the reverse for
// the client side, so stack.IsBackendFailure tells logical answers
// (POSKeyError, conflicts, read-only, …) from failures; unknown classes
// become a *RemoteError that names the class and message and is relayed
// unchanged if a server passes it on.
//
// # Server use (stack/server)
//
//	r, w := zeoproto.NewFrameReader(conn, maxFrame), zeoproto.NewFrameWriter(conn)
//	codec, ruok, err := zeoproto.ServerHandshake(r, w, zeoproto.Pickle)
//	// ruok: write one frame of JSON status, close.
//	for {
//		p, err := r.ReadFrame()      // error: close
//		m, err := codec.Decode(p)    // error (incl. *GlobalError): close
//		if m.IsHeartbeat() { continue }
//		args, err := m.CallArgs()
//		…
//		out, _ := codec.Encode(zeoproto.NewReply(m.ID, result))    // echo m.ID as is
//		out, _ = codec.Encode(zeoproto.NewErrorReply(m.ID, err))   // sync calls only
//		w.WriteFrame(out)
//	}
//	// server→client: codec.Encode(zeoproto.NewAsync("invalidateTransaction", tid, oids))
//
// Replies must echo m.ID unchanged: the loadBefore msgid is a Tuple and
// goes back as a tuple (pickle) or array (msgpack).
//
// # Client use (zeoclient, ctl, bench)
//
//	c, err := zeoproto.Dial(ctx, "tcp", "host:8100", zeoproto.ClientOptions{Handler: onInvalidation})
//	last, err := c.Register(ctx, "1", false)
//	rev, err := c.LoadBefore(ctx, oid, stack.MaxTid)
//	err = c.CallAsync(ctx, "tpc_begin", txn, user, desc, zeoproto.Dict{}, nil, " ")
//	res, err := c.Call(ctx, "vote", txn)
//
// A Client pipelines calls, matches replies by msgid, sends a heartbeat
// every 60 s, delivers server messages to the Handler in order, and when
// the connection drops fails every pending call with a *DisconnectedError
// naming the address (a backend failure). It does not reconnect: that is
// the caller's policy.
package zeoproto

package bench

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"

	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// EchoServer is the floor the server's request path is measured against:
// a bare Go server with ZEO's framing and handshake that answers every
// frame with one canned reply frame, as large as a loadBefore reply of
// the benchmark's records, decoding and looking up nothing. Like zeoraid's
// server it reads with a buffer and writes the replies to the requests it
// has read in one write once no more are buffered.
type EchoServer struct {
	l     net.Listener
	reply []byte // the whole reply frame
	wg    sync.WaitGroup
}

// NewEchoServer serves on l, answering every frame with a loadBefore
// reply carrying a record of size bytes.
func NewEchoServer(l net.Listener, size int) (*EchoServer, error) {
	p, err := zeoproto.Pickle.Encode(zeoproto.NewReply(int64(2), zeoproto.Tuple{make([]byte, size), make([]byte, 8), nil}))
	if err != nil {
		return nil, err
	}
	return &EchoServer{l: l, reply: zeoproto.AppendFrame(nil, p)}, nil
}

// Serve accepts connections until the listener is closed.
func (e *EchoServer) Serve() error {
	for {
		nc, err := e.l.Accept()
		if err != nil {
			e.wg.Wait()
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			defer nc.Close()
			e.serve(nc)
		}()
	}
}

func (e *EchoServer) serve(nc net.Conn) {
	fr, fw := zeoproto.NewFrameReader(nc, 0), zeoproto.NewFrameWriter(nc)
	if _, _, err := zeoproto.ServerHandshake(fr, fw, zeoproto.Pickle); err != nil {
		return
	}
	var out []byte
	for {
		if _, err := fr.Next(); err != nil {
			return // the client left (or sent garbage): nothing to report
		}
		out = append(out, e.reply...)
		if fr.Buffered() == 0 {
			if _, err := nc.Write(out); err != nil {
				return
			}
			out = out[:0]
		}
	}
}

// ServeEcho runs an echo server on a loopback port of the kernel's
// choice, writing the address to w, until the process ends: the process
// `zeoraid bench -serve-echo` that a report starts as the floor, so that
// its processor time is its own.
func ServeEcho(w io.Writer, size int) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	e, err := NewEchoServer(l, size)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	bw.WriteString(l.Addr().String() + "\n")
	if err := bw.Flush(); err != nil {
		return err
	}
	return e.Serve()
}

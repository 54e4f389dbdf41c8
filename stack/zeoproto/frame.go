package zeoproto

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"
)

// DefaultMaxFrame is the default largest frame payload a FrameReader
// accepts: 512 MiB, room for very large object records.
const DefaultMaxFrame = 512 << 20

// FrameTooLargeError is a frame whose declared length exceeds the reader's
// maximum. The stream cannot be resynchronised: close the connection.
type FrameTooLargeError struct {
	Size, Max uint32
}

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("frame of %d bytes exceeds the maximum of %d", e.Size, e.Max)
}

// ErrEmptyFrame is a zero-length frame; Python never sends one, so it is
// treated as an undecodable message and the connection should be closed.
var ErrEmptyFrame = errors.New("zero-length frame")

// FrameReader reads frames (a uint32 big-endian length, then that many
// payload bytes) from a stream. It copes with frames split across reads
// and several frames in one read. It is not safe for concurrent use: one
// goroutine reads a connection.
type FrameReader struct {
	r   *bufio.Reader
	max uint32
}

// NewFrameReader returns a reader of frames from r whose payloads may be at
// most max bytes (DefaultMaxFrame when max <= 0).
func NewFrameReader(r io.Reader, max int) *FrameReader {
	if max <= 0 || uint64(max) > math.MaxUint32 {
		max = DefaultMaxFrame
	}
	return &FrameReader{r: bufio.NewReaderSize(r, 64<<10), max: uint32(max)}
}

// ReadFrame returns the next frame's payload in a new slice. At a clean end
// of stream between frames it returns io.EOF; a stream ending inside a
// frame gives io.ErrUnexpectedEOF. A frame larger than the maximum gives a
// *FrameTooLargeError without reading (or allocating) its payload.
func (f *FrameReader) ReadFrame() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(f.r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return nil, ErrEmptyFrame
	}
	if n > f.max {
		return nil, &FrameTooLargeError{Size: n, Max: f.max}
	}
	// Grow with the data actually received, so a peer declaring a huge
	// frame and sending little does not make us allocate it all up front.
	const step = 1 << 20
	p := make([]byte, 0, min(int(n), step))
	for len(p) < int(n) {
		chunk := min(int(n)-len(p), step)
		if cap(p)-len(p) < chunk {
			p = append(p, make([]byte, chunk)...)[:len(p)]
		}
		k, err := io.ReadFull(f.r, p[len(p):len(p)+chunk])
		p = p[:len(p)+k]
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return p, nil
}

// Next returns the next frame's payload like ReadFrame, but the slice is
// only valid until the next call of Next or ReadFrame: a frame that
// arrived whole is returned in place from the read buffer, without a copy.
// It suits a reader that decodes each frame before reading the next (the
// codecs copy what they keep).
func (f *FrameReader) Next() ([]byte, error) {
	hdr, err := f.r.Peek(4)
	if err != nil {
		if len(hdr) > 0 && err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr)
	if n == 0 || n > f.max || int(n) > f.r.Size()-4 {
		return f.ReadFrame()
	}
	whole, err := f.r.Peek(4 + int(n))
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	_, _ = f.r.Discard(4 + int(n))
	return whole[4:], nil
}

// Buffered is how many bytes have been received and not yet returned as
// frames: when it is 0, the next read waits for the peer.
func (f *FrameReader) Buffered() int { return f.r.Buffered() }

// AppendFrame appends the frame holding payload to b.
func AppendFrame(b, payload []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// FrameWriter writes whole frames to a stream. WriteFrame is safe for
// concurrent use: each frame goes out in one Write under a mutex, so frames
// of concurrent writers never interleave.
type FrameWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// NewFrameWriter returns a writer of frames to w.
func NewFrameWriter(w io.Writer) *FrameWriter { return &FrameWriter{w: w} }

// WriteFrame writes one frame. An error may leave a partial frame on the
// stream: the caller must close the connection.
func (f *FrameWriter) WriteFrame(payload []byte) error {
	return f.WriteFrameContext(context.Background(), payload)
}

// writeDeadliner is the part of net.Conn WriteFrameContext uses.
type writeDeadliner interface {
	SetWriteDeadline(t time.Time) error
}

// WriteFrameContext writes one frame unless ctx is done first, in which
// case it returns ctx.Err() itself and the stream is intact. When ctx ends
// during the write and the stream has SetWriteDeadline (a net.Conn), the
// write is interrupted with an error that wraps ctx.Err(): it may have
// left a partial frame, and the caller must close the connection. Other
// writers waiting for their turn are not affected by this ctx.
func (f *FrameWriter) WriteFrameContext(ctx context.Context, payload []byte) error {
	if uint64(len(payload)) > 1<<32-1 {
		return fmt.Errorf("frame of %d bytes is too large for the 32-bit length", len(payload))
	}
	return f.writeContext(ctx, AppendFrame(make([]byte, 0, 4+len(payload)), payload))
}

// WriteFramesContext is WriteFrameContext for several frames written
// with one write (one system call for the stores of a transaction).
func (f *FrameWriter) WriteFramesContext(ctx context.Context, payloads ...[]byte) error {
	n := 0
	for _, p := range payloads {
		if uint64(len(p)) > 1<<32-1 {
			return fmt.Errorf("frame of %d bytes is too large for the 32-bit length", len(p))
		}
		n += 4 + len(p)
	}
	buf := make([]byte, 0, n)
	for _, p := range payloads {
		buf = AppendFrame(buf, p)
	}
	return f.writeContext(ctx, buf)
}

// writeContext writes buf, whole frames, as WriteFrameContext describes.
func (f *FrameWriter) writeContext(ctx context.Context, buf []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	dl, ok := f.w.(writeDeadliner)
	if !ok || ctx.Done() == nil {
		_, err := f.w.Write(buf)
		return err
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		dl.SetWriteDeadline(time.Unix(1, 0))
		close(fired)
	})
	_, err := f.w.Write(buf)
	if !stop() {
		<-fired
		dl.SetWriteDeadline(time.Time{})
		if err != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
	}
	return err
}

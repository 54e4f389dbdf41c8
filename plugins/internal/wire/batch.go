package wire

import "sync"

const (
	// maxBatchBytes bounds the payload of one batch (one gRPC message):
	// far below MaxMessage, so that a batch of large records still fits.
	maxBatchBytes = 1 << 20
	// maxBatchItems bounds the items of one batch.
	maxBatchItems = 512
	// maxRounds is how many batches one sender sends for others before
	// it hands the rest to a goroutine of its own and returns.
	maxRounds = 4
)

// Batcher sends items on a stream in batches, in the order they were
// added. Whoever adds an item while nobody is sending becomes the sender:
// it sends what is queued, then what was queued meanwhile, so that under
// concurrency one stream message carries many calls (the per-message cost
// of gRPC dominates small calls) and nobody waits for a goroutine to wake.
type Batcher[T any] struct {
	send func([]T) error // sends one batch; an error ends the Batcher
	size func(T) int     // an item's payload in bytes, roughly

	mu      sync.Mutex
	queue   []T
	spare   []T
	sending bool
	err     error
}

// NewBatcher returns a Batcher sending with send.
func NewBatcher[T any](send func([]T) error, size func(T) int) *Batcher[T] {
	return &Batcher[T]{send: send, size: size}
}

// Add queues item and sends, unless someone else is sending. It returns
// the error that ended the Batcher, if one did; an item queued when a
// send fails is lost with the stream.
func (b *Batcher[T]) Add(item T) error {
	b.mu.Lock()
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		return err
	}
	b.queue = append(b.queue, item)
	if b.sending {
		b.mu.Unlock()
		return nil
	}
	b.sending = true
	return b.drain(maxRounds)
}

// drain sends batches until the queue is empty or rounds ran out (then a
// goroutine goes on). It is called with b.mu held and returns with it
// released.
func (b *Batcher[T]) drain(rounds int) error {
	for len(b.queue) > 0 {
		if rounds == 0 {
			b.mu.Unlock()
			go func() {
				b.mu.Lock()
				_ = b.drain(maxRounds)
			}()
			return nil
		}
		rounds--
		n, bytes := 0, 0
		for n < len(b.queue) && n < maxBatchItems {
			bytes += b.size(b.queue[n])
			if n > 0 && bytes > maxBatchBytes {
				break
			}
			n++
		}
		batch := b.queue[:n]
		rest := b.queue[n:]
		// The queue goes on in the spare buffer while batch is sent.
		b.queue = append(b.spare[:0], rest...)
		b.mu.Unlock()
		err := b.send(batch)
		clear(batch)
		b.mu.Lock()
		b.spare = batch[:0]
		if err != nil {
			b.err = err
			clear(b.queue)
			b.queue = nil
			b.sending = false
			b.mu.Unlock()
			return err
		}
	}
	b.sending = false
	b.mu.Unlock()
	return nil
}

package wire

import (
	"errors"
	"sync"
	"testing"
)

// Items added from many goroutines all arrive, each goroutine's in its
// order, in batches within the bounds; a failed send ends the Batcher.
func TestBatcher(t *testing.T) {
	type item struct{ from, seq, size int }
	var mu sync.Mutex
	var got []item
	batches, bigBatches := 0, 0
	b := NewBatcher(func(batch []item) error {
		bytes := 0
		for _, it := range batch {
			bytes += it.size
		}
		mu.Lock()
		defer mu.Unlock()
		if len(batch) > maxBatchItems || (len(batch) > 1 && bytes > maxBatchBytes) {
			t.Errorf("a batch of %d items, %d bytes", len(batch), bytes)
		}
		if len(batch) > 1 {
			bigBatches++
		}
		batches++
		got = append(got, batch...)
		return nil
	}, func(it item) int { return it.size })
	const senders, each = 8, 2000
	var wg sync.WaitGroup
	for from := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range each {
				size := 100
				if seq%500 == 0 {
					size = maxBatchBytes // alone in its batch, or first
				}
				if err := b.Add(item{from, seq, size}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// The last sender may have handed the rest to a goroutine.
	for {
		b.mu.Lock()
		idle := !b.sending && len(b.queue) == 0
		b.mu.Unlock()
		if idle {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != senders*each {
		t.Fatalf("%d items arrived, %d were added", len(got), senders*each)
	}
	next := make([]int, senders)
	for _, it := range got {
		if it.seq != next[it.from] {
			t.Fatalf("item %d of sender %d arrived when %d was due", it.seq, it.from, next[it.from])
		}
		next[it.from]++
	}
	t.Logf("%d items in %d batches (%d of several items)", len(got), batches, bigBatches)

	failed := errors.New("stream gone")
	b = NewBatcher(func([]item) error { return failed }, func(item) int { return 1 })
	if err := b.Add(item{}); err != failed {
		t.Fatalf("first add: %v", err)
	}
	if err := b.Add(item{}); err != failed {
		t.Fatalf("add after the failure: %v", err)
	}
}

package stack

import (
	"fmt"
	"io"
	"sync"
)

// Pool hands out exclusive resources (a Data.fs and its lock, a Badger
// directory, a plugin process) by canonical key, reference-counted, so that
// a new tree built during a reload can share what the old tree holds instead
// of failing to lock it. The resource is closed when its last user releases
// it.
type Pool struct {
	mu    sync.Mutex
	items map[string]*poolItem
}

type poolItem struct {
	res  io.Closer
	refs int
}

// NewPool returns an empty pool.
func NewPool() *Pool { return &Pool{items: map[string]*poolItem{}} }

// Acquire returns the resource under key, opening it with open when no one
// holds it yet. Every successful Acquire must be paired with one Release.
func (p *Pool) Acquire(key string, open func() (io.Closer, error)) (io.Closer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if it, ok := p.items[key]; ok {
		it.refs++
		return it.res, nil
	}
	res, err := open()
	if err != nil {
		return nil, err
	}
	p.items[key] = &poolItem{res: res, refs: 1}
	return res, nil
}

// Release drops one reference to key and closes the resource when it was
// the last one.
func (p *Pool) Release(key string) error {
	p.mu.Lock()
	it, ok := p.items[key]
	if !ok {
		p.mu.Unlock()
		return fmt.Errorf("pool: release of %q, which is not held", key)
	}
	it.refs--
	if it.refs > 0 {
		p.mu.Unlock()
		return nil
	}
	delete(p.items, key)
	p.mu.Unlock()
	return it.res.Close()
}

// Held reports how many references key has (0 when not held).
func (p *Pool) Held(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if it, ok := p.items[key]; ok {
		return it.refs
	}
	return 0
}

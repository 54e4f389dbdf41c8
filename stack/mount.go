package stack

import (
	"context"
	"sync/atomic"
)

// Mount is the stable handle the server holds for one storage name. The
// storage behind it can be swapped by a reload; the commit lock serialises
// the vote..finish window of every transaction on the mount, and a swap
// happens only while holding it, so no storage transaction is ever in
// flight across a swap.
type Mount struct {
	name   string
	root   atomic.Pointer[Storage]
	commit chan struct{} // a one-slot semaphore: holding the token is holding the lock
}

// NewMount returns a mount named name serving s.
func NewMount(name string, s Storage) *Mount {
	m := &Mount{name: name, commit: make(chan struct{}, 1)}
	m.root.Store(&s)
	return m
}

// Name is the storage name clients register with.
func (m *Mount) Name() string { return m.name }

// Storage returns the storage currently mounted.
func (m *Mount) Storage() Storage { return *m.root.Load() }

// LockCommit takes the mount's commit lock, waiting until it is free or ctx
// is done.
func (m *Mount) LockCommit(ctx context.Context) error {
	select {
	case m.commit <- struct{}{}:
		return nil
	default:
	}
	select {
	case m.commit <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// UnlockCommit releases the commit lock.
func (m *Mount) UnlockCommit() { <-m.commit }

// Swap replaces the mounted storage under the commit lock and returns the
// old one, which the caller closes when nothing else shares it.
func (m *Mount) Swap(ctx context.Context, s Storage) (Storage, error) {
	if err := m.LockCommit(ctx); err != nil {
		return nil, err
	}
	defer m.UnlockCommit()
	old := m.root.Swap(&s)
	return *old, nil
}

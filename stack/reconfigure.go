package stack

import (
	"context"
	"errors"
)

// Reconfigurer is a storage that can take a changed configuration of its
// section in place, keeping its state and its clients: a RAID whose
// children or options changed, a backend whose timeouts changed. Build
// calls Reconfigure during a reload for a node whose type stayed the same
// but whose fingerprint changed, with the node as it will be (its children
// already built: kept, reconfigured or new) and the freshly decoded
// options.
//
// Reconfigure only prepares: it checks and readies everything that can
// fail, and changes nothing a client could see. The returned Change is
// applied later, with the mount's commit lock held, or discarded when
// another part of the reload failed. A change the storage cannot take in
// place (another file, another server) is refused with an error wrapping
// ErrReopen: Build then opens a new storage for the section instead.
type Reconfigurer interface {
	Reconfigure(ctx context.Context, n *Node, opts any) (Change, error)
}

// ErrReopen is what Reconfigure returns when the new section needs a new
// storage.
var ErrReopen = errors.New("the change needs the storage reopened")

// Change is a prepared reconfiguration.
type Change interface {
	// Apply switches the storage to the new configuration. It cannot
	// fail: everything that could was checked by Reconfigure. It is
	// called with the mount's commit lock held, so no transaction of the
	// mount is between vote and finish.
	Apply()
	// Discard drops what Reconfigure prepared; the storage keeps running
	// as before.
	Discard()
	// Summary says what the change does, one line per item, for the
	// reload's report ("read-distribution random -> first").
	Summary() []string
	// Release waits, after Apply, until what the change dropped (a child
	// removed from a RAID) is no longer used by calls still in flight, or
	// until ctx ends; the caller then closes it.
	Release(ctx context.Context) error
}

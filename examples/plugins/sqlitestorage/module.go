// Package sqlitestorage is the <sqlitestorage> section of the example
// plugin zeoraid-plugin-sqlite: a history-preserving ZODB storage in one
// SQLite file, through the pure-Go driver modernc.org/sqlite (no C
// toolchain). It has undo, pack with and without garbage collection,
// iteration, restore, deleteObject and blobs, and it is written as a
// third-party module would write one: it uses only the public stack
// packages, zconfig's option types, logrus and the driver.
//
// The file holds three tables: object_state (one row per object revision),
// transactions (one row per transaction) and meta (format, next oid, last
// tid, object count). Oids and tids are stored as ZODB's 8-byte big-endian
// strings, so SQLite's byte order is their order. The database runs in WAL
// mode with synchronous=FULL: a transaction's rows are written inside one
// SQL transaction opened at vote and committed at finish, and that COMMIT
// is the durable point; a crash before it leaves nothing of the
// transaction visible.
//
// Blobs are files in a blob directory in ZODB's layout (stack/blobdir), as
// FileStorage keeps them, rather than rows: LoadBlob hands out the path of
// a committed file, so blobs in rows would need a second, file copy of
// every blob read; as files they are also readable by Python's tools and
// interchangeable with a FileStorage's blob directory.
package sqlitestorage

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// Options are the keys of a <sqlitestorage> section. Built directly (Open),
// the zero value means pack-gc false; a configuration section gets its
// default, true.
type Options struct {
	Path     zconfig.ExistingDirPath `zconfig:"path,required" doc:"the SQLite database file, created if missing (its directory must exist)"`
	BlobDir  zconfig.ExistingDirPath `zconfig:"blob-dir" doc:"directory of blob files in ZODB's layout (bushy), interchangeable with Python's; without it the storage has no blobs"`
	ReadOnly bool                    `zconfig:"read-only" doc:"refuse every write; take no lock, so a writer elsewhere may have the file open"`
	PackGC   bool                    `zconfig:"pack-gc,default=true" doc:"pack also removes objects unreachable from the root"`
}

// Module describes the <sqlitestorage> section type; the plugin's main
// serves it.
var Module = stack.Module{
	Type:    "sqlitestorage",
	Doc:     "A history-preserving storage in one SQLite file (WAL, synchronous=FULL): undo, pack with garbage collection, iteration, restore, deleteObject, blobs as files.",
	Options: &Options{},
	Open:    openNode,
}

// openNode opens the section through the pool, so a reloaded tree shares
// the open file (and its lock) with the tree it replaces.
func openNode(_ context.Context, n *stack.Node, opts any) (stack.Storage, error) {
	o, ok := opts.(*Options)
	if !ok {
		return nil, fmt.Errorf("sqlitestorage: options of type %T, want *Options", opts)
	}
	path, err := filepath.Abs(string(o.Path))
	if err != nil {
		return nil, err
	}
	o.Path = zconfig.ExistingDirPath(path)
	if n.Pool == nil {
		return Open(*o, n.Path, n.Log)
	}
	key := "sqlitestorage:" + path
	res, err := n.Pool.Acquire(key, func() (io.Closer, error) { return Open(*o, n.Path, n.Log) })
	if err != nil {
		return nil, err
	}
	s := res.(*Storage)
	if s.opts != *o {
		_ = n.Pool.Release(key)
		return nil, fmt.Errorf("sqlitestorage %s is already open with blob-dir %q, read-only %v, pack-gc %v; a reload cannot change them while it stays open",
			path, s.opts.BlobDir, s.opts.ReadOnly, s.opts.PackGC)
	}
	return &shared{Storage: s, pool: n.Pool, key: key}, nil
}

// shared is one tree's handle on a pooled Storage: closing it releases the
// pool reference; the file closes with the last one.
type shared struct {
	*Storage
	pool *stack.Pool
	key  string
	done bool
}

// Close releases this handle's reference.
func (h *shared) Close() error {
	if h.done {
		return nil
	}
	h.done = true
	return h.pool.Release(h.key)
}

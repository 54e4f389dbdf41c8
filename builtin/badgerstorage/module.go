// Package badgerstorage is the <badgerstorage> section: a history-preserving
// ZODB storage in a Badger v4 key-value store (managed mode, one Badger
// version per tid), with undo, pack with and without garbage collection,
// iteration, restore and blobs kept as files. docs/badgerstorage.md
// describes the key layout, the commit protocol and the memory settings.
package badgerstorage

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// Options are the keys of a <badgerstorage> section. Built directly
// (Open), start from DefaultOptions: it gives what a configuration section
// that sets only path gets.
type Options struct {
	Path     zconfig.ExistingDirPath `zconfig:"path,required" doc:"the Badger directory, created if missing (its parent must exist)"`
	BlobDir  zconfig.ExistingDirPath `zconfig:"blob-dir" doc:"directory of blob files (bushy layout), interchangeable with Python's; blobs are never stored in Badger"`
	ReadOnly bool                    `zconfig:"read-only" doc:"refuse every write; share the directory with other read-only openers (Badger refuses while a writer has it)"`
	PackGC   bool                    `zconfig:"pack-gc,default=true" doc:"pack also removes objects unreachable from the root"`
	Fsync    bool                    `zconfig:"fsync,default=true" doc:"sync every commit to disk before acknowledging it, as FileStorage does; false: a commit survives a crash of the process but not a power failure"`

	MemTableSize   zconfig.ByteSize `zconfig:"memtable-size,default=16MB" doc:"size of one Badger memtable; Badger writes at most 15% of it per internal batch (bigger ZODB transactions are split, still atomic)"`
	NumMemtables   int              `zconfig:"num-memtables,default=2" doc:"memtables kept in memory (one active, the rest being flushed)"`
	BlockCacheSize zconfig.ByteSize `zconfig:"block-cache-size,default=16MB" doc:"cache of decompressed table blocks"`
	IndexCacheSize zconfig.ByteSize `zconfig:"index-cache-size,default=16MB" doc:"cache of table indexes and bloom filters; 0 keeps them all in memory"`
	ValueThreshold zconfig.ByteSize `zconfig:"value-threshold,default=64KB" doc:"records at least this large go to the value log, smaller ones stay in the tree (at most 1MB and 15% of memtable-size)"`
	ValueLogSize   zconfig.ByteSize `zconfig:"value-log-file-size,default=256MB" doc:"size of one value log file, the unit the value log garbage collector rewrites; also the largest record"`
	NumCompactors  int              `zconfig:"num-compactors,default=2" doc:"concurrent Badger compactions (at least 2)"`
}

// DefaultOptions returns the options a <badgerstorage> section has when
// it sets nothing but path.
func DefaultOptions(path string) Options {
	return Options{
		Path: zconfig.ExistingDirPath(path), PackGC: true, Fsync: true,
		MemTableSize: 16 << 20, NumMemtables: 2, BlockCacheSize: 16 << 20, IndexCacheSize: 16 << 20,
		ValueThreshold: 64 << 10, ValueLogSize: 256 << 20, NumCompactors: 2,
	}
}

// Validate checks the memory settings against Badger's own limits, so
// `zeoraid validate` reports them at the section.
func (o *Options) Validate(int) error {
	switch {
	case o.MemTableSize < 1<<20:
		return fmt.Errorf("memtable-size %d is below 1MB", o.MemTableSize)
	case o.NumMemtables < 1:
		return fmt.Errorf("num-memtables %d: at least 1", o.NumMemtables)
	case o.BlockCacheSize <= 0:
		return fmt.Errorf("block-cache-size %d: must be positive (Badger compresses its tables)", o.BlockCacheSize)
	case o.IndexCacheSize < 0:
		return fmt.Errorf("index-cache-size %d is negative", o.IndexCacheSize)
	case o.ValueThreshold < 1 || o.ValueThreshold > 1<<20:
		return fmt.Errorf("value-threshold %d: between 1 and 1MB", o.ValueThreshold)
	case int64(o.ValueThreshold) > int64(o.MemTableSize)*15/100:
		return fmt.Errorf("value-threshold %d exceeds 15%% of memtable-size %d (Badger's batch limit)", o.ValueThreshold, o.MemTableSize)
	case o.ValueLogSize < 1<<20 || o.ValueLogSize >= 2<<30:
		return fmt.Errorf("value-log-file-size %d: at least 1MB, below 2GB", o.ValueLogSize)
	case o.NumCompactors < 2:
		return fmt.Errorf("num-compactors %d: at least 2", o.NumCompactors)
	}
	return nil
}

func init() {
	stack.Register(stack.Module{
		Type:    "badgerstorage",
		Doc:     "A history-preserving storage in a Badger key-value store: undo, pack with garbage collection, iteration, restore, blobs as files; commits of any size are atomic and synced to disk.",
		Options: &Options{},
		Open:    openNode,
	})
}

// openNode opens the section through the pool, so a reloaded tree shares
// the open directory (and Badger's lock on it) with the tree it replaces.
func openNode(_ context.Context, n *stack.Node, opts any) (stack.Storage, error) {
	o, ok := opts.(*Options)
	if !ok {
		return nil, fmt.Errorf("badgerstorage: options of type %T, want *Options", opts)
	}
	path, err := filepath.Abs(string(o.Path))
	if err != nil {
		return nil, err
	}
	o.Path = zconfig.ExistingDirPath(path)
	if n.Pool == nil {
		return Open(*o, n.Path, n.Log)
	}
	key := "badgerstorage:" + path
	res, err := n.Pool.Acquire(key, func() (io.Closer, error) { return Open(*o, n.Path, n.Log) })
	if err != nil {
		return nil, err
	}
	s := res.(*Storage)
	if s.opts != *o {
		n.Pool.Release(key)
		return nil, fmt.Errorf("badgerstorage %s is already open with other settings (blob-dir %q, read-only %v); a reload cannot change them while it stays open",
			path, s.opts.BlobDir, s.opts.ReadOnly)
	}
	return &shared{Storage: s, pool: n.Pool, key: key}, nil
}

// shared is one tree's handle on a pooled Storage: closing it releases the
// pool reference; the directory closes with the last one.
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

package filestorage

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// Options are the keys of a <filestorage> section (ZODB's component.xml).
// Built directly (Open), the zero value means pack-gc and pack-keep-old
// false; a configuration section gets their defaults, true.
type Options struct {
	Path        zconfig.ExistingDirPath `zconfig:"path,required" doc:"the Data.fs file; its directory must exist"`
	BlobDir     zconfig.ExistingDirPath `zconfig:"blob-dir" doc:"directory of blob files (bushy layout), interchangeable with Python's"`
	Create      bool                    `zconfig:"create" doc:"start from an empty file, deleting any existing Data.fs and blob directory"`
	ReadOnly    bool                    `zconfig:"read-only" doc:"refuse every write; take no lock"`
	Quota       zconfig.ByteSize        `zconfig:"quota" doc:"refuse stores once the file is this large"`
	Packer      string                  `zconfig:"packer" doc:"only the default packer is supported; any other name is an error"`
	PackGC      bool                    `zconfig:"pack-gc,default=true" doc:"pack also removes objects unreachable from the root"`
	PackKeepOld bool                    `zconfig:"pack-keep-old,default=true" doc:"keep the pre-pack file as Data.fs.old (and blobs as <blob-dir>.old)"`
}

// isDefaultPacker accepts the names that mean FileStorage's own packer.
func isDefaultPacker(name string) bool {
	switch name {
	case "ZODB.FileStorage.packed.FileStoragePacker", "ZODB.FileStorage.fspack.FileStoragePacker",
		"ZODB.FileStorage.fspack:FileStoragePacker", "ZODB.FileStorage.FileStoragePacker", "default":
		return true
	}
	return false
}

func init() {
	stack.Register(stack.Module{
		Type:    "filestorage",
		Doc:     "A Data.fs file, byte-compatible with Python ZODB's FileStorage (with .index, lock file, pack and blobs).",
		Options: &Options{},
		Open:    openNode,
	})
}

// openNode opens the section through the pool, so a reloaded tree shares
// the open Data.fs (and its lock) with the tree it replaces.
func openNode(ctx context.Context, n *stack.Node, opts any) (stack.Storage, error) {
	o, ok := opts.(*Options)
	if !ok {
		return nil, fmt.Errorf("filestorage: options of type %T, want *Options", opts)
	}
	path, err := filepath.Abs(string(o.Path))
	if err != nil {
		return nil, err
	}
	open := func() (*Storage, error) {
		s, err := Open(path, *o, n.Log)
		if err == nil {
			s.node = n.Path
		}
		return s, err
	}
	if n.Pool == nil {
		return open()
	}
	key := "filestorage:" + path
	res, err := n.Pool.Acquire(key, func() (io.Closer, error) { return open() })
	if err != nil {
		return nil, err
	}
	s := res.(*Storage)
	if s.opts.BlobDir != o.BlobDir || s.readOnly != o.ReadOnly {
		n.Pool.Release(key)
		return nil, fmt.Errorf("filestorage %s is already open with blob-dir %q, read-only %v; cannot share it with blob-dir %q, read-only %v",
			path, s.opts.BlobDir, s.readOnly, o.BlobDir, o.ReadOnly)
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

package filestorage

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/zeoraid/zeoraid/stack"
)

var _ stack.Reconfigurer = (*Storage)(nil)

// Reconfigure implements stack.Reconfigurer (docs/reload.md): quota
// applies from the next store, pack-gc and pack-keep-old from the next
// pack (one in progress finishes as it started), packer is checked as at
// open, and create only matters when the file is opened. Another path,
// blob-dir or read-only is another open file: ErrReopen.
func (s *Storage) Reconfigure(_ context.Context, _ *stack.Node, opts any) (stack.Change, error) {
	o, ok := opts.(*Options)
	if !ok {
		return nil, fmt.Errorf("filestorage: options of type %T, want *Options", opts)
	}
	if d := s.fixedChange(o); d != "" {
		return nil, fmt.Errorf("%s: %w", d, stack.ErrReopen)
	}
	if o.Packer != "" && !isDefaultPacker(o.Packer) {
		return nil, fmt.Errorf("packer %q is not supported: only the default packer (ZODB.FileStorage.packed.FileStoragePacker) exists in zeoraid", o.Packer)
	}
	next := *o
	return &change{s: s, next: &next}, nil
}

// fixedChange describes the first key of o that differs from the open
// file's and cannot change while it is open, or "".
func (s *Storage) fixedChange(o *Options) string {
	switch {
	case absPath(string(o.Path)) != absPath(s.path):
		return fmt.Sprintf("path %s -> %s", s.path, o.Path)
	case absPath(string(o.BlobDir)) != absPath(string(s.opts.BlobDir)):
		return fmt.Sprintf("blob-dir %q -> %q", s.opts.BlobDir, o.BlobDir)
	case o.ReadOnly != s.readOnly:
		return fmt.Sprintf("read-only %v -> %v", s.readOnly, o.ReadOnly)
	}
	return ""
}

// absPath is p made absolute ("" stays "").
func absPath(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return filepath.Clean(p)
}

// change is a prepared reconfiguration of a FileStorage.
type change struct {
	s       *Storage
	next    *Options
	summary []string // taken by Apply
}

// Apply implements stack.Change.
func (c *change) Apply() {
	c.summary = describe(c.s.live.Load(), c.next)
	c.s.live.Store(c.next)
	c.s.log.WithField("changes", strings.Join(c.summary, "; ")).Info("filestorage reconfigured")
}

// Discard implements stack.Change: nothing was changed.
func (c *change) Discard() {}

// Release implements stack.Change: nothing is dropped.
func (c *change) Release(context.Context) error { return nil }

// Summary implements stack.Change.
func (c *change) Summary() []string {
	if c.summary != nil {
		return c.summary
	}
	return describe(c.s.live.Load(), c.next)
}

// describe lists the keys a reconfiguration changes.
func describe(a, b *Options) []string {
	out := []string{}
	add := func(key string, x, y any, note string) {
		if x != y {
			out = append(out, fmt.Sprintf("%s %v -> %v%s", key, x, y, note))
		}
	}
	add("quota", int64(a.Quota), int64(b.Quota), "")
	add("pack-gc", a.PackGC, b.PackGC, "")
	add("pack-keep-old", a.PackKeepOld, b.PackKeepOld, "")
	add("packer", a.Packer, b.Packer, "")
	add("create", a.Create, b.Create, " (applies when the file is next opened)")
	return out
}

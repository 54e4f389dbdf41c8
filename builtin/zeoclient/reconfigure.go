package zeoclient

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

var _ stack.Reconfigurer = (*Storage)(nil)

// Reconfigure implements stack.Reconfigurer (docs/reload.md): the keys
// that do not change which server and storage the node talks to, nor how,
// change in place without dropping the connection: cache-size (the load
// cache shrinks or grows; 0 empties it), name, client-label (sent to the
// server at once), blob-cache-size and blob-cache-size-check; wait, and
// the keys zeoraid ignores, only matter at start-up. Another server,
// storage, read-only, read-only-fallback, blob-dir, shared-blob-dir or
// <ssl> is another connection: ErrReopen.
func (s *Storage) Reconfigure(_ context.Context, _ *stack.Node, opts any) (stack.Change, error) {
	o, ok := opts.(*Options)
	if !ok {
		return nil, fmt.Errorf("zeoclient: options of type %T, want *Options", opts)
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	next := *o
	if next.Storage == "" {
		next.Storage = "1"
	}
	if d := s.fixedChange(&next); d != "" {
		return nil, fmt.Errorf("%s: %w", d, stack.ErrReopen)
	}
	return &change{s: s, next: &next}, nil
}

// fixedChange names the first key of o that differs from the open node's
// and cannot change on a running connection, or "".
func (s *Storage) fixedChange(o *Options) string {
	a := &s.opts
	switch {
	case !reflect.DeepEqual(a.Server, o.Server):
		return fmt.Sprintf("server %s -> %s", addrs(a), addrs(o))
	case a.Storage != o.Storage:
		return fmt.Sprintf("storage %q -> %q", a.Storage, o.Storage)
	case a.ReadOnly != o.ReadOnly:
		return fmt.Sprintf("read-only %v -> %v", a.ReadOnly, o.ReadOnly)
	case a.ReadOnlyFallback != o.ReadOnlyFallback:
		return fmt.Sprintf("read-only-fallback %v -> %v", a.ReadOnlyFallback, o.ReadOnlyFallback)
	case absPath(string(a.BlobDir)) != absPath(string(o.BlobDir)):
		return fmt.Sprintf("blob-dir %q -> %q", a.BlobDir, o.BlobDir)
	case a.SharedBlobDir != o.SharedBlobDir:
		return fmt.Sprintf("shared-blob-dir %v -> %v", a.SharedBlobDir, o.SharedBlobDir)
	case !reflect.DeepEqual(a.SSL, o.SSL):
		return "<ssl> changed"
	}
	return ""
}

func addrs(o *Options) string {
	parts := make([]string, len(o.Server))
	for i, a := range o.Server {
		parts[i] = a.String()
	}
	return strings.Join(parts, ",")
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

// labelTimeout bounds sending a changed client-label.
const labelTimeout = 10 * time.Second

// change is a prepared reconfiguration of a zeoclient node.
type change struct {
	s       *Storage
	next    *Options
	summary []string // taken by Apply
}

// Apply implements stack.Change.
func (c *change) Apply() {
	s := c.s
	prev := s.cfg.Load()
	c.summary = describe(prev, c.next)
	s.cfg.Store(c.next)
	s.cache.resize(int64(c.next.CacheSize))
	if s.blobs != nil {
		s.blobs.setLimits(c.next)
	}
	if label := c.next.ClientLabel; label != prev.ClientLabel {
		// The next connection sends it as well; this one is told now,
		// without waiting for the server (Apply cannot fail).
		s.mu.Lock()
		ss := s.sess
		s.mu.Unlock()
		if ss != nil {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), labelTimeout)
				defer cancel()
				if err := ss.c.CallAsync(ctx, "set_client_label", label); err != nil {
					s.log.WithError(err).Warn("sending the changed client-label")
				}
			}()
		}
	}
	s.log.WithFields(logrus.Fields{"changes": strings.Join(c.summary, "; ")}).Info("zeoclient reconfigured")
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
	return describe(c.s.cfg.Load(), c.next)
}

// describe lists the keys a reconfiguration changes.
func describe(a, b *Options) []string {
	out := []string{}
	add := func(key string, x, y any) {
		if !reflect.DeepEqual(x, y) {
			out = append(out, fmt.Sprintf("%s %v -> %v", key, x, y))
		}
	}
	size := func(p *zconfig.ByteSize) any {
		if p == nil {
			return "unbounded"
		}
		return int64(*p)
	}
	add("cache-size", int64(a.CacheSize), int64(b.CacheSize))
	add("name", fmt.Sprintf("%q", a.Name), fmt.Sprintf("%q", b.Name))
	add("client-label", fmt.Sprintf("%q", a.ClientLabel), fmt.Sprintf("%q", b.ClientLabel))
	add("blob-cache-size", size(a.BlobCacheSize), size(b.BlobCacheSize))
	add("blob-cache-size-check", a.BlobCacheSizeCheck, b.BlobCacheSizeCheck)
	add("wait", a.Wait, b.Wait)
	return out
}

package host

import (
	"context"
	"fmt"

	"github.com/zeoraid/zeoraid/plugins/internal/wire"
	"github.com/zeoraid/zeoraid/plugins/proto"
	"github.com/zeoraid/zeoraid/stack"
)

// What a plugin storage may offer beyond stack.Storage, forwarded when it
// does: Empty (a RAID rebuilds a diverged child by emptying it) and
// extension calls (stack.Extender: the ZEO server lists and dispatches
// them as a builtin's).
var (
	_ stack.Extender         = (*Storage)(nil)
	_ stack.ReadOnlyExtender = (*Storage)(nil)
	_ interface {
		Empty(context.Context) error
	} = (*Storage)(nil)
)

// Empty drops every transaction of the plugin's storage, for a RAID's
// rebuild of this node. A plugin storage without an Empty of its own
// fails with ErrNotSupported: replace its data by an empty storage and
// recover instead.
func (s *Storage) Empty(ctx context.Context) (err error) {
	defer s.wrap(&err, "empty", nil, nil)
	if !s.canEmpty {
		return fmt.Errorf("the plugin's storage cannot be emptied (replace it with an empty one and recover): %w", stack.ErrNotSupported)
	}
	c, err := s.conn()
	if err != nil {
		return err
	}
	r, err := c.rpc.EmptyStorage(ctx, &proto.Empty{})
	s.blobs.clear()
	return s.answer(c, err, r)
}

// Extensions are the plugin storage's extension calls, each forwarded to
// the plugin with its arguments and result converted on the way (values
// of the ZEO wire only).
func (s *Storage) Extensions() map[string]stack.Extension {
	out := make(map[string]stack.Extension, len(s.extensions))
	for _, name := range s.extensions {
		out[name] = func(ctx context.Context, args []any) (any, error) { return s.extension(ctx, name, args) }
	}
	return out
}

// ReadOnlyExtensions are the extension calls the plugin storage declares
// read-only.
func (s *Storage) ReadOnlyExtensions() []string { return s.readOnly }

func (s *Storage) extension(ctx context.Context, name string, args []any) (_ any, err error) {
	defer s.wrap(&err, name, nil, nil)
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	vals, err := wire.Values(args)
	if err != nil {
		return nil, err
	}
	r, err := c.rpc.Extension(ctx, &proto.ExtensionRequest{Name: name, Args: vals})
	if err = s.answer(c, err, r); err != nil {
		return nil, err
	}
	return wire.ValueFrom(r.GetResult())
}

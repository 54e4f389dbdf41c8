package filestorage

import (
	"context"
	"fmt"

	"github.com/zeoraid/zeoraid/stack"
)

var _ stack.BulkRestorer = (*Storage)(nil)

// BeginBulk implements stack.BulkRestorer: Begin for a transaction whose
// Vote writes it after the end (status 'c' as always) and whose Finish
// flips the status and publishes it, both without an fsync. Each
// transaction is one write at the end of the file, so a crash keeps a
// prefix of them: reopening cuts a transaction that is partly written
// or still 'c' off the end (docs/filestorage.md).
func (s *Storage) BeginBulk(ctx context.Context, meta stack.TxnMeta) (stack.Txn, error) {
	t, err := s.Begin(ctx, meta)
	if err != nil {
		return nil, err
	}
	t.(*txn).bulk = true
	return t, nil
}

// SyncBulk implements stack.BulkRestorer: one fsync of Data.fs.
func (s *Storage) SyncBulk(ctx context.Context) (err error) {
	defer stack.WrapOp(&err, s.node, "sync", nil, nil)
	s.ioMu.RLock()
	defer s.ioMu.RUnlock()
	if s.isClosed() {
		return stack.ErrClosed
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("%s: fsync after bulk restore: %w", s.path, err)
	}
	return nil
}

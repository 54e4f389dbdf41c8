// Package blobstorage is <blobstorage>: it adds blob support to a storage
// that has none, keeping blob files in a ZODB blob directory beside it, as
// Python's ZODB.blob.BlobStorage wrapper does. ZEO's test harness and some
// deployments configure blobs this way:
//
//	<blobstorage>
//	  blob-dir var/blobs
//	  <filestorage>
//	    path var/Data.fs
//	  </filestorage>
//	</blobstorage>
//
// The wrapper chooses each transaction's tid itself and hands it to the
// child as an explicit tid, so blob files are in place under their final
// names (invisible until the record commits) before the child finishes.
package blobstorage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/blobdir"
	"github.com/zeoraid/zeoraid/zconfig"
)

// Options is the <blobstorage> section.
type Options struct {
	BlobDir zconfig.ExistingDirPath `zconfig:"blob-dir,required" doc:"the blob directory (created if missing; bushy layout)"`
}

func init() {
	stack.Register(stack.Module{
		Type:     "blobstorage",
		Doc:      "Adds blobs to the one storage section it contains (which must not have blobs of its own), as Python's BlobStorage wrapper: blob files live in blob-dir.",
		Options:  &Options{},
		Children: true,
		Open: func(ctx context.Context, n *stack.Node, opts any) (stack.Storage, error) {
			if len(n.Children) != 1 {
				return nil, fmt.Errorf("<blobstorage> needs exactly one storage section inside, found %d", len(n.Children))
			}
			s, err := New(n.Children[0], string(opts.(*Options).BlobDir), n.Log)
			if err != nil {
				return nil, err
			}
			s.node = n.Path
			return s, nil
		},
	})
}

// Storage is a child storage plus a blob directory.
type Storage struct {
	stack.Storage
	blobs *blobdir.Dir
	log   logrus.FieldLogger
	// node names the wrapper in errors (stack.OpError): its node path
	// when built from a configuration, else the blob directory. Errors
	// from the child keep the child's own.
	node string

	// commit is a one-slot token held from Begin to Finish or Abort: the
	// wrapper picks each tid itself, so transactions must reach the child
	// in tid order.
	commit  chan struct{}
	lastTid stack.Tid // the newest tid this wrapper handed out; guarded by commit
	closed  chan struct{}
	once    sync.Once
}

// Close closes the child; transactions waiting in Begin fail with
// stack.ErrClosed.
func (s *Storage) Close() error {
	s.once.Do(func() { close(s.closed) })
	return s.Storage.Close()
}

// New wraps child, which must honour explicit tids (Restore capability) and
// must not have blobs itself.
func New(child stack.Storage, dir string, log logrus.FieldLogger) (*Storage, error) {
	caps := child.Capabilities()
	if caps.Blobs {
		return nil, errors.New("<blobstorage>: the storage inside already has blobs")
	}
	if !caps.Restore {
		return nil, errors.New("<blobstorage>: the storage inside cannot take explicit transaction ids")
	}
	bd, err := blobdir.Open(dir, caps.ReadOnly)
	if err != nil {
		return nil, err
	}
	if log == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		log = l
	}
	return &Storage{Storage: child, blobs: bd, log: log, node: dir, commit: make(chan struct{}, 1), closed: make(chan struct{})}, nil
}

// The calls below are the child's; they go through the wrapper's boundary
// so that an error names a node even when the child does not.

// LoadBefore implements stack.Storage by delegation.
func (s *Storage) LoadBefore(ctx context.Context, oid stack.Oid, before stack.Tid) (_ stack.Revision, err error) {
	defer stack.WrapOp(&err, s.node, "loadBefore", &oid, &before)
	return s.Storage.LoadBefore(ctx, oid, before)
}

// LoadSerial implements stack.Storage by delegation.
func (s *Storage) LoadSerial(ctx context.Context, oid stack.Oid, serial stack.Tid) (_ []byte, err error) {
	defer stack.WrapOp(&err, s.node, "loadSerial", &oid, &serial)
	return s.Storage.LoadSerial(ctx, oid, serial)
}

// History implements stack.Storage by delegation.
func (s *Storage) History(ctx context.Context, oid stack.Oid, size int) (_ []stack.HistoryEntry, err error) {
	defer stack.WrapOp(&err, s.node, "history", &oid, nil)
	return s.Storage.History(ctx, oid, size)
}

// LastTransaction implements stack.Storage by delegation.
func (s *Storage) LastTransaction(ctx context.Context) (_ stack.Tid, err error) {
	defer stack.WrapOp(&err, s.node, "lastTransaction", nil, nil)
	return s.Storage.LastTransaction(ctx)
}

// NewOIDs implements stack.Storage by delegation.
func (s *Storage) NewOIDs(ctx context.Context, n int) (_ []stack.Oid, err error) {
	defer stack.WrapOp(&err, s.node, "new_oids", nil, nil)
	return s.Storage.NewOIDs(ctx, n)
}

// Info implements stack.Storage by delegation.
func (s *Storage) Info(ctx context.Context) (_ stack.Info, err error) {
	defer stack.WrapOp(&err, s.node, "get_info", nil, nil)
	return s.Storage.Info(ctx)
}

// Capabilities are the child's plus blobs.
func (s *Storage) Capabilities() stack.Capabilities {
	c := s.Storage.Capabilities()
	c.Blobs = true
	return c
}

// LoadBlob implements stack.Blobber.
func (s *Storage) LoadBlob(ctx context.Context, oid stack.Oid, serial stack.Tid) (_ string, err error) {
	defer stack.WrapOp(&err, s.node, "loadBlob", &oid, &serial)
	p := s.blobs.File(oid, serial)
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", &stack.NotFoundError{Oid: oid, Tid: serial}
		}
		return "", err
	}
	return p, nil
}

// BlobTempDir implements stack.Blobber.
func (s *Storage) BlobTempDir() string { return s.blobs.TempDir() }

// Iterate, RecordIterNext, UndoLog: the child's, when it has them.

// Iterate implements stack.Iterator by delegation.
func (s *Storage) Iterate(ctx context.Context, start, stop stack.Tid) (_ stack.TxnIterator, err error) {
	defer stack.WrapOp(&err, s.node, "iterator_start", nil, nil)
	it, ok := stack.AsIterator(s.Storage)
	if !ok {
		return nil, stack.ErrNotSupported
	}
	return it.Iterate(ctx, start, stop)
}

// RecordIterNext implements stack.RecordIterator by delegation.
func (s *Storage) RecordIterNext(ctx context.Context, from stack.Oid) (_ stack.DataRecord, _ stack.Oid, _ bool, err error) {
	defer stack.WrapOp(&err, s.node, "record_iternext", &from, nil)
	ri, ok := stack.AsRecordIterator(s.Storage)
	if !ok {
		return stack.DataRecord{}, 0, false, stack.ErrNotSupported
	}
	return ri.RecordIterNext(ctx, from)
}

// UndoLog implements stack.Undoer by delegation.
func (s *Storage) UndoLog(ctx context.Context, first, last int, match func(stack.UndoInfo) bool) (_ []stack.UndoInfo, err error) {
	defer stack.WrapOp(&err, s.node, "undoLog", nil, nil)
	u, ok := stack.AsUndoer(s.Storage)
	if !ok {
		return nil, stack.ErrNotSupported
	}
	return u.UndoLog(ctx, first, last, match)
}

// Pack packs the child, then removes the blob files of revisions the child
// no longer has.
func (s *Storage) Pack(ctx context.Context, t time.Time, gc bool) (err error) {
	defer stack.WrapOp(&err, s.node, "pack", nil, nil)
	p, ok := stack.AsPacker(s.Storage)
	if !ok {
		return stack.ErrNotSupported
	}
	if err := p.Pack(ctx, t, gc); err != nil {
		return err
	}
	return s.removeUnreachableBlobs(ctx)
}

func (s *Storage) removeUnreachableBlobs(ctx context.Context) error {
	removed := 0
	err := filepath.WalkDir(s.blobs.Path, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".blob") {
			return err
		}
		oid, tid, ok := s.parse(path)
		if !ok {
			return nil
		}
		_, lerr := s.Storage.LoadSerial(ctx, oid, tid)
		var nf *stack.NotFoundError
		if errors.As(lerr, &nf) {
			removed++
			return os.Remove(path)
		}
		return lerr
	})
	s.log.WithField("removed", removed).Info("pack removed blob files of packed revisions")
	return err
}

// parse reads the oid and tid back from a blob file's path.
func (s *Storage) parse(path string) (stack.Oid, stack.Tid, bool) {
	rel, err := filepath.Rel(s.blobs.Path, path)
	if err != nil {
		return 0, 0, false
	}
	parts := strings.Split(rel, string(filepath.Separator))
	if len(parts) < 2 {
		return 0, 0, false
	}
	var hex string
	for _, p := range parts[:len(parts)-1] {
		hex += strings.TrimPrefix(p, "0x")
	}
	oid, err1 := strconv.ParseUint(hex, 16, 64)
	tid, err2 := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(parts[len(parts)-1], "0x"), ".blob"), 16, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return stack.Oid(oid), stack.Tid(tid), true
}

// Begin starts a child transaction with a tid of the wrapper's choosing, so
// blob files can take their final names before the commit.
func (s *Storage) Begin(ctx context.Context, meta stack.TxnMeta) (_ stack.Txn, err error) {
	defer stack.WrapOp(&err, s.node, "tpc_begin", nil, nil)
	select {
	case <-s.closed:
		return nil, stack.ErrClosed
	default:
	}
	select {
	case s.commit <- struct{}{}:
	case <-s.closed:
		return nil, stack.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	release := func() { <-s.commit }
	if meta.Tid == 0 {
		last, err := s.Storage.LastTransaction(ctx)
		if err != nil {
			release()
			return nil, err
		}
		meta.Tid = stack.NewTid(max(last, s.lastTid), time.Now())
	}
	tx, err := s.Storage.Begin(ctx, meta)
	if err != nil {
		release()
		return nil, err
	}
	s.lastTid = max(s.lastTid, meta.Tid)
	return &txn{Txn: tx, s: s, tid: meta.Tid, release: release}, nil
}

// txn places blob files under their final names as they are stored, and
// removes them again if the transaction aborts.
type txn struct {
	stack.Txn
	s       *Storage
	tid     stack.Tid
	placed  []string
	release func() // gives the commit token back, once
}

// done releases the commit token after Finish or Abort.
func (t *txn) done() {
	if t.release != nil {
		t.release()
		t.release = nil
	}
}

// Store implements stack.Txn by delegation.
func (t *txn) Store(ctx context.Context, oid stack.Oid, serial stack.Tid, data []byte) (err error) {
	defer stack.WrapOp(&err, t.s.node, "store", &oid, &t.tid)
	return t.Txn.Store(ctx, oid, serial, data)
}

// CheckCurrentSerial implements stack.Txn by delegation.
func (t *txn) CheckCurrentSerial(ctx context.Context, oid stack.Oid, serial stack.Tid) (err error) {
	defer stack.WrapOp(&err, t.s.node, "checkCurrentSerial", &oid, &t.tid)
	return t.Txn.CheckCurrentSerial(ctx, oid, serial)
}

// Finish commits in the child and ends the transaction.
func (t *txn) Finish(ctx context.Context) (_ stack.Tid, err error) {
	defer stack.WrapOp(&err, t.s.node, "tpc_finish", nil, &t.tid)
	tid, err := t.Txn.Finish(ctx)
	if err == nil {
		t.placed = nil
		t.done()
	}
	return tid, err
}

func (t *txn) place(src string, oid stack.Oid, keep bool) error {
	dst, err := t.s.blobs.Place(src, oid, t.tid, keep)
	if err != nil {
		return err
	}
	t.placed = append(t.placed, dst)
	return nil
}

// StoreBlob implements stack.BlobTxn.
func (t *txn) StoreBlob(ctx context.Context, oid stack.Oid, serial stack.Tid, data []byte, blobPath string) (err error) {
	defer stack.WrapOp(&err, t.s.node, "storeBlob", &oid, &t.tid)
	if err := t.Txn.Store(ctx, oid, serial, data); err != nil {
		os.Remove(blobPath)
		return err
	}
	return t.place(blobPath, oid, false)
}

// RestoreBlob implements stack.BlobTxn.
func (t *txn) RestoreBlob(ctx context.Context, oid stack.Oid, data []byte, blobPath string, prevTxn stack.Tid) (err error) {
	defer stack.WrapOp(&err, t.s.node, "restoreBlob", &oid, &t.tid)
	rt, ok := t.Txn.(stack.RestoreTxn)
	if !ok {
		return stack.ErrNotSupported
	}
	if err := rt.Restore(ctx, oid, data, prevTxn); err != nil {
		return err
	}
	return t.place(blobPath, oid, false)
}

// Restore implements stack.RestoreTxn by delegation.
func (t *txn) Restore(ctx context.Context, oid stack.Oid, data []byte, prevTxn stack.Tid) (err error) {
	defer stack.WrapOp(&err, t.s.node, "restore", &oid, &t.tid)
	rt, ok := t.Txn.(stack.RestoreTxn)
	if !ok {
		return stack.ErrNotSupported
	}
	return rt.Restore(ctx, oid, data, prevTxn)
}

// Delete implements stack.DeleteTxn by delegation.
func (t *txn) Delete(ctx context.Context, oid stack.Oid, serial stack.Tid) (err error) {
	defer stack.WrapOp(&err, t.s.node, "deleteObject", &oid, &t.tid)
	dt, ok := t.Txn.(stack.DeleteTxn)
	if !ok {
		return stack.ErrNotSupported
	}
	return dt.Delete(ctx, oid, serial)
}

// Undo undoes in the child and gives every object whose restored state has
// a blob that blob again under this transaction's tid, as Python's
// BlobStorage does.
func (t *txn) Undo(ctx context.Context, id []byte) (_ []stack.Oid, err error) {
	defer stack.WrapOp(&err, t.s.node, "undo", nil, &t.tid)
	ut, ok := t.Txn.(stack.UndoTxn)
	if !ok {
		return nil, stack.ErrNotSupported
	}
	oids, err := ut.Undo(ctx, id)
	if err != nil {
		return nil, err
	}
	undone, err := t.undoneTid(ctx, id)
	if err != nil {
		return nil, err
	}
	for _, oid := range oids {
		rev, err := t.s.Storage.LoadBefore(ctx, oid, undone)
		var nf *stack.NotFoundError
		if errors.As(err, &nf) || (err == nil && !rev.Found()) {
			continue // the undo removes the object: no blob
		}
		if err != nil {
			return nil, err
		}
		src := t.s.blobs.File(oid, rev.Serial)
		if _, err := os.Stat(src); err != nil {
			continue // not a blob
		}
		if err := t.place(src, oid, true); err != nil {
			return nil, err
		}
	}
	return oids, nil
}

// undoneTid finds the tid of the transaction an undo id names.
func (t *txn) undoneTid(ctx context.Context, id []byte) (stack.Tid, error) {
	u, ok := stack.AsUndoer(t.s.Storage)
	if !ok {
		return 0, stack.ErrNotSupported
	}
	infos, err := u.UndoLog(ctx, 0, -1, func(ui stack.UndoInfo) bool { return string(ui.ID) == string(id) })
	if err != nil {
		return 0, err
	}
	if len(infos) == 0 {
		return 0, &stack.UndoError{Reason: "no such transaction to undo"}
	}
	return infos[0].Tid, nil
}

// Vote makes the placed blob files durable before the child votes: a
// committed record must never lack its blob after a crash.
func (t *txn) Vote(ctx context.Context) (_ []stack.Oid, err error) {
	defer stack.WrapOp(&err, t.s.node, "tpc_vote", nil, &t.tid)
	for _, p := range t.placed {
		if err := syncFile(p); err != nil {
			return nil, err
		}
	}
	return t.Txn.Vote(ctx)
}

// syncFile flushes a file and its directory entry to disk.
func syncFile(path string) error {
	for _, p := range []string{path, filepath.Dir(path)} {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// Abort aborts the child and removes the blob files placed for it.
func (t *txn) Abort(ctx context.Context) (err error) {
	defer stack.WrapOp(&err, t.s.node, "tpc_abort", nil, &t.tid)
	err = t.Txn.Abort(ctx)
	for _, p := range t.placed {
		os.Remove(p)
	}
	t.placed = nil
	t.done()
	return err
}

package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/zeoraid/zeoraid/zconfig"
)

// CallBound derives the context of one call to a storage from the context
// of a longer operation (a copy, a recovery): typically a per-call
// timeout. A nil CallBound only derives a cancelable context.
type CallBound func(ctx context.Context) (context.Context, context.CancelFunc)

func (b CallBound) call(ctx context.Context, f func(ctx context.Context) error) error {
	var cctx context.Context
	var cancel context.CancelFunc
	if b == nil {
		cctx, cancel = context.WithCancel(ctx)
	} else {
		cctx, cancel = b(ctx)
	}
	defer cancel()
	return f(cctx)
}

// Timeout is the CallBound of a fixed per-call timeout (none when d <= 0).
func Timeout(d time.Duration) CallBound {
	return func(ctx context.Context) (context.Context, context.CancelFunc) {
		if d <= 0 {
			return context.WithCancel(ctx)
		}
		return context.WithTimeout(ctx, d)
	}
}

// blobModule is in the pickle of every ZODB.blob.Blob record.
var blobModule = []byte("ZODB.blob")

// IsBlobRecord reports whether a data record may have a blob, as ZODB's
// is_blob_record decides: its pickle names the ZODB.blob module. Copies ask
// only such records for a blob, as ZODB's copyTransactionsFrom does, which
// spares a remote source a sendBlob round trip for every other record.
func IsBlobRecord(data []byte) bool {
	return data != nil && bytes.Contains(data, blobModule)
}

// StageBlob puts a copy of the blob file at path into dst's blob
// temporary directory, where a BlobTxn of dst may take it over: a hard
// link when both are on one file system, else a byte copy. The file at
// path is never changed.
func StageBlob(path string, dst Blobber) (string, error) {
	f, err := os.CreateTemp(dst.BlobTempDir(), "staged-*.blob")
	if err != nil {
		return "", err
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	if err := os.Link(path, name); err == nil {
		return name, nil
	}
	src, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer src.Close()
	out, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(out, src)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

// ErrSource marks an error of the source storage in RestoreTransaction and
// Copy, so that callers (a RAID recovery) can tell which side failed.
var ErrSource = errors.New("source")

// sourceError wraps a failure of the source so that errors.Is(err,
// ErrSource) holds and the cause's chain is kept.
type sourceError struct{ err error }

func (e *sourceError) Error() string   { return "source: " + e.err.Error() }
func (e *sourceError) Unwrap() []error { return []error{ErrSource, e.err} }
func wrapSource(err error) error       { return &sourceError{err} }

// RestoreTransaction writes tr, one transaction read from src's iterator,
// to dst through the restore path (ZODB's copyTransactionsFrom step): the
// same tid, status, user, description and extension, every data record
// with its backpointer, and the blob of every blob record that src has.
// It returns the number of data bytes written. On any error the
// destination's transaction is aborted, so dst never has part of tr.
// Errors of src satisfy errors.Is(err, ErrSource).
func RestoreTransaction(ctx context.Context, src, dst Storage, tr TxnRecord, bound CallBound) (int64, error) {
	return restoreOne(ctx, src, dst, tr, bound, dst.Begin)
}

// RestoreTransactions writes trs, consecutive transactions read from
// src's iterator, to dst as RestoreTransaction writes each. When dst is a
// BulkRestorer they go in one bulk, made durable by one SyncBulk at the
// end (or after the last transaction written when one fails). It returns
// how many of trs are on dst for good (all, or those before the one that
// failed) with their data bytes, and the error. Each transaction is
// written whole: when ctx ends, the bulk stops between two with ctx's
// error. Errors of src satisfy errors.Is(err, ErrSource).
func RestoreTransactions(ctx context.Context, src, dst Storage, trs []TxnRecord, bound CallBound) (int, int64, error) {
	begin := dst.Begin
	bulk, isBulk := AsBulkRestorer(dst)
	if isBulk {
		begin = bulk.BeginBulk
	}
	done, size, err := restoreRun(ctx, src, dst, trs, bound, begin)
	if isBulk && done > 0 {
		if serr := bound.call(context.WithoutCancel(ctx), bulk.SyncBulk); serr != nil {
			return 0, 0, errors.Join(err, fmt.Errorf("sync after %s: %w", trs[done-1].Tid, serr))
		}
	}
	return done, size, err
}

// restoreRun restores trs one after the other, each begun by begin, and
// returns how many it wrote, their data bytes, and the error that
// stopped it (ctx's between two transactions).
func restoreRun(ctx context.Context, src, dst Storage, trs []TxnRecord, bound CallBound, begin func(context.Context, TxnMeta) (Txn, error)) (int, int64, error) {
	var size int64
	// Each transaction is written whole: ctx ends the run between two.
	wctx := context.WithoutCancel(ctx)
	for i, tr := range trs {
		if err := ctx.Err(); err != nil {
			return i, size, err
		}
		n, err := restoreOne(wctx, src, dst, tr, bound, begin)
		if err != nil {
			return i, size, err
		}
		size += n
	}
	return len(trs), size, nil
}

// BulkWriter writes batches of consecutive source transactions to dst as
// RestoreTransactions does, except that a BulkRestorer's SyncBulk of one
// batch runs while the next batch is written: the disk writes back one
// bulk while the next is copied. A BulkWriter is used by one goroutine;
// Flush it before dropping it.
type BulkWriter struct {
	src, dst Storage
	bound    CallBound
	bulk     BulkRestorer // nil when dst is none
	syncing  []TxnRecord  // written, being synced
	synced   chan error
}

// NewBulkWriter returns a BulkWriter from src into dst.
func NewBulkWriter(src, dst Storage, bound CallBound) *BulkWriter {
	w := &BulkWriter{src: src, dst: dst, bound: bound}
	if b, ok := AsBulkRestorer(dst); ok {
		w.bulk = b
	}
	return w
}

// Write writes batch and returns the transactions that are durable now,
// in order: those of the previous batch, whose sync ran meanwhile (of
// this batch, for a destination that is no BulkRestorer, or when a write
// failed), and the first error. After an error, Flush and drop it.
func (w *BulkWriter) Write(ctx context.Context, batch []TxnRecord) ([]TxnRecord, error) {
	if w.bulk == nil {
		n, _, err := RestoreTransactions(ctx, w.src, w.dst, batch, w.bound)
		return batch[:n], err
	}
	n, _, err := restoreRun(ctx, w.src, w.dst, batch, w.bound, w.bulk.BeginBulk)
	durable, serr := w.Flush()
	if serr != nil {
		return nil, errors.Join(err, serr)
	}
	if n > 0 {
		w.syncing, w.synced = batch[:n], make(chan error, 1)
		go func() { w.synced <- w.bound.call(context.Background(), w.bulk.SyncBulk) }()
	}
	if err != nil {
		more, serr := w.Flush()
		return append(durable, more...), errors.Join(err, serr)
	}
	return durable, nil
}

// Flush waits for the sync in progress, if any, and returns the
// transactions it made durable.
func (w *BulkWriter) Flush() ([]TxnRecord, error) {
	if w.synced == nil {
		return nil, nil
	}
	err := <-w.synced
	trs := w.syncing
	w.syncing, w.synced = nil, nil
	if err != nil {
		return nil, fmt.Errorf("sync after %s: %w", trs[len(trs)-1].Tid, err)
	}
	return trs, nil
}

// restoreOne is RestoreTransaction with the destination's transaction
// begun by begin (dst.Begin, or a BulkRestorer's BeginBulk).
func restoreOne(ctx context.Context, src, dst Storage, tr TxnRecord, bound CallBound, begin func(context.Context, TxnMeta) (Txn, error)) (int64, error) {
	var txn Txn
	fail := func(op string, err error) (int64, error) {
		if txn != nil {
			_ = bound.call(context.WithoutCancel(ctx), txn.Abort)
		}
		return 0, fmt.Errorf("%s %s: %w", op, tr.Tid, err)
	}
	if !dst.Capabilities().Restore {
		return fail("tpc_begin", fmt.Errorf("the destination cannot restore: %w", ErrNotSupported))
	}
	meta := tr.TxnMeta
	if err := bound.call(ctx, func(ctx context.Context) (err error) { txn, err = begin(ctx, meta); return err }); err != nil {
		return fail("tpc_begin", err)
	}
	rt, ok := txn.(RestoreTxn)
	if !ok {
		return fail("restore", fmt.Errorf("the destination reports restore but its transaction cannot: %w", ErrNotSupported))
	}
	srcBlobs, blobs := AsBlobber(src)
	var size int64
	// Consecutive records without a blob are restored as one call: a
	// restore only adds a record to the destination's transaction.
	var run []DataRecord
	flush := func() error {
		if len(run) == 0 {
			return nil
		}
		err := bound.call(ctx, func(ctx context.Context) error {
			for _, d := range run {
				if err := rt.Restore(ctx, d.Oid, d.Data, d.DataTxn); err != nil {
					return err
				}
			}
			return nil
		})
		run = run[:0]
		return err
	}
	for _, d := range tr.Records {
		size += int64(len(d.Data))
		blob := ""
		if blobs && IsBlobRecord(d.Data) {
			err := bound.call(ctx, func(ctx context.Context) (err error) { blob, err = srcBlobs.LoadBlob(ctx, d.Oid, tr.Tid); return err })
			var nf *NotFoundError
			if errors.As(err, &nf) {
				blob = ""
			} else if err != nil {
				return fail("loadBlob", wrapSource(err))
			}
		}
		if blob == "" {
			run = append(run, d)
			continue
		}
		if err := flush(); err != nil {
			return fail("restore", err)
		}
		bt, ok := txn.(BlobTxn)
		db, dok := AsBlobber(dst)
		if !ok || !dok {
			return fail("restoreBlob", fmt.Errorf("the destination cannot store blobs: %w", ErrNotSupported))
		}
		staged, serr := StageBlob(blob, db)
		if serr != nil {
			return fail("restoreBlob", serr)
		}
		err := bound.call(ctx, func(ctx context.Context) error {
			return bt.RestoreBlob(ctx, d.Oid, d.Data, staged, d.DataTxn)
		})
		if err != nil {
			return fail("restoreBlob", err)
		}
	}
	if err := flush(); err != nil {
		return fail("restore", err)
	}
	if err := bound.call(ctx, func(ctx context.Context) error { _, err := txn.Vote(ctx); return err }); err != nil {
		return fail("tpc_vote", err)
	}
	var tid Tid
	if err := bound.call(ctx, func(ctx context.Context) (err error) { tid, err = txn.Finish(ctx); return err }); err != nil {
		return fail("tpc_finish", err)
	}
	if tid != tr.Tid {
		return 0, fmt.Errorf("restored %s as %s", tr.Tid, tid)
	}
	return size, nil
}

// CopyOptions control Copy.
type CopyOptions struct {
	// Start is the first tid copied; 0 copies the whole history.
	Start Tid
	// Bound derives each call's context (nil: no per-call timeout).
	Bound CallBound
	// ReadAhead is how many source transactions are read ahead while the
	// destination writes, at most (and at most 2*BulkBytes of data); 0
	// means 4096. A destination that is a BulkRestorer takes those read
	// ahead in one bulk of up to BulkBytes.
	ReadAhead int
	// Progress, if not nil, is called after every copied transaction.
	Progress func(CopyProgress)
}

// CopyProgress counts what a Copy has written so far.
type CopyProgress struct {
	Tid          Tid   // the last transaction copied
	Transactions int64 // transactions copied
	Bytes        int64 // data bytes copied
}

// BulkBytes bounds the data of the transactions Copy and a RAID
// recovery hand a BulkRestorer in one bulk (one fsync).
const BulkBytes = 16 << 20

// Copy copies src's transactions from opts.Start on into dst through the
// restore path, reading ahead from src on a goroutine of its own: each
// transaction as RestoreTransaction writes it, those read ahead by the
// time the destination is ready in one RestoreTransactions (one fsync
// for a BulkRestorer). Cancelling ctx stops the copy between two
// transactions: the transaction being written is finished first (each
// call still bounded by opts.Bound), so dst always ends at a whole
// transaction of src, and Copy returns ctx's error with what was copied.
func Copy(ctx context.Context, src, dst Storage, opts CopyOptions) (done CopyProgress, rerr error) {
	it, ok := AsIterator(src)
	if !ok {
		return done, fmt.Errorf("copy: the source cannot be iterated: %w", ErrNotSupported)
	}
	if !dst.Capabilities().Restore {
		return done, fmt.Errorf("copy: the destination cannot restore: %w", ErrNotSupported)
	}
	ahead := opts.ReadAhead
	if ahead <= 0 {
		ahead = 4096
	}
	ti, err := it.Iterate(ctx, opts.Start, 0)
	if err != nil {
		return done, wrapSource(fmt.Errorf("iterate: %w", err))
	}
	ra := StartReadAhead(ctx, ti, ahead, opts.Bound)
	defer ra.Close()
	bw := NewBulkWriter(src, dst, opts.Bound)
	count := func(trs []TxnRecord) {
		for _, tr := range trs {
			done.Tid, done.Transactions, done.Bytes = tr.Tid, done.Transactions+1, done.Bytes+int64(recordBytes(tr))
			if opts.Progress != nil {
				opts.Progress(done)
			}
		}
	}
	// Whatever way Copy returns, the last batch is synced and counted.
	defer func() {
		durable, err := bw.Flush()
		count(durable)
		if err != nil && rerr == nil {
			rerr = err
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return done, err
		}
		batch, err := ra.Batch(ctx)
		if err != nil && ctx.Err() != nil {
			return done, ctx.Err()
		}
		if err != nil {
			return done, wrapSource(fmt.Errorf("iterate: %w", err))
		}
		if len(batch) == 0 {
			return done, ctx.Err()
		}
		durable, err := bw.Write(ctx, batch)
		count(durable)
		if err != nil {
			return done, err
		}
	}
}

// ReadAhead reads a TxnIterator on a goroutine of its own, some
// transactions ahead of its reader, and hands them out in batches: what
// was read while the reader wrote the previous batch.
type ReadAhead struct {
	ch     chan fetched
	cancel context.CancelFunc
	err    error // the source's, once its transactions before it were handed out

	// Data bytes read but not yet handed out, at most 2*BulkBytes (one
	// bulk being written, one being read) besides one transaction.
	mu      sync.Mutex
	room    *sync.Cond
	pending int
}

// fetched is one source transaction read ahead, or the source's error.
type fetched struct {
	rec TxnRecord
	err error
}

// StartReadAhead starts reading ti, at most ahead transactions ahead,
// each Next bounded by bound. Close it when done; it closes ti.
func StartReadAhead(ctx context.Context, ti TxnIterator, ahead int, bound CallBound) *ReadAhead {
	rctx, cancel := context.WithCancel(ctx)
	ra := &ReadAhead{ch: make(chan fetched, ahead), cancel: cancel}
	ra.room = sync.NewCond(&ra.mu)
	stop := context.AfterFunc(rctx, func() {
		ra.mu.Lock()
		ra.room.Broadcast()
		ra.mu.Unlock()
	})
	go func() {
		defer close(ra.ch)
		defer ti.Close()
		defer stop()
		for {
			var rec TxnRecord
			var ok bool
			err := bound.call(rctx, func(ctx context.Context) (err error) { rec, ok, err = ti.Next(ctx); return err })
			if err == nil && !ok {
				return
			}
			n := recordBytes(rec)
			ra.mu.Lock()
			for ra.pending > 0 && ra.pending+n > 2*BulkBytes && rctx.Err() == nil {
				ra.room.Wait()
			}
			ra.pending += n
			ra.mu.Unlock()
			select {
			case ra.ch <- fetched{rec, err}:
			case <-rctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ra
}

// Batch waits for the next transaction and returns it with those already
// read after it, up to BulkBytes of data; an empty batch at the end. The
// source's error comes once the transactions read before it were
// returned; ctx's error when ctx ends while waiting.
func (ra *ReadAhead) Batch(ctx context.Context) ([]TxnRecord, error) {
	if ra.err != nil {
		return nil, ra.err
	}
	var batch []TxnRecord
	size := 0
	take := func(f fetched) {
		if f.err != nil {
			ra.err = f.err
			return
		}
		n := recordBytes(f.rec)
		batch = append(batch, f.rec)
		size += n
		ra.mu.Lock()
		ra.pending -= n
		ra.room.Signal()
		ra.mu.Unlock()
	}
	select {
	case f, ok := <-ra.ch:
		if !ok {
			return nil, nil
		}
		take(f)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for ra.err == nil && size < BulkBytes {
		select {
		case f, ok := <-ra.ch:
			if !ok {
				return batch, nil
			}
			take(f)
		default:
			return batch, nil
		}
	}
	if len(batch) == 0 {
		return nil, ra.err
	}
	return batch, nil
}

// Close stops reading and waits for the reading goroutine.
func (ra *ReadAhead) Close() {
	ra.cancel()
	for range ra.ch {
	}
}

// recordBytes is the data size of a transaction record.
func recordBytes(tr TxnRecord) int {
	n := 0
	for _, d := range tr.Records {
		n += len(d.Data)
	}
	return n
}

// LoadStorageConfig reads a configuration of storage sections only, as
// zodbconvert's and `zeoraid copy`'s are: no <zeo> is required, and
// <zeo>, <eventlog> and <runner>, if present, are ignored. Errors are
// positioned as LoadConfig's.
func LoadStorageConfig(path string) (*Config, error) {
	root, err := zconfig.ParseFile(path)
	if err != nil {
		return nil, err
	}
	cfg := &Config{}
	var errs zconfig.ErrorList
	for _, k := range root.Keys {
		errs = append(errs, &zconfig.Error{Pos: k.Pos, Msg: fmt.Sprintf("key %q is not allowed at the top level; only storage sections are", k.Name)})
	}
	collectImports(root, &cfg.Imports)
	for _, s := range root.Sections {
		switch s.Type {
		case "zeo", "eventlog", "runner", "logger":
		default:
			cfg.Storages = append(cfg.Storages, s)
		}
	}
	errs = append(errs, checkStorageNames(cfg.Storages)...)
	if len(errs) > 0 {
		return cfg, errs
	}
	return cfg, nil
}

package badgerstorage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
)

// write is one object record of an open transaction.
type write struct {
	oid     stack.Oid
	serial  stack.Tid // the tid the writer read, checked at Vote when check
	check   bool      // not for Restore and Undo
	data    []byte    // nil: a deletion or an undone creation
	dataTxn stack.Tid
}

type txnState int

const (
	txnOpen txnState = iota
	txnVoted
	txnDone
)

// txn is a transaction in progress; it holds the commit lock. Its
// records stay in memory until Vote, which writes them at the
// transaction's tid: in one Badger transaction committed by Finish
// together with the transaction record when they fit, else in several
// ("spilled"), the last one again with the record. Readers read at the
// last committed tid, so they see none of it before Finish.
type txn struct {
	s        *Storage
	meta     stack.TxnMeta
	tid      stack.Tid
	state    txnState
	writes   []*write // in first-store order; a later store of an oid replaces its entry
	byOid    map[stack.Oid]*write
	checks   map[stack.Oid]stack.Tid
	clashes  stack.Conflicts // found at StoreBlob, reported by Vote
	resolved []stack.Oid     // oids changed by Undo
	blobs    []string        // blob files placed for this transaction
	size     int64           // bytes of data
	created  int             // oids that had no revision before
	batch    *badger.Txn     // entries not yet committed to Badger
	spilled  bool            // some entries were committed before Finish
}

var errFinished = fmt.Errorf("%w: transaction already finished or aborted", stack.ErrTxnState)

// Begin is tpc_begin: it takes the commit lock (waiting for it within
// ctx) and allocates the tid, or checks the explicit one, which must
// follow the last transaction.
func (s *Storage) Begin(ctx context.Context, meta stack.TxnMeta) (stack.Txn, error) {
	if s.opts.ReadOnly {
		return nil, stack.ErrReadOnly
	}
	switch meta.Status {
	case 0:
		meta.Status = ' '
	case ' ', 'p', 'u':
	default:
		return nil, &stack.StorageError{Msg: fmt.Sprintf("transaction status %q cannot be written (only ' ', 'p' and 'u')", meta.Status)}
	}
	select {
	case s.commitLock <- struct{}{}:
	case <-s.done:
		return nil, stack.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	fail := func(err error) (stack.Txn, error) {
		<-s.commitLock
		return nil, err
	}
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	broken := s.brokenErr()
	if closed {
		return fail(stack.ErrClosed)
	}
	if broken != nil {
		return fail(broken)
	}
	last := stack.Tid(s.last.Load())
	tid := meta.Tid
	if tid != 0 {
		if tid <= last {
			return fail(&stack.StorageError{Msg: fmt.Sprintf("transaction id %s is not after the last transaction %s", tid, last)})
		}
	} else {
		tid = stack.NewTid(max(s.lastTs, last), time.Now())
	}
	s.lastTs = tid
	meta.Tid = tid
	meta.User, meta.Description, meta.Extension = clone(meta.User), clone(meta.Description), clone(meta.Extension)
	return &txn{s: s, meta: meta, tid: tid, byOid: map[stack.Oid]*write{}, checks: map[stack.Oid]stack.Tid{}}, nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// usable checks the transaction still takes records.
func (t *txn) usable(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	switch t.state {
	case txnDone:
		return errFinished
	case txnVoted:
		return fmt.Errorf("%w: transaction already voted", stack.ErrTxnState)
	}
	t.s.mu.RLock()
	defer t.s.mu.RUnlock()
	if t.s.closed {
		return stack.ErrClosed
	}
	return nil
}

func (t *txn) put(w *write) {
	t.clashes = slices.DeleteFunc(t.clashes, func(c *stack.ConflictError) bool { return c.Oid == w.oid })
	if old, ok := t.byOid[w.oid]; ok {
		*old = *w
		return
	}
	t.byOid[w.oid] = w
	t.writes = append(t.writes, w)
}

// Store is ZODB's store; a stale serial is reported by Vote.
func (t *txn) Store(ctx context.Context, oid stack.Oid, serial stack.Tid, data []byte) error {
	if err := t.usable(ctx); err != nil {
		return err
	}
	if len(data) == 0 {
		return fmt.Errorf("oid %s: %w", oid, stack.ErrEmptyData)
	}
	t.put(&write{oid: oid, serial: serial, check: true, data: clone(data)})
	return nil
}

// current returns oid's newest committed revision.
func (t *txn) current(ctx context.Context, oid stack.Oid) (revision, bool, error) {
	var r revision
	var found bool
	err := t.s.view(ctx, func(txn *badger.Txn, _ stack.Tid) error {
		var err error
		r, found, err = newest(txn, oid)
		return err
	})
	return r, found, err
}

// Delete is IExternalGC's deleteObject: a "no data" record. An unknown
// oid is refused at once; a stale serial is reported by Vote.
func (t *txn) Delete(ctx context.Context, oid stack.Oid, serial stack.Tid) error {
	if err := t.usable(ctx); err != nil {
		return err
	}
	if _, found, err := t.current(ctx, oid); err != nil {
		return t.s.fail("deleteObject", &oid, nil, err)
	} else if !found {
		return &stack.NotFoundError{Oid: oid}
	}
	t.put(&write{oid: oid, serial: serial, check: true})
	return nil
}

// Restore is ZODB's restore: no conflict check; prevTxn is kept as the
// record's data transaction (the data is stored in full).
func (t *txn) Restore(ctx context.Context, oid stack.Oid, data []byte, prevTxn stack.Tid) error {
	if err := t.usable(ctx); err != nil {
		return err
	}
	if data != nil && len(data) == 0 {
		return fmt.Errorf("oid %s: %w", oid, stack.ErrEmptyData)
	}
	t.put(&write{oid: oid, data: clone(data), dataTxn: prevTxn})
	return nil
}

// CheckCurrentSerial is checkCurrentSerialInTransaction; checked at Vote.
func (t *txn) CheckCurrentSerial(ctx context.Context, oid stack.Oid, serial stack.Tid) error {
	if err := t.usable(ctx); err != nil {
		return err
	}
	t.checks[oid] = serial
	return nil
}

// Vote is tpc_vote: every serial is checked (all write conflicts come
// back together), then the records are written at the transaction's tid,
// invisible until Finish.
func (t *txn) Vote(ctx context.Context) ([]stack.Oid, error) {
	if err := t.usable(ctx); err != nil {
		return nil, err
	}
	s := t.s
	var conflicts stack.Conflicts
	var readConflict error
	err := s.view(ctx, func(txn *badger.Txn, _ stack.Tid) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{famObject}})
		defer it.Close()
		cur := func(oid stack.Oid) (stack.Tid, error) {
			it.Seek(objectPrefix(oid))
			if !it.Valid() {
				return 0, nil
			}
			o, tid, err := parseObjectKey(it.Item().Key())
			if err != nil || o != oid {
				return 0, err
			}
			return tid, nil
		}
		for _, w := range t.writes {
			tid, err := cur(w.oid)
			if err != nil {
				return err
			}
			if tid == 0 {
				t.created++
			}
			if w.check && tid != w.serial {
				conflicts = append(conflicts, &stack.ConflictError{Oid: w.oid, Committed: tid, Read: w.serial, Data: clone(w.data)})
			}
		}
		oids := make([]stack.Oid, 0, len(t.checks))
		for oid := range t.checks {
			oids = append(oids, oid)
		}
		slices.Sort(oids)
		for _, oid := range oids {
			tid, err := cur(oid)
			if err != nil {
				return err
			}
			if tid != t.checks[oid] {
				readConflict = &stack.ReadConflictError{Oid: oid, Committed: tid, Read: t.checks[oid]}
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return nil, s.fail("tpc_vote", nil, &t.tid, err)
	}
	conflicts = append(t.clashes, conflicts...)
	if len(conflicts) > 0 {
		return nil, conflicts
	}
	if readConflict != nil {
		return nil, readConflict
	}
	if err := t.writeRecords(ctx); err != nil {
		return nil, s.fail("tpc_vote", nil, &t.tid, err)
	}
	t.state = txnVoted
	return append([]stack.Oid(nil), t.resolved...), nil
}

// writeRecords adds every record to the Badger batch, spilling full
// batches.
func (t *txn) writeRecords(ctx context.Context) error {
	s := t.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return stack.ErrClosed
	}
	t.batch = s.db.NewTransactionAt(s.last.Load(), true)
	for i, w := range t.writes {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		// The oid entry goes first: after a crash, every object entry of
		// an uncommitted transaction has its oid entry, which is how
		// Open finds it.
		if err := t.set(txnOidKey(t.tid, w.oid), nil); err != nil {
			return err
		}
		if err := t.set(objectKey(w.oid, t.tid), revisionValue(w.data, w.dataTxn)); err != nil {
			return err
		}
		t.size += int64(len(w.data))
	}
	return nil
}

// set adds one entry to the batch, committing the batch first when it is
// full (Badger's batch limit is 15% of the memtable). The caller holds
// the read lock.
func (t *txn) set(key, value []byte) error {
	err := t.batch.SetEntry(badger.NewEntry(key, value))
	if !errors.Is(err, badger.ErrTxnTooBig) {
		return err
	}
	if err := t.spill(); err != nil {
		return err
	}
	if err := t.batch.SetEntry(badger.NewEntry(key, value)); err != nil {
		return fmt.Errorf("a record of %d bytes does not fit in an empty Badger batch (raise memtable-size or lower value-threshold): %w", len(value), err)
	}
	return nil
}

// spill commits the full batch at the transaction's tid, and syncs it
// (with fsync) while no other write can move Badger to a new memtable,
// so the final Sync need not cover earlier memtables.
func (t *txn) spill() error {
	s := t.s
	s.wmu.Lock()
	defer s.wmu.Unlock()
	t.spilled = true
	err := t.batch.CommitAt(uint64(t.tid), nil)
	t.batch = nil
	if err == nil && s.opts.Fsync {
		err = s.db.Sync()
	}
	if err != nil {
		return err
	}
	t.batch = s.db.NewTransactionAt(s.last.Load(), true)
	return nil
}

// Finish is tpc_finish: the transaction record and the metadata join the
// last batch, which is committed (and synced, with fsync) in one Badger
// transaction: that commit is the durable point. Then readers move to
// the new tid and watchers are told.
func (t *txn) Finish(ctx context.Context) (stack.Tid, error) {
	switch t.state {
	case txnDone:
		return 0, errFinished
	case txnOpen:
		return 0, fmt.Errorf("%w: finish before vote", stack.ErrTxnState)
	}
	s := t.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		t.discard()
		t.release()
		return 0, stack.ErrClosed
	}
	rec := txnRecord{meta: t.meta, records: len(t.writes), size: t.size}
	count := s.count.Load() + int64(t.created)
	err := t.set(txnKey(t.tid), txnValue(rec))
	if err == nil {
		err = t.set(keyLast, uint64Value(uint64(t.tid)))
	}
	if err == nil {
		err = t.set(keyCount, uint64Value(uint64(max(count, 0))))
	}
	if err == nil {
		err = t.commit()
	}
	if err != nil {
		err = fmt.Errorf("finishing transaction %s failed, storage refuses writes until reopened: %w", t.tid, err)
		s.log.WithError(err).Error("commit failed after vote")
		s.setBroken(err)
		t.discard()
		t.release()
		return 0, s.fail("tpc_finish", nil, &t.tid, err)
	}
	s.count.Store(count)
	ev := stack.Event{Tid: t.tid, Oids: make([]stack.Oid, len(t.writes))}
	var maxOid stack.Oid
	for i, w := range t.writes {
		ev.Oids[i] = w.oid
		maxOid = max(maxOid, w.oid)
	}
	if len(t.writes) > 0 {
		s.storedOid(maxOid)
	}
	if err := s.watch.Publish(ev); err != nil {
		s.log.WithError(err).Error("cannot notify watchers")
	}
	t.blobs = nil // committed: the files stay
	t.release()
	s.log.WithFields(logrus.Fields{"tid": t.tid.String(), "objects": len(t.writes), "spilled": t.spilled}).Debug("committed")
	return t.tid, nil
}

// commit commits the last batch and publishes the tid to readers.
func (t *txn) commit() error {
	s := t.s
	s.wmu.Lock()
	defer s.wmu.Unlock()
	err := t.batch.CommitAt(uint64(t.tid), nil)
	t.batch = nil
	if err == nil && s.opts.Fsync {
		err = s.db.Sync()
	}
	if err != nil {
		return err
	}
	s.metaTs = uint64(t.tid)
	s.last.Store(uint64(t.tid))
	// Nothing reads a version older than the last commit except through
	// keys that have one version only, so Badger may drop superseded
	// metadata versions and deleted entries up to it.
	s.db.SetDiscardTs(uint64(t.tid))
	return nil
}

// discard drops the uncommitted batch.
func (t *txn) discard() {
	if t.batch != nil {
		t.batch.Discard()
		t.batch = nil
	}
}

func (t *txn) release() {
	if t.state != txnDone {
		t.state = txnDone
		<-t.s.commitLock
	}
}

// Abort is tpc_abort: drop the uncommitted batch, delete what spilled
// batches wrote (at the same version, so a later transaction with this
// tid overwrites the deletions), remove placed blob files and release
// the commit lock. Idempotent.
func (t *txn) Abort(ctx context.Context) error {
	if t.state == txnDone {
		return nil
	}
	t.discard()
	var err error
	if t.spilled {
		err = t.unspill()
	}
	for _, b := range t.blobs {
		if rerr := os.Remove(b); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
			err = rerr
		}
	}
	t.blobs = nil
	t.release()
	return t.s.fail("tpc_abort", nil, &t.tid, err)
}

// unspill deletes every entry the transaction may have committed.
func (t *txn) unspill() error {
	s := t.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil // Open removes them
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	wb := s.db.NewWriteBatchAt(uint64(t.tid))
	defer wb.Cancel()
	for _, w := range t.writes {
		if err := wb.Delete(txnOidKey(t.tid, w.oid)); err != nil {
			return err
		}
		if err := wb.Delete(objectKey(w.oid, t.tid)); err != nil {
			return err
		}
	}
	return wb.Flush()
}

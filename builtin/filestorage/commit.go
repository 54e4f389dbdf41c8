package filestorage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
)

// QuotaErrorClass is the ZODB exception class of a quota refusal.
const QuotaErrorClass = "ZODB.FileStorage.FileStorage.FileStorageQuotaError"

// txn is a transaction in progress. Its records are built in memory with
// the positions they will have in Data.fs (the commit lock keeps s.pos
// fixed from Begin to Finish/Abort).
type txn struct {
	s       *Storage
	meta    stack.TxnMeta
	tid     stack.Tid
	status  byte
	tpos    int64 // where the transaction will start (s.pos at Begin)
	thl     int64 // header length with metadata
	body    []byte
	tindex  map[stack.Oid]int64
	oids    []stack.Oid // in first-stored order, for the event
	checks  map[stack.Oid]stack.Tid
	clashes stack.Conflicts
	blobs   []blobMove // files moved into place by this transaction
	voted   bool
	done    bool
	// bulk: a BeginBulk transaction, whose Vote and Finish leave the
	// fsync to SyncBulk.
	bulk bool
}

// Begin is tpc_begin: it takes the commit lock (waiting for it within
// ctx) and allocates the tid, or checks the explicit one (which must be
// after the last transaction, unlike Python).
func (s *Storage) Begin(ctx context.Context, meta stack.TxnMeta) (_ stack.Txn, err error) {
	defer stack.WrapOp(&err, s.node, "tpc_begin", nil, nil)
	if s.readOnly {
		return nil, stack.ErrReadOnly
	}
	for name, v := range map[string][]byte{"user name": meta.User, "description": meta.Description, "extension data": meta.Extension} {
		if len(v) > maxMetaLen {
			return nil, &stack.StorageError{Msg: fmt.Sprintf("%s too long (%d bytes, at most %d)", name, len(v), maxMetaLen)}
		}
	}
	status := meta.Status
	if status == 0 {
		status = statusCommitted
	}
	if status != statusCommitted && status != statusPacked {
		return nil, &stack.StorageError{Msg: fmt.Sprintf("transaction status %q cannot be written (only ' ' and 'p')", status)}
	}
	select {
	case s.commitLock <- struct{}{}:
	case <-s.done:
		return nil, stack.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.mu.RLock()
	closed, broken, pos, ltid := s.closed, s.broken, s.pos, s.ltid
	s.mu.RUnlock()
	fail := func(err error) (stack.Txn, error) {
		<-s.commitLock
		return nil, err
	}
	if closed {
		return fail(stack.ErrClosed)
	}
	if broken != nil {
		return fail(broken)
	}
	tid := meta.Tid
	if tid != 0 {
		if tid <= ltid {
			return fail(&stack.StorageError{Msg: fmt.Sprintf("transaction id %s is not after the last transaction %s", tid, ltid)})
		}
		s.lastTs = tid
	} else {
		tid = newTid(time.Now(), max(s.lastTs, ltid))
		s.lastTs = tid
	}
	t := &txn{
		s: s, meta: meta, tid: tid, status: status, tpos: pos,
		thl:    int64(txnHeaderLen + len(meta.User) + len(meta.Description) + len(meta.Extension)),
		tindex: map[stack.Oid]int64{},
		body:   s.spareBody[:0],
	}
	s.spareBody = nil
	return t, nil
}

// errFinished: a call on a transaction that was finished or aborted.
var errFinished = fmt.Errorf("%w: transaction already finished or aborted", stack.ErrTxnState)

func (t *txn) usable() error {
	if t.done {
		return errFinished
	}
	if t.s.isClosed() {
		return stack.ErrClosed
	}
	if t.voted {
		return fmt.Errorf("%w: transaction already voted", stack.ErrTxnState)
	}
	return nil
}

// nextPos is the absolute position the next record will have.
func (t *txn) nextPos() int64 { return t.tpos + t.thl + int64(len(t.body)) }

// current returns oid's committed record position and its tid (0, 0 for
// an unknown oid).
func (t *txn) current(oid stack.Oid) (int64, stack.Tid, bool, error) {
	s := t.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	pos, ok := s.ix.get(oid)
	if !ok {
		return 0, 0, false, nil
	}
	h, err := s.rd.dataHeader(pos)
	if err != nil {
		return 0, 0, false, err
	}
	return pos, h.tid, h.plen == 0 && h.back == 0, nil
}

// add appends a record for oid to the transaction.
func (t *txn) add(oid stack.Oid, recTid stack.Tid, prev int64, data []byte, back int64) error {
	p := t.nextPos()
	if q := int64(t.s.live.Load().Quota); q > 0 && p > q {
		return &stack.StorageError{Class: QuotaErrorClass, Msg: fmt.Sprintf("the storage quota (%d bytes) has been exceeded", q)}
	}
	if p+dataHeaderLen+8+int64(len(data)) >= maxFilePos {
		return &stack.StorageError{Msg: "Data.fs would grow past 2^48 bytes, the limit of the .index format"}
	}
	if old, seen := t.tindex[oid]; seen {
		// The last write of an oid in a transaction is the one kept
		// (Python would write both records; one is as valid and matches
		// the contract). Later records move down.
		off := old - t.tpos - t.thl
		h := decodeDataHeader(old, t.body[off:])
		n := h.recordLen()
		t.body = append(t.body[:off], t.body[off+n:]...)
		for o, q := range t.tindex {
			if q > old {
				t.tindex[o] = q - n
			}
		}
		p -= n
	} else {
		t.oids = append(t.oids, oid)
	}
	t.body = appendDataRecord(t.body, oid, recTid, prev, t.tpos, data, back)
	t.tindex[oid] = p
	t.s.mu.Lock()
	if oid > t.s.maxOid {
		t.s.maxOid = oid
	}
	t.s.mu.Unlock()
	return nil
}

// Store is ZODB's store. A stale serial (any serial but 0 for a new oid,
// which is stricter than Python) is remembered and reported by Vote with
// every other conflict; the data is not written. Empty data is refused:
// the format cannot hold it (docs/filestorage.md §1.4).
func (t *txn) Store(ctx context.Context, oid stack.Oid, serial stack.Tid, data []byte) (err error) {
	defer stack.WrapOp(&err, t.s.node, "store", &oid, &t.tid)
	if err := t.usable(); err != nil {
		return err
	}
	if len(data) == 0 {
		return fmt.Errorf("oid %s: %w", oid, stack.ErrEmptyData)
	}
	prev, cur, _, err := t.current(oid)
	if err != nil {
		return err
	}
	// The last store of an oid in a transaction is the one that counts.
	t.clashes = slices.DeleteFunc(t.clashes, func(c *stack.ConflictError) bool { return c.Oid == oid })
	if serial != cur {
		t.clashes = append(t.clashes, &stack.ConflictError{Oid: oid, Committed: cur, Read: serial, Data: data})
		return nil
	}
	return t.add(oid, t.tid, prev, data, 0)
}

// CheckCurrentSerial is checkCurrentSerialInTransaction; checked at Vote.
func (t *txn) CheckCurrentSerial(ctx context.Context, oid stack.Oid, serial stack.Tid) (err error) {
	defer stack.WrapOp(&err, t.s.node, "checkCurrentSerial", &oid, &t.tid)
	if err := t.usable(); err != nil {
		return err
	}
	if t.checks == nil {
		t.checks = map[stack.Oid]stack.Tid{}
	}
	t.checks[oid] = serial
	return nil
}

// Delete is IExternalGC's deleteObject: a "no data" marker. A stale
// serial is reported by Vote, like Store's.
func (t *txn) Delete(ctx context.Context, oid stack.Oid, serial stack.Tid) (err error) {
	defer stack.WrapOp(&err, t.s.node, "deleteObject", &oid, &t.tid)
	if err := t.usable(); err != nil {
		return err
	}
	prev, cur, _, err := t.current(oid)
	if err != nil {
		return err
	}
	if prev == 0 {
		return &stack.NotFoundError{Oid: oid}
	}
	t.clashes = slices.DeleteFunc(t.clashes, func(c *stack.ConflictError) bool { return c.Oid == oid })
	if serial != cur {
		t.clashes = append(t.clashes, &stack.ConflictError{Oid: oid, Committed: cur, Read: serial})
		return nil
	}
	return t.add(oid, t.tid, prev, nil, 0)
}

// Restore is ZODB's restore (docs/filestorage.md §4.3): no conflict check; with prevTxn, a
// backpointer to identical data in that transaction when there is one.
func (t *txn) Restore(ctx context.Context, oid stack.Oid, data []byte, prevTxn stack.Tid) (err error) {
	defer stack.WrapOp(&err, t.s.node, "restore", &oid, &t.tid)
	if err := t.usable(); err != nil {
		return err
	}
	if data != nil && len(data) == 0 {
		return fmt.Errorf("oid %s: %w", oid, stack.ErrEmptyData)
	}
	// Without a conflict check only the previous record's position is
	// needed: the index has it, no read of its header.
	t.s.mu.RLock()
	prev, _ := t.s.ix.get(oid)
	t.s.mu.RUnlock()
	var back int64
	if prevTxn != 0 {
		if back, err = t.s.dataFind(prevTxn, oid, data); err != nil {
			return err
		}
	}
	if back != 0 {
		data = nil
	}
	return t.add(oid, t.tid, prev, data, back)
}

// dataFind looks for the last record of oid in the committed transaction
// tid and returns its position if a backpointer to it can stand for data:
// it is itself a backpointer or marker, or holds the same bytes. A missing
// transaction is not an error (unlike Python): the data goes inline.
func (s *Storage) dataFind(tid stack.Tid, oid stack.Oid, data []byte) (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	th, found, err := s.findTxn(tid)
	if err != nil || !found {
		return 0, err
	}
	var last *dataHeader
	for p := th.firstRecord(); p < th.end(); {
		d, err := s.rd.dataHeader(p)
		if err != nil {
			return 0, err
		}
		if d.oid == oid {
			dd := d
			last = &dd
		}
		p += d.recordLen()
	}
	if last == nil {
		return 0, nil
	}
	if last.plen == 0 {
		return last.pos, nil
	}
	if last.plen != int64(len(data)) {
		return 0, nil
	}
	b, err := s.rd.data(last)
	if err != nil {
		return 0, err
	}
	if bytes.Equal(b, data) {
		return last.pos, nil
	}
	return 0, nil
}

// Vote is tpc_vote: check serials, then write the transaction after the
// end with status 'c' and fsync it. Nothing is visible yet.
func (t *txn) Vote(ctx context.Context) (_ []stack.Oid, err error) {
	defer stack.WrapOp(&err, t.s.node, "tpc_vote", nil, &t.tid)
	if err := t.usable(); err != nil {
		return nil, err
	}
	if len(t.clashes) > 0 {
		return nil, t.clashes
	}
	for oid, serial := range t.checks {
		prev, cur, marker, err := t.current(oid)
		if err != nil {
			return nil, err
		}
		if prev == 0 || marker {
			return nil, &stack.NotFoundError{Oid: oid}
		}
		if cur != serial {
			return nil, &stack.ReadConflictError{Oid: oid, Committed: cur, Read: serial}
		}
	}
	s := t.s
	s.ioMu.RLock()
	defer s.ioMu.RUnlock()
	if s.isClosed() {
		return nil, stack.ErrClosed
	}
	tlen := t.thl + int64(len(t.body))
	rec := s.spareRec[:0]
	rec = appendTxnHeader(rec, t.tid, tlen, statusCheckpoint, t.meta.User, t.meta.Description, t.meta.Extension)
	rec = append(rec, t.body...)
	rec = appendUint64(rec, uint64(tlen))
	s.spareRec = keepSpare(rec)
	if _, err := s.f.WriteAt(rec, t.tpos); err != nil {
		s.truncateTo(t.tpos)
		return nil, fmt.Errorf("%s: write transaction at %d: %w", s.path, t.tpos, err)
	}
	if !t.bulk {
		if err := s.f.Sync(); err != nil {
			s.truncateTo(t.tpos)
			return nil, fmt.Errorf("%s: fsync after vote: %w", s.path, err)
		}
	}
	t.voted = true
	return nil, nil
}

func appendUint64(b []byte, v uint64) []byte {
	return append(b, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// truncateTo cuts an unfinished transaction off the file.
func (s *Storage) truncateTo(pos int64) {
	if err := s.f.Truncate(pos); err != nil {
		s.log.WithError(err).WithField("pos", pos).Error("cannot truncate an aborted transaction")
	}
}

// Finish is tpc_finish: flip the status byte, fsync (the durable point),
// then publish the index, the end and the tid, and tell the watchers.
func (t *txn) Finish(ctx context.Context) (_ stack.Tid, err error) {
	defer stack.WrapOp(&err, t.s.node, "tpc_finish", nil, &t.tid)
	if t.done {
		return 0, errFinished
	}
	if !t.voted {
		return 0, fmt.Errorf("%w: finish before vote", stack.ErrTxnState)
	}
	s := t.s
	s.ioMu.RLock()
	defer s.ioMu.RUnlock()
	if s.isClosed() {
		t.release()
		return 0, stack.ErrClosed
	}
	_, err = s.f.WriteAt([]byte{t.status}, t.tpos+16)
	if err == nil && !t.bulk {
		err = s.f.Sync()
	}
	if err != nil {
		// Python closes the storage here; we refuse further writes and
		// keep serving what was committed before.
		err = fmt.Errorf("%s: finishing transaction %s at %d failed, storage refuses writes until reopened: %w", s.path, t.tid, t.tpos, err)
		s.log.WithError(err).Error("commit failed after vote")
		s.mu.Lock()
		s.broken = err
		s.mu.Unlock()
		t.release()
		return 0, err
	}
	s.mu.Lock()
	for oid, p := range t.tindex {
		s.ix.set(oid, p)
	}
	s.txns.added(t.tid, t.tpos)
	s.pos = t.tpos + t.thl + int64(len(t.body)) + trailerLen
	s.ltid = t.tid
	if t.tid > s.announced {
		if err := s.watch.Publish(stack.Event{Tid: t.tid, Oids: t.oids}); err != nil {
			s.log.WithError(err).Error("cannot notify watchers")
		}
	}
	s.mu.Unlock()
	t.blobs = nil // committed: the files stay
	t.release()
	s.log.WithFields(logrus.Fields{"tid": t.tid.String(), "objects": len(t.oids)}).Debug("committed")
	return t.tid, nil
}

func (t *txn) release() {
	if !t.done {
		t.done = true
		t.s.spareBody = keepSpare(t.body)
		t.body = nil
		<-t.s.commitLock
	}
}

// maxSpare bounds the buffers a Storage keeps for its next transaction.
const maxSpare = 32 << 20

// keepSpare returns b emptied for reuse, or nil when it is too large to
// keep.
func keepSpare(b []byte) []byte {
	if cap(b) > maxSpare {
		return nil
	}
	return b[:0]
}

// Abort is tpc_abort: cut a voted transaction off the file, remove its
// blob files and release the commit lock. Idempotent.
func (t *txn) Abort(ctx context.Context) (err error) {
	defer stack.WrapOp(&err, t.s.node, "tpc_abort", nil, &t.tid)
	if t.done {
		return nil
	}
	t.s.ioMu.RLock()
	defer t.s.ioMu.RUnlock()
	if t.voted && !t.s.isClosed() {
		if terr := t.s.f.Truncate(t.tpos); terr != nil {
			err = fmt.Errorf("%s: truncate aborted transaction at %d: %w", t.s.path, t.tpos, terr)
		}
	}
	for _, b := range t.blobs {
		if rerr := os.Remove(b.dst); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
			err = rerr
		}
	}
	t.blobs = nil
	t.release()
	return err
}

package sqlitestorage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

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
	// blob is the file that becomes this revision's blob at Vote: an
	// upload (moved) or, for undo, a committed blob (copied, copyBlob).
	blob     string
	copyBlob bool
}

type txnState int

const (
	txnOpen txnState = iota
	txnVoted
	txnDone
)

// txn is a transaction in progress; it holds the commit lock from Begin.
// Its records stay in memory until Vote, which checks them and writes them
// in an SQL transaction on the writer connection; Finish commits it.
// Readers see none of it before that COMMIT.
type txn struct {
	s        *Storage
	meta     stack.TxnMeta
	tid      stack.Tid
	state    txnState
	writes   []*write // in first-store order; a later store of an oid replaces its entry
	byOid    map[stack.Oid]*write
	checks   map[stack.Oid]stack.Tid
	resolved []stack.Oid // oids changed by Undo
	uploads  []string    // upload files taken over; whatever is left of them goes at the end
	placed   []string    // blob files placed by Vote; Abort removes them
	// sqlTx is the SQL transaction from Vote to Finish; guarded by s.mu
	// (Close rolls it back).
	sqlTx   *sql.Tx
	created int64 // live objects added (negative: removed), known at Vote
	maxOid  stack.Oid
}

var errFinished = fmt.Errorf("%w: transaction already finished or aborted", stack.ErrTxnState)

// Begin is tpc_begin: it takes the commit lock (waiting for it within
// ctx) and allocates the tid, or checks the explicit one, which must
// follow the last transaction.
func (s *Storage) Begin(ctx context.Context, meta stack.TxnMeta) (_ stack.Txn, err error) {
	defer stack.WrapOp(&err, s.node, "tpc_begin", nil, nil)
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
	if s.closed.Load() {
		return nil, stack.ErrClosed
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
	if s.closed.Load() {
		return fail(stack.ErrClosed)
	}
	if err := s.brokenErr(); err != nil {
		return fail(err)
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
	t := &txn{s: s, meta: meta, tid: tid, byOid: map[stack.Oid]*write{}, checks: map[stack.Oid]stack.Tid{}}
	s.mu.RLock()
	s.active = t
	s.mu.RUnlock()
	return t, nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// nonNil stores a missing user, description or extension as empty.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
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
	if t.s.closed.Load() {
		return stack.ErrClosed
	}
	return nil
}

func (t *txn) put(w *write) {
	if old, ok := t.byOid[w.oid]; ok {
		*old = *w
		return
	}
	t.byOid[w.oid] = w
	t.writes = append(t.writes, w)
}

// Store is ZODB's store; a stale serial is reported by Vote.
func (t *txn) Store(ctx context.Context, oid stack.Oid, serial stack.Tid, data []byte) (err error) {
	defer stack.WrapOp(&err, t.s.node, "store", &oid, &t.tid)
	if err := t.usable(ctx); err != nil {
		return err
	}
	if len(data) == 0 {
		return stack.ErrEmptyData
	}
	t.put(&write{oid: oid, serial: serial, check: true, data: clone(data)})
	return nil
}

// Delete is IExternalGC's deleteObject: a record without data. An unknown
// oid is refused at once; a stale serial is reported by Vote.
func (t *txn) Delete(ctx context.Context, oid stack.Oid, serial stack.Tid) (err error) {
	defer stack.WrapOp(&err, t.s.node, "deleteObject", &oid, &t.tid)
	if err := t.usable(ctx); err != nil {
		return err
	}
	err = t.s.use(ctx, func() error {
		var one int
		err := t.s.rd.QueryRowContext(ctx, `SELECT 1 FROM object_state WHERE oid = ? LIMIT 1`, p64(oid)).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return &stack.NotFoundError{Oid: oid}
		}
		return err
	})
	if err != nil {
		return err
	}
	t.put(&write{oid: oid, serial: serial, check: true})
	return nil
}

// Restore is ZODB's restore: no conflict check; prevTxn is kept as the
// record's data transaction (the data is stored in full).
func (t *txn) Restore(ctx context.Context, oid stack.Oid, data []byte, prevTxn stack.Tid) (err error) {
	defer stack.WrapOp(&err, t.s.node, "restore", &oid, &t.tid)
	return t.restore(ctx, oid, data, prevTxn, "")
}

func (t *txn) restore(ctx context.Context, oid stack.Oid, data []byte, prevTxn stack.Tid, blob string) error {
	if err := t.usable(ctx); err != nil {
		return err
	}
	if data != nil && len(data) == 0 {
		return stack.ErrEmptyData
	}
	t.put(&write{oid: oid, data: clone(data), dataTxn: prevTxn, blob: blob})
	if blob != "" {
		t.uploads = append(t.uploads, blob)
	}
	return nil
}

// CheckCurrentSerial is checkCurrentSerialInTransaction; checked at Vote.
func (t *txn) CheckCurrentSerial(ctx context.Context, oid stack.Oid, serial stack.Tid) (err error) {
	defer stack.WrapOp(&err, t.s.node, "checkCurrentSerial", &oid, &t.tid)
	if err := t.usable(ctx); err != nil {
		return err
	}
	t.checks[oid] = serial
	return nil
}

// Vote is tpc_vote: it opens the SQL transaction (taking SQLite's write
// lock), checks every serial there (all write conflicts come back
// together), places the blob files and writes every row. Only COMMIT is
// left for Finish, which no logical error can stop.
func (t *txn) Vote(ctx context.Context) (_ []stack.Oid, err error) {
	defer stack.WrapOp(&err, t.s.node, "tpc_vote", nil, &t.tid)
	if err := t.usable(ctx); err != nil {
		return nil, err
	}
	s := t.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	err = s.use(ctx, func() error {
		// Not ctx: database/sql rolls a transaction back when the
		// context of its BeginTx ends, and this one lives until Finish.
		tx, err := s.wr.BeginTx(context.Background(), nil)
		if err != nil {
			return err
		}
		t.sqlTx = tx
		return t.checkAndWrite(ctx, tx)
	})
	if err != nil {
		if t.sqlTx != nil {
			_ = t.sqlTx.Rollback()
			t.sqlTx = nil
		}
		return nil, err
	}
	t.state = txnVoted
	return slices.Clone(t.resolved), nil
}

// checkAndWrite is the body of Vote, inside the SQL transaction.
func (t *txn) checkAndWrite(ctx context.Context, tx *sql.Tx) error {
	cur, err := tx.PrepareContext(ctx, `SELECT tid, data IS NULL FROM object_state WHERE oid = ? ORDER BY tid DESC LIMIT 1`)
	if err != nil {
		return err
	}
	defer cur.Close()
	current := func(oid stack.Oid) (tid stack.Tid, live bool, err error) {
		var b []byte
		var deleted bool
		err = cur.QueryRowContext(ctx, p64(oid)).Scan(&b, &deleted)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, err
		}
		tid, err = u64[stack.Tid](b)
		return tid, !deleted, err
	}
	var conflicts stack.Conflicts
	t.created = 0
	for _, w := range t.writes {
		tid, live, err := current(w.oid)
		if err != nil {
			return err
		}
		if w.check && tid != w.serial {
			conflicts = append(conflicts, &stack.ConflictError{Oid: w.oid, Committed: tid, Read: w.serial, Data: clone(w.data)})
		}
		switch {
		case live && w.data == nil:
			t.created--
		case !live && w.data != nil:
			t.created++
		}
		t.maxOid = max(t.maxOid, w.oid)
	}
	if len(conflicts) > 0 {
		return conflicts
	}
	oids := make([]stack.Oid, 0, len(t.checks))
	for oid := range t.checks {
		oids = append(oids, oid)
	}
	slices.Sort(oids)
	for _, oid := range oids {
		tid, _, err := current(oid)
		if err != nil {
			return err
		}
		if tid != t.checks[oid] {
			return &stack.ReadConflictError{Oid: oid, Committed: tid, Read: t.checks[oid]}
		}
	}
	if err := t.placeBlobs(); err != nil {
		return err
	}
	ins, err := tx.PrepareContext(ctx, `INSERT INTO object_state (oid, tid, data, data_txn) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer ins.Close()
	var size int64
	tid := p64(t.tid)
	for i, w := range t.writes {
		if i%1024 == 1023 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		var data any
		if w.data != nil {
			data = w.data
		}
		if _, err := ins.ExecContext(ctx, p64(w.oid), tid, data, nullable(w.dataTxn)); err != nil {
			return fmt.Errorf("writing object %s: %w", w.oid, err)
		}
		size += int64(len(w.data))
	}
	m := t.meta
	if _, err := tx.ExecContext(ctx, `INSERT INTO transactions (tid, status, user, description, extension, size) VALUES (?, ?, ?, ?, ?, ?)`,
		tid, string(m.Status), nonNil(m.User), nonNil(m.Description), nonNil(m.Extension), size); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE meta SET value = CASE name
		WHEN 'last_tid' THEN ?1
		WHEN 'objects' THEN value + ?2
		WHEN 'next_oid' THEN max(value, ?3) END
		WHERE name IN ('last_tid', 'objects', 'next_oid')`, tid, t.created, p64(t.maxOid+1))
	return err
}

// placeBlobs moves (or, for undo, copies) each record's blob file to its
// revision's name. The files are invisible until the records commit: a
// blob is found only through its record.
func (t *txn) placeBlobs() error {
	for _, w := range t.writes {
		if w.blob == "" {
			continue
		}
		dst, err := t.s.blobs.Place(w.blob, w.oid, t.tid, w.copyBlob)
		if dst != "" {
			t.placed = append(t.placed, dst)
		}
		if err != nil {
			return fmt.Errorf("placing the blob of object %s: %w", w.oid, err)
		}
	}
	return nil
}

// Finish is tpc_finish: COMMIT of the SQL transaction is the durable
// point (synchronous=FULL syncs the WAL). Then loads see the new tid,
// the next oid moves past the stored ones and watchers are told.
func (t *txn) Finish(ctx context.Context) (_ stack.Tid, err error) {
	defer stack.WrapOp(&err, t.s.node, "tpc_finish", nil, &t.tid)
	switch t.state {
	case txnDone:
		return 0, errFinished
	case txnOpen:
		return 0, fmt.Errorf("%w: finish before vote", stack.ErrTxnState)
	}
	s := t.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if t.sqlTx == nil { // Close rolled it back
		t.cleanUp(true)
		t.release()
		return 0, stack.ErrClosed
	}
	err = t.sqlTx.Commit()
	t.sqlTx = nil
	if err != nil {
		err = fmt.Errorf("committing transaction %s failed, storage refuses writes until reopened: %w", t.tid, err)
		s.log.WithError(err).Error("commit failed after vote")
		s.setBroken(err)
		t.cleanUp(true)
		t.release()
		return 0, err
	}
	s.last.Store(uint64(t.tid))
	s.objects.Add(t.created)
	ev := stack.Event{Tid: t.tid, Oids: make([]stack.Oid, len(t.writes))}
	for i, w := range t.writes {
		ev.Oids[i] = w.oid
	}
	if len(t.writes) > 0 {
		s.storedOid(t.maxOid)
	}
	if t.tid > s.announced {
		if err := s.watch.Publish(ev); err != nil {
			s.log.WithError(err).Error("cannot notify watchers")
		}
	}
	t.cleanUp(false)
	t.release()
	s.log.WithFields(logrus.Fields{"tid": t.tid.String(), "objects": len(t.writes)}).Debug("committed")
	return t.tid, nil
}

// cleanUp removes what is left of the uploads, and with placed also the
// blob files Vote placed (the transaction did not commit).
func (t *txn) cleanUp(placed bool) error {
	var errs []error
	remove := func(p string) {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if placed {
		for _, p := range t.placed {
			remove(p)
		}
	}
	t.placed = nil
	for _, p := range t.uploads {
		remove(p)
	}
	t.uploads = nil
	return errors.Join(errs...)
}

// release ends the transaction and gives the commit lock back; the
// caller holds s.mu shared.
func (t *txn) release() {
	if t.state == txnDone {
		return
	}
	t.state = txnDone
	if t.s.active == t {
		t.s.active = nil
	}
	<-t.s.commitLock
}

// Abort is tpc_abort: the SQL transaction is rolled back, the placed blob
// files and the uploads are removed and the commit lock is released.
// Idempotent.
func (t *txn) Abort(ctx context.Context) (err error) {
	defer stack.WrapOp(&err, t.s.node, "tpc_abort", nil, &t.tid)
	if t.state == txnDone {
		return nil
	}
	s := t.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if t.sqlTx != nil {
		if rerr := t.sqlTx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			err = rerr
		}
		t.sqlTx = nil
	}
	err = errors.Join(err, t.cleanUp(true))
	t.release()
	return err
}

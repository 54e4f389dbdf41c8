package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/blobdir"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// txnBuffer is a connection's transaction between tpc_begin and
// tpc_finish/tpc_abort. Nothing reaches the storage before the vote: the
// operations are buffered and replayed under the commit lock (docs/protocol.md §6.4).
type txnBuffer struct {
	id      any // the client's opaque transaction id
	meta    stack.TxnMeta
	ops     []txnOp
	blobOps []txnOp
	upload  *os.File // the blob upload in progress, if any
	stxn    stack.Txn
	locked  bool // holds the mount's commit lock
	voting  bool // a vote is waiting for or holding the lock
	// resolving: the last vote returned conflicts for the client to
	// resolve; the lock is kept for the resolved stores and the next vote.
	resolving bool
	timeout   *time.Timer
}

type opKind int

const (
	opStore opKind = iota
	opCheck
	opRestore
	opDelete
	opUndo
	opBlobStore
)

// txnOp is one buffered operation.
type txnOp struct {
	kind    opKind
	oid     stack.Oid
	serial  stack.Tid
	data    []byte
	prevTxn stack.Tid
	undoID  []byte
	blob    string // the uploaded blob file
	shared  bool   // blob is the client's file in a shared blob directory
}

// sameTxnID compares the client's opaque transaction ids by value.
func sameTxnID(a, b any) bool { return reflect.DeepEqual(a, b) }

// checkTxn is Python's _check_tid: read-only connections get ReadOnlyError;
// a missing or different transaction is ErrTxnState when strict, and
// otherwise makes the call a no-op (ok false).
func (c *conn) checkTxn(id any, strict bool) (ok bool, err error) {
	if c.readOnly {
		return false, stack.ErrReadOnly
	}
	if c.tx == nil || !sameTxnID(c.tx.id, id) {
		if strict {
			var cur any
			if c.tx != nil {
				cur = c.tx.id
			}
			return false, fmt.Errorf("%w: transaction %v is not the current one (%v)", stack.ErrTxnState, id, cur)
		}
		return false, nil
	}
	return true, nil
}

func (c *conn) tpcBegin(a zeoproto.Args) error {
	if err := a.Need(4, 6); err != nil {
		return err
	}
	if c.readOnly {
		return stack.ErrReadOnly
	}
	id := a[0]
	c.txMu.Lock()
	defer c.txMu.Unlock()
	if c.tx != nil {
		if sameTxnID(c.tx.id, id) {
			return nil
		}
		return fmt.Errorf("%w: tpc_begin of %v while %v is open", stack.ErrTxnState, id, c.tx.id)
	}
	user, err := a.Bytes(1)
	if err != nil {
		return err
	}
	desc, err := a.Bytes(2)
	if err != nil {
		return err
	}
	ext, err := zeoproto.ExtensionFromWire(a[3])
	if err != nil {
		return err
	}
	meta := stack.TxnMeta{User: user, Description: desc, Extension: ext, Status: ' '}
	if !a.IsNone(4) {
		if meta.Tid, err = a.Tid(4); err != nil {
			return err
		}
	}
	if !a.IsNone(5) {
		status, err := a.String(5)
		if err != nil || len(status) != 1 {
			return &zeoproto.ArgError{Index: 5, Want: "a one-character status", Got: a[5]}
		}
		meta.Status = status[0]
	}
	c.tx = &txnBuffer{id: id, meta: meta}
	c.ms.count(func(s *stats) { s.activeTxns++ })
	return nil
}

// buffer appends op to the open transaction after checking the id strictly
// (a wrong id closes the connection).
func (c *conn) buffer(id any, op txnOp) error {
	c.txMu.Lock()
	defer c.txMu.Unlock()
	if _, err := c.checkTxn(id, true); err != nil {
		if op.blob != "" && !op.shared {
			os.Remove(op.blob)
		}
		return err
	}
	if c.tx.voting || (c.tx.locked && !c.tx.resolving) {
		return fmt.Errorf("%w: operation after vote", stack.ErrTxnState)
	}
	if op.kind == opBlobStore {
		c.tx.blobOps = append(c.tx.blobOps, op)
	} else {
		c.tx.ops = append(c.tx.ops, op)
	}
	if op.kind == opStore || op.kind == opBlobStore || op.kind == opRestore || op.kind == opDelete {
		c.ms.count(func(s *stats) { s.stores++ })
	}
	return nil
}

func (c *conn) storea(a zeoproto.Args) error {
	oid, serial, err := oidSerial(a, 4)
	if err != nil {
		return err
	}
	data, err := a.Bytes(2)
	if err != nil {
		return err
	}
	return c.buffer(a[3], txnOp{kind: opStore, oid: oid, serial: serial, data: data})
}

// oidSerial checks that a call has n arguments and reads the first two:
// an oid and a serial. A None serial is what ZODB passes for an object it
// creates (ZODB.tests.MTStorage does, and Python storages accept it): it
// means z64, "no previous revision".
func oidSerial(a zeoproto.Args, n int) (stack.Oid, stack.Tid, error) {
	if err := a.Need(n, n); err != nil {
		return 0, 0, err
	}
	oid, err := a.Oid(0)
	if err != nil {
		return 0, 0, err
	}
	if a[1] == nil {
		return oid, 0, nil
	}
	serial, err := a.Tid(1)
	return oid, serial, err
}

func (c *conn) checkCurrentSerial(a zeoproto.Args) error {
	oid, serial, err := oidSerial(a, 3)
	if err != nil {
		return err
	}
	return c.buffer(a[2], txnOp{kind: opCheck, oid: oid, serial: serial})
}

func (c *conn) restorea(a zeoproto.Args) error {
	oid, serial, err := oidSerial(a, 5)
	if err != nil {
		return err
	}
	var data []byte
	if !a.IsNone(2) {
		if data, err = a.Bytes(2); err != nil {
			return err
		}
	}
	var prev stack.Tid
	if !a.IsNone(3) {
		if prev, err = a.Tid(3); err != nil {
			return err
		}
	}
	return c.buffer(a[4], txnOp{kind: opRestore, oid: oid, serial: serial, data: data, prevTxn: prev})
}

func (c *conn) deleteObject(a zeoproto.Args) error {
	oid, serial, err := oidSerial(a, 3)
	if err != nil {
		return err
	}
	return c.buffer(a[2], txnOp{kind: opDelete, oid: oid, serial: serial})
}

func (c *conn) undoa(a zeoproto.Args) error {
	if err := a.Need(2, 2); err != nil {
		return err
	}
	undoID, err := a.Bytes(0)
	if err != nil {
		return err
	}
	return c.buffer(a[1], txnOp{kind: opUndo, undoID: undoID})
}

// blobTempDir is where uploads are staged: the storage's own temp dir, so
// the commit can rename the file into place.
func (c *conn) blobTempDir() (string, error) {
	b, ok := stack.AsBlobber(c.storage())
	if !ok {
		return "", fmt.Errorf("%w: blobs", stack.ErrNotSupported)
	}
	return b.BlobTempDir(), nil
}

func (c *conn) storeBlobStart(a zeoproto.Args) error {
	c.txMu.Lock()
	defer c.txMu.Unlock()
	if c.readOnly {
		return stack.ErrReadOnly
	}
	if c.tx == nil {
		return fmt.Errorf("%w: storeBlobStart outside a transaction", stack.ErrTxnState)
	}
	if c.tx.upload != nil {
		return fmt.Errorf("%w: a blob upload is already in progress", stack.ErrTxnState)
	}
	dir, err := c.blobTempDir()
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "upload-*.tmp")
	if err != nil {
		return err
	}
	c.tx.upload = f
	return nil
}

func (c *conn) storeBlobChunk(a zeoproto.Args) error {
	chunk, err := a.Bytes(0)
	if err != nil {
		return err
	}
	c.txMu.Lock()
	defer c.txMu.Unlock()
	if c.tx == nil || c.tx.upload == nil {
		return fmt.Errorf("%w: storeBlobChunk without storeBlobStart", stack.ErrTxnState)
	}
	_, err = c.tx.upload.Write(chunk)
	return err
}

func (c *conn) storeBlobEnd(a zeoproto.Args) error {
	oid, serial, err := oidSerial(a, 4)
	if err != nil {
		return err
	}
	data, err := a.Bytes(2)
	if err != nil {
		return err
	}
	c.txMu.Lock()
	if c.tx == nil || c.tx.upload == nil {
		c.txMu.Unlock()
		return fmt.Errorf("%w: storeBlobEnd without storeBlobStart", stack.ErrTxnState)
	}
	f := c.tx.upload
	c.tx.upload = nil
	c.txMu.Unlock()
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	return c.buffer(a[3], txnOp{kind: opBlobStore, oid: oid, serial: serial, data: data, blob: f.Name()})
}

// storeBlobShared takes a blob the client wrote into the shared blob
// directory. The file name must be a bare name ending in .tmp (plus at most
// one character), resolved inside the oid's directory; anything else is an
// attack and closes the connection (docs/protocol.md §4.12).
func (c *conn) storeBlobShared(a zeoproto.Args) error {
	oid, serial, err := oidSerial(a, 5)
	if err != nil {
		return err
	}
	data, err := a.Bytes(2)
	if err != nil {
		return err
	}
	name, err := a.String(3)
	if err != nil {
		return err
	}
	if strings.ContainsAny(name, `/\`) || name == "." || name == ".." || !(strings.HasSuffix(name, ".tmp") || strings.HasSuffix(name[:max(len(name)-1, 0)], ".tmp")) {
		return fmt.Errorf("storeBlobShared: refused file name %q", name)
	}
	dir, err := c.blobTempDir()
	if err != nil {
		return err
	}
	// The temp dir is <blob dir>/tmp; the file is in the oid's directory of
	// that blob dir, in whatever layout it has.
	bd, err := blobdir.Open(filepath.Dir(dir), true)
	if err != nil {
		return err
	}
	path := filepath.Join(bd.OidDir(oid), name)
	return c.buffer(a[4], txnOp{kind: opBlobStore, oid: oid, serial: serial, data: data, blob: path, shared: true})
}

// vote takes the commit lock (waiting on its own goroutine, so the
// connection keeps serving loads), replays the buffer into a storage
// transaction and votes (docs/protocol.md §4.13).
func (c *conn) vote(id any, a zeoproto.Args) error {
	if err := a.Need(1, 1); err != nil {
		return err
	}
	c.txMu.Lock()
	if _, err := c.checkTxn(a[0], true); err != nil {
		c.txMu.Unlock()
		return err
	}
	tx := c.tx
	if c.srv.options().ReadOnly && !tx.locked {
		// <zeo> read-only was switched on by a reload after this
		// connection registered writable: its commits are refused from
		// the next vote on, as an answer the client reports.
		c.txMu.Unlock()
		return stack.ErrReadOnly
	}
	if tx.voting {
		c.txMu.Unlock()
		if tx.locked {
			return fmt.Errorf("%w: already voting (locked)", stack.ErrTxnState)
		}
		return fmt.Errorf("%w: already voting (waiting)", stack.ErrTxnState)
	}
	tx.voting = true
	if tx.resolving {
		// The re-vote after conflict resolution: the lock is still held.
		tx.resolving = false
		c.srv.spawn(func() {
			c.txMu.Lock()
			defer c.txMu.Unlock()
			c.finishVote(id, tx)
		})
		c.txMu.Unlock()
		return nil
	}
	c.txMu.Unlock()

	c.srv.spawn(func() {
		c.ms.count(func(s *stats) { s.waiting++ })
		err := c.ms.mount.LockCommit(c.ctx)
		c.ms.count(func(s *stats) { s.waiting-- })
		c.txMu.Lock()
		defer c.txMu.Unlock()
		if err != nil {
			tx.voting = false
			return // the connection closed while waiting
		}
		if c.tx != tx { // aborted while waiting
			c.ms.mount.UnlockCommit()
			c.reply(id, nil)
			return
		}
		tx.locked = true
		c.ms.count(func(s *stats) { s.lockTime = time.Now() })
		if d := c.srv.options().TransactionTimeout; d > 0 {
			// The timer's goroutine is counted from now; releaseLock
			// uncounts it if it stops the timer before it fired.
			c.srv.wg.Add(1)
			tx.timeout = time.AfterFunc(d, func() {
				defer c.srv.wg.Done()
				secs := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
				c.log().Log(levelCritical, c.labelled("Transaction timeout after "+secs+" seconds"))
				c.close("transaction timeout")
			})
		}
		c.finishVote(id, tx)
	})
	return nil
}

// finishVote runs the vote under the lock and replies; callers hold txMu.
func (c *conn) finishVote(id any, tx *txnBuffer) {
	result, err := c.runVote(tx)
	if err != nil {
		c.abortTxn(context.Background())
		c.replyErr(id, err)
		return
	}
	c.reply(id, result)
}

// runVote replays the buffer under the commit lock. Write conflicts go back
// to the client as dicts for resolution (docs/protocol.md §6.5): the storage transaction is
// aborted, but the buffer stays open for the resolved stores and the next
// vote, and the commit lock stays held until then (or tpc_abort, or the
// transaction timeout, or a disconnect). Python's server releases
// it at once; there the storage resolves most conflicts
// itself under the lock, while zeoraid hands every conflict to the client.
// Released, other commits slip in while the client resolves, its next vote
// conflicts again, and ClientStorage gives up after 9 votes and calls
// tpc_finish on an unvoted transaction: ZEO's InvalidationTests did that
// with only two clients updating one BTree.
func (c *conn) runVote(tx *txnBuffer) ([]any, error) {
	ctx := c.ctx
	stxn, err := c.storage().Begin(ctx, tx.meta)
	if err != nil {
		return nil, err
	}
	tx.stxn = stxn
	conflicts := map[stack.Oid]*stack.ConflictError{}
	var order []stack.Oid
	var resolved []stack.Oid
	// Only write conflicts, which carry the rejected data, go back to the
	// client for resolution; any other conflict (a deleteObject with a
	// stale serial) is a vote error (docs/protocol.md §6.5): a dict without data would
	// make the client's resolver fail on an empty pickle.
	noteConflict := func(ce *stack.ConflictError) {
		if _, seen := conflicts[ce.Oid]; !seen {
			order = append(order, ce.Oid)
		}
		conflicts[ce.Oid] = ce
	}
	for _, op := range append(append([]txnOp(nil), tx.ops...), tx.blobOps...) {
		var err error
		switch op.kind {
		case opStore:
			err = stxn.Store(ctx, op.oid, op.serial, op.data)
		case opCheck:
			err = stxn.CheckCurrentSerial(ctx, op.oid, op.serial)
		case opRestore:
			rt, ok := stxn.(stack.RestoreTxn)
			if !ok || !c.storage().Capabilities().Restore {
				return nil, fmt.Errorf("%w: restore", stack.ErrNotSupported)
			}
			err = rt.Restore(ctx, op.oid, op.data, op.prevTxn)
		case opDelete:
			dt, ok := stxn.(stack.DeleteTxn)
			if !ok || !c.storage().Capabilities().Delete {
				return nil, fmt.Errorf("%w: deleteObject", stack.ErrNotSupported)
			}
			err = dt.Delete(ctx, op.oid, op.serial)
		case opUndo:
			ut, ok := stxn.(stack.UndoTxn)
			if !ok || !c.storage().Capabilities().Undo {
				return nil, fmt.Errorf("%w: undo", stack.ErrNotSupported)
			}
			var oids []stack.Oid
			oids, err = ut.Undo(ctx, op.undoID)
			if err != nil {
				return nil, err
			}
			resolved = append(resolved, oids...)
		case opBlobStore:
			bt, ok := stxn.(stack.BlobTxn)
			if !ok || !c.storage().Capabilities().Blobs {
				return nil, fmt.Errorf("%w: blobs", stack.ErrNotSupported)
			}
			err = bt.StoreBlob(ctx, op.oid, op.serial, op.data, op.blob)
		}
		var ce *stack.ConflictError
		switch {
		case errors.As(err, &ce) && ce.Data != nil:
			noteConflict(ce)
		case err != nil:
			return nil, err
		case op.kind == opStore || op.kind == opBlobStore:
			// A store that succeeds cancels an earlier conflict of its oid.
			delete(conflicts, op.oid)
		}
	}
	var voteResolved []stack.Oid
	if len(conflicts) == 0 {
		voteResolved, err = stxn.Vote(ctx)
		var cs stack.Conflicts
		if errors.As(err, &cs) {
			for _, ce := range cs {
				if ce.Data == nil {
					return nil, ce
				}
				noteConflict(ce)
			}
		} else if err != nil {
			return nil, err
		}
	}
	if len(conflicts) > 0 {
		c.ms.count(func(s *stats) { s.conflicts += int64(len(conflicts)) })
		_ = stxn.Abort(ctx)
		tx.stxn = nil
		tx.voting = false
		tx.resolving = true
		// Blob files were handed to the storage and removed by its abort;
		// the client re-sends them with its resolved stores.
		tx.blobOps = nil
		var out []any
		for _, oid := range order {
			ce, still := conflicts[oid]
			if !still {
				continue
			}
			out = append(out, zeoproto.Dict{
				{Key: "oid", Value: ce.Oid},
				{Key: "serials", Value: zeoproto.Tuple{ce.Committed, ce.Read}},
				{Key: "data", Value: nonNilBytes(ce.Data)},
			})
		}
		return out, nil
	}
	out := make([]any, 0, len(resolved)+len(voteResolved))
	for _, o := range dedupOids(append(resolved, voteResolved...)) {
		out = append(out, o)
	}
	return out, nil
}

// releaseLock gives the commit lock back and stops the timeout.
func (c *conn) releaseLock(tx *txnBuffer) {
	if tx.timeout != nil {
		if tx.timeout.Stop() {
			c.srv.wg.Done() // it will not run
		}
		tx.timeout = nil
	}
	if tx.locked {
		tx.locked = false
		c.ms.count(func(s *stats) { s.lockTime = time.Time{} })
		c.ms.mount.UnlockCommit()
	}
}

// tpcFinish commits. The reply waits until every other connection has been
// sent the invalidation of this tid (docs/protocol.md §6.6); info goes to the committer
// right before the reply, as Python does.
func (c *conn) tpcFinish(id any, a zeoproto.Args) error {
	if err := a.Need(1, 1); err != nil {
		return err
	}
	c.txMu.Lock()
	defer c.txMu.Unlock()
	ok, err := c.checkTxn(a[0], false)
	if err != nil {
		return err
	}
	if !ok {
		c.reply(id, nil)
		return nil
	}
	tx := c.tx
	if !tx.locked || tx.stxn == nil {
		return fmt.Errorf("%w: tpc_finish before a successful vote", stack.ErrTxnState)
	}
	ms := c.ms
	f := &finishing{conn: c, done: make(chan struct{})}
	ms.mu.Lock()
	ms.finisher = f
	ms.mu.Unlock()
	// Finish must not be cut short by the client going away: the storage
	// decides atomically whether the transaction committed.
	tid, err := tx.stxn.Finish(context.WithoutCancel(c.ctx))
	ms.mu.Lock()
	f.tid = tid
	close(f.done)
	ms.cond.Broadcast()
	ms.mu.Unlock()
	if err == nil {
		if werr := ms.waitProcessed(c.ctx, tid); werr != nil {
			c.log().WithError(werr).Warn(c.labelled("committer left before its invalidations were sent"))
		}
	}
	ms.mu.Lock()
	ms.finisher = nil
	ms.cond.Broadcast()
	ms.mu.Unlock()
	if err != nil {
		c.endTxn(tx)
		c.log().WithError(err).Error(c.labelled("tpc_finish failed"))
		return err
	}
	ms.count(func(s *stats) { s.commits++ })
	if info, ierr := c.storage().Info(c.ctx); ierr == nil {
		c.sendAsync("info", infoDict(info))
	}
	// The reply is queued before the commit lock is released: once it is
	// released, another commit's invalidation may be queued to this
	// client, and the client must see its own tid first. A client that
	// got a newer invalidation before its tpc_finish reply would store its
	// own, older data in its cache as current (docs/protocol.md §6.6).
	c.reply(id, tid)
	c.endTxn(tx)
	return nil
}

// endTxn forgets the transaction and releases what it holds.
func (c *conn) endTxn(tx *txnBuffer) {
	c.releaseLock(tx)
	if tx.upload != nil {
		tx.upload.Close()
		os.Remove(tx.upload.Name())
	}
	if c.tx == tx {
		c.tx = nil
		c.ms.count(func(s *stats) { s.activeTxns-- })
	}
}

func (c *conn) tpcAbort(id any, a zeoproto.Args) error {
	if err := a.Need(1, 1); err != nil {
		return err
	}
	c.txMu.Lock()
	defer c.txMu.Unlock()
	ok, err := c.checkTxn(a[0], false)
	if err != nil {
		return err
	}
	if ok {
		c.abortTxn(c.ctx)
	}
	c.reply(id, nil)
	return nil
}

// abortTxn aborts the open transaction; callers hold txMu.
func (c *conn) abortTxn(ctx context.Context) {
	tx := c.tx
	if tx == nil {
		return
	}
	if tx.stxn != nil {
		if err := tx.stxn.Abort(context.WithoutCancel(ctx)); err != nil {
			c.log().WithError(err).Warn(c.labelled("tpc_abort failed"))
		}
		tx.stxn = nil
	} else {
		// Uploaded blobs never reached the storage: remove them here.
		for _, op := range tx.blobOps {
			if !op.shared {
				os.Remove(op.blob)
			}
		}
	}
	c.ms.count(func(s *stats) { s.aborts++ })
	c.endTxn(tx)
}

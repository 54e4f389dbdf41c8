package zeoclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// blobChunk is the largest storeBlobChunk, as Python's client sends.
const blobChunk = 59000

type txnState int

const (
	txnOpen txnState = iota
	txnVoted
	txnDone
)

// Txn is one remote transaction (docs/protocol.md §6.4). It implements
// stack.Txn and, as the remote supports them, stack.RestoreTxn, UndoTxn,
// DeleteTxn and BlobTxn.
//
// Writes are buffered here and sent at Vote (as Python's client keeps its
// own buffer too): a second write of an oid replaces the first, as the
// contract wants, where a Python server would replay both and report a
// conflict for the superseded one.
type Txn struct {
	s     *Storage
	ss    *session // the connection it runs on: a new one poisons it
	id    int64
	meta  stack.TxnMeta
	state txnState

	ops   []*txnOp
	byOid map[stack.Oid]*txnOp // the write of each oid
	oids  []stack.Oid          // every oid the transaction changes
	sent  map[stack.Oid][]byte // data sent per oid, for conflict errors
	// undone is set by Undo: the server changes objects the transaction
	// does not know the data of, so Finish caches none of its data.
	undone bool
	// written is the data the commit gives each oid, known once Vote
	// succeeded (the sent data minus what the server resolved); Finish
	// caches it.
	written map[stack.Oid][]byte
	blobs   []pendingBlob // blob files stored, moved into place at Finish
}

type opKind int

const (
	opStore opKind = iota
	opBlob
	opDelete
	opRestore
	opCheck
	opUndo
)

// txnOp is one buffered operation.
type txnOp struct {
	kind   opKind
	oid    stack.Oid
	serial stack.Tid // read serial; for a restore, the transaction's tid
	data   []byte
	prev   stack.Tid // restore's prev_txn
	blob   string    // the blob file (opBlob)
	undoID []byte
	// restored marks a blob store made by RestoreBlob: its serial is the
	// remote's current one, so it needs no existence check.
	restored bool
}

// pendingBlob is a blob file the transaction stored.
type pendingBlob struct {
	oid  stack.Oid
	path string
}

// Begin implements stack.Storage (tpc_begin). It waits until the node's
// previous transaction ended: one ZEO connection runs one at a time.
func (s *Storage) Begin(ctx context.Context, meta stack.TxnMeta) (stack.Txn, error) {
	t, err := s.begin(ctx, meta)
	if err != nil {
		var tid *stack.Tid
		if meta.Tid != 0 {
			tid = &meta.Tid
		}
		return nil, s.opErr("tpc_begin", nil, tid, err)
	}
	return t, nil
}

func (s *Storage) begin(ctx context.Context, meta stack.TxnMeta) (*Txn, error) {
	if s.isClosed() {
		return nil, stack.ErrClosed
	}
	if s.opts.ReadOnly {
		return nil, stack.ErrReadOnly
	}
	select {
	case s.commit <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.stop:
		return nil, stack.ErrClosed
	}
	ss, err := s.current()
	if err == nil && ss.readOnly {
		err = stack.ErrReadOnly
	}
	if err != nil {
		<-s.commit
		return nil, err
	}
	t := &Txn{s: s, ss: ss, id: s.nextTxn.Add(1), meta: meta, byOid: map[stack.Oid]*txnOp{}, sent: map[stack.Oid][]byte{}}
	var ext any = zeoproto.Dict{}
	if len(meta.Extension) > 0 {
		ext = meta.Extension // TransactionMetaData takes the pickled bytes as they are
	}
	var tid any
	if meta.Tid != 0 {
		tid = meta.Tid
	}
	status := " "
	if meta.Status != 0 {
		status = string([]byte{meta.Status})
	}
	if err := ss.c.CallAsync(ctx, "tpc_begin", t.id, nonNil(meta.User), nonNil(meta.Description), ext, tid, status); err != nil {
		<-s.commit
		return nil, err
	}
	return t, nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// check fails a call on a transaction that ended, or whose connection is
// gone (it is poisoned: the server aborted it).
func (t *Txn) check(want txnState) error {
	if t.s.isClosed() {
		return stack.ErrClosed
	}
	if t.state != want {
		return fmt.Errorf("%w: transaction %d is %s", stack.ErrTxnState, t.id, t.state)
	}
	if err := t.ss.c.Err(); err != nil {
		return err
	}
	return nil
}

func (st txnState) String() string {
	switch st {
	case txnOpen:
		return "open"
	case txnVoted:
		return "voted"
	}
	return "finished or aborted"
}

// write buffers op as the write of its oid, replacing an earlier one.
func (t *Txn) write(op *txnOp) {
	if old, ok := t.byOid[op.oid]; ok {
		if old.kind == opBlob && old.blob != op.blob {
			os.Remove(old.blob)
		}
		*old = *op
		return
	}
	t.byOid[op.oid] = op
	t.ops = append(t.ops, op)
}

// Store implements stack.Txn (storea, sent at Vote). Conflicts come from
// Vote.
func (t *Txn) Store(ctx context.Context, oid stack.Oid, serial stack.Tid, data []byte) error {
	if len(data) == 0 {
		return t.s.opErr("store", &oid, nil, stack.ErrEmptyData)
	}
	if err := t.check(txnOpen); err != nil {
		return t.s.opErr("store", &oid, nil, err)
	}
	t.write(&txnOp{kind: opStore, oid: oid, serial: serial, data: data})
	return nil
}

// CheckCurrentSerial implements stack.Txn (checkCurrentSerialInTransaction).
func (t *Txn) CheckCurrentSerial(ctx context.Context, oid stack.Oid, serial stack.Tid) error {
	if err := t.check(txnOpen); err != nil {
		return t.s.opErr("checkCurrentSerial", &oid, nil, err)
	}
	t.ops = append(t.ops, &txnOp{kind: opCheck, oid: oid, serial: serial})
	return nil
}

// Restore implements stack.RestoreTxn (restorea): the transaction must
// have been begun with an explicit TxnMeta.Tid.
func (t *Txn) Restore(ctx context.Context, oid stack.Oid, data []byte, prevTxn stack.Tid) error {
	fail := func(err error) error { return t.s.opErr("restore", &oid, nil, err) }
	if !t.s.Capabilities().Restore {
		return fail(fmt.Errorf("%w: the remote storage cannot restore", stack.ErrNotSupported))
	}
	if t.meta.Tid == 0 {
		return fail(fmt.Errorf("%w: restore needs a transaction begun with an explicit tid", stack.ErrTxnState))
	}
	if data != nil && len(data) == 0 {
		return fail(stack.ErrEmptyData)
	}
	if err := t.check(txnOpen); err != nil {
		return fail(err)
	}
	t.write(&txnOp{kind: opRestore, oid: oid, serial: t.meta.Tid, data: data, prev: prevTxn})
	return nil
}

// Delete implements stack.DeleteTxn (deleteObject).
func (t *Txn) Delete(ctx context.Context, oid stack.Oid, serial stack.Tid) error {
	fail := func(err error) error { return t.s.opErr("deleteObject", &oid, nil, err) }
	if !t.s.Capabilities().Delete {
		return fail(fmt.Errorf("%w: the remote storage has no IExternalGC", stack.ErrNotSupported))
	}
	if err := t.check(txnOpen); err != nil {
		return fail(err)
	}
	t.write(&txnOp{kind: opDelete, oid: oid, serial: serial})
	return nil
}

// Undo implements stack.UndoTxn (undoa). The server undoes at vote time;
// the oids returned here are those of the undone transaction, found by
// iterating it on the remote (nil when the remote cannot iterate; Vote's
// result has them then). An id no UndoLog of the remote lists is an
// *UndoError without asking the server, which would fail the whole
// connection on it.
func (t *Txn) Undo(ctx context.Context, id []byte) ([]stack.Oid, error) {
	fail := func(err error) ([]stack.Oid, error) { return nil, t.s.opErr("undo", nil, nil, err) }
	if err := t.check(txnOpen); err != nil {
		return fail(err)
	}
	if !t.s.Capabilities().Undo {
		return fail(fmt.Errorf("%w: the remote storage cannot undo", stack.ErrNotSupported))
	}
	info, err := t.s.findUndo(ctx, t.ss, id)
	if err != nil {
		return fail(err)
	}
	var oids []stack.Oid
	if t.s.Capabilities().Iterate {
		if oids, err = iterateOids(ctx, t.ss.c, info.Tid, info.Tid); err != nil {
			return fail(err)
		}
	}
	t.ops = append(t.ops, &txnOp{kind: opUndo, undoID: id})
	t.oids = append(t.oids, oids...)
	t.undone = true
	return oids, nil
}

// StoreBlob implements stack.BlobTxn: storea and the blob upload
// (storeBlobStart/Chunk/End), or storeBlobShared with a shared blob
// directory, sent at Vote. The file at blobPath is the transaction's from
// now on.
func (t *Txn) StoreBlob(ctx context.Context, oid stack.Oid, serial stack.Tid, data []byte, blobPath string) error {
	fail := func(err error) error { return t.s.opErr("storeBlob", &oid, nil, err) }
	if len(data) == 0 {
		return fail(stack.ErrEmptyData)
	}
	if !t.s.Capabilities().Blobs {
		return fail(fmt.Errorf("%w: no blob support (the remote has none, or blob-dir is not set)", stack.ErrNotSupported))
	}
	if err := t.check(txnOpen); err != nil {
		return fail(err)
	}
	if _, err := os.Stat(blobPath); err != nil {
		return fail(err)
	}
	path := blobPath
	if t.s.opts.SharedBlobDir {
		staged, err := t.s.blobs.stageShared(oid, blobPath)
		if err != nil {
			return fail(err)
		}
		path = staged
	}
	t.write(&txnOp{kind: opBlob, oid: oid, serial: serial, data: data, blob: path})
	return nil
}

// RestoreBlob implements stack.BlobTxn for copying a history into the
// remote (RAID recovery). ZEO has no remote restoreBlob, so the record is
// sent as a blob store (storea and storeBlobStart/Chunk/End) inside the
// restore transaction, begun with the explicit tid and status, and with
// the oid's current serial on the remote as the serial: the remote equals
// the source up to this tid, so the store cannot conflict and commits the
// same data and blob under the transaction's tid. prevTxn is not sent: a
// blob store always writes its data (no backpointer), which no reader can
// tell apart. Like StoreBlob, the transaction takes over blobPath.
func (t *Txn) RestoreBlob(ctx context.Context, oid stack.Oid, data []byte, blobPath string, prevTxn stack.Tid) error {
	fail := func(err error) error { return t.s.opErr("restoreBlob", &oid, nil, err) }
	if !t.s.Capabilities().Blobs {
		return fail(fmt.Errorf("%w: no blob support (the remote has none, or blob-dir is not set)", stack.ErrNotSupported))
	}
	if t.meta.Tid == 0 {
		return fail(fmt.Errorf("%w: restoreBlob needs a transaction begun with an explicit tid", stack.ErrTxnState))
	}
	if len(data) == 0 {
		return fail(fmt.Errorf("%w: a blob record needs its data", stack.ErrEmptyData))
	}
	if err := t.check(txnOpen); err != nil {
		return fail(err)
	}
	if _, err := os.Stat(blobPath); err != nil {
		return fail(err)
	}
	serial, err := t.currentSerial(ctx, oid)
	if err != nil {
		return fail(err)
	}
	path := blobPath
	if t.s.opts.SharedBlobDir {
		staged, err := t.s.blobs.stageShared(oid, blobPath)
		if err != nil {
			return fail(err)
		}
		path = staged
	}
	t.write(&txnOp{kind: opBlob, oid: oid, serial: serial, data: data, blob: path, restored: true})
	return nil
}

// currentSerial asks the remote for the tid of oid's newest record (0 for
// an object it does not have), bypassing the cache.
func (t *Txn) currentSerial(ctx context.Context, oid stack.Oid) (stack.Tid, error) {
	r, err := t.ss.c.Call(ctx, "history", oid, 1)
	var nf *stack.NotFoundError
	if errors.As(err, &nf) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("history: %w", err)
	}
	list, _ := zeoproto.Seq(r)
	if len(list) == 0 {
		return 0, nil
	}
	d, ok := list[0].(zeoproto.Dict)
	if !ok {
		return 0, fmt.Errorf("history entry is %s, want a dict", zeoproto.TypeName(list[0]))
	}
	v, ok := d.Get("tid")
	if !ok {
		v, _ = d.Get("serial")
	}
	b, _ := zeoproto.AsBytes(v)
	tid, err := stack.TidFromBytes(b)
	if err != nil {
		return 0, fmt.Errorf("history entry: %w", err)
	}
	return tid, nil
}

// sendBatch is how many bytes of data send writes at most with one
// write: the stores go out in few system calls, not one each.
const sendBatch = 1 << 20

// send writes the buffered operations to the server.
func (t *Txn) send(ctx context.Context) error {
	c := t.ss.c
	var batch []zeoproto.Message
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := c.CallAsyncs(ctx, batch...)
		batch, size = batch[:0], 0
		return err
	}
	queue := func(name string, args ...any) error {
		batch = append(batch, zeoproto.NewAsync(name, args...))
		if size += 64; size >= sendBatch {
			return flush()
		}
		return nil
	}
	for _, op := range t.ops {
		var err error
		switch op.kind {
		case opStore:
			size += len(op.data)
			err = queue("storea", op.oid, op.serial, op.data, t.id)
		case opDelete:
			err = queue("deleteObject", op.oid, op.serial, t.id)
		case opRestore:
			var d, prev any
			if op.data != nil {
				d = op.data
			}
			if op.prev != 0 {
				prev = op.prev
			}
			size += len(op.data)
			err = queue("restorea", op.oid, op.serial, d, prev, t.id)
		case opCheck:
			err = queue("checkCurrentSerialInTransaction", op.oid, op.serial, t.id)
		case opUndo:
			err = queue("undoa", op.undoID, t.id)
		case opBlob:
			if err = flush(); err == nil {
				err = t.sendBlob(ctx, op)
			}
		}
		if err != nil {
			return err
		}
		if op.data != nil {
			t.sent[op.oid] = op.data
		}
		switch op.kind {
		case opStore, opDelete, opRestore:
			t.oids = append(t.oids, op.oid)
		case opBlob:
			t.oids = append(t.oids, op.oid)
			t.blobs = append(t.blobs, pendingBlob{oid: op.oid, path: op.blob})
		}
	}
	return flush()
}

// sendBlob uploads one blob store.
func (t *Txn) sendBlob(ctx context.Context, op *txnOp) error {
	c := t.ss.c
	if t.s.opts.SharedBlobDir {
		return c.CallAsync(ctx, "storeBlobShared", op.oid, op.serial, op.data, filepath.Base(op.blob), t.id)
	}
	f, err := os.Open(op.blob)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := c.CallAsync(ctx, "storea", op.oid, op.serial, op.data, t.id); err != nil {
		return err
	}
	if err := c.CallAsync(ctx, "storeBlobStart"); err != nil {
		return err
	}
	buf := make([]byte, blobChunk)
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			if err := c.CallAsync(ctx, "storeBlobChunk", buf[:n]); err != nil {
				return err
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			// The server waits for storeBlobEnd: the connection is unusable.
			c.Close()
			return fmt.Errorf("reading blob %s: %w", op.blob, err)
		}
	}
	return c.CallAsync(ctx, "storeBlobEnd", op.oid, op.serial, op.data, t.id)
}

// existCheck asks the server whether an object written with a non-zero
// serial exists at all. Python's FileStorage checks the serial only of
// existing objects, so a store to a missing oid with a made-up serial
// would commit there and conflict everywhere else; Vote turns a missing
// object into the conflict the contract asks for.
type existCheck struct {
	op      *txnOp
	done    chan struct{}
	missing bool
	err     error
}

// existCheckers bounds the existence checks in flight.
const existCheckers = 32

// startExistChecks starts the checks, concurrently with sending the ops;
// the cache confirms most objects without asking.
func (t *Txn) startExistChecks(ctx context.Context) []*existCheck {
	var checks []*existCheck
	for _, op := range t.ops {
		if (op.kind != opStore && op.kind != opBlob && op.kind != opDelete) || op.serial == 0 || op.restored {
			continue
		}
		if t.s.cache.knows(op.oid, op.serial) {
			continue
		}
		checks = append(checks, &existCheck{op: op, done: make(chan struct{})})
	}
	work := make(chan *existCheck, len(checks))
	for _, ch := range checks {
		work <- ch
	}
	close(work)
	c := t.ss.c
	for range min(existCheckers, len(checks)) {
		go func() {
			for ch := range work {
				_, err := c.Call(ctx, "history", ch.op.oid, 1)
				var nf *stack.NotFoundError
				if errors.As(err, &nf) {
					ch.missing = true
				} else {
					ch.err = err
				}
				close(ch.done)
			}
		}()
	}
	return checks
}

// missingObjects waits for the checks and returns a conflict for every
// written object that does not exist.
func missingObjects(checks []*existCheck) (stack.Conflicts, error) {
	var out stack.Conflicts
	var firstErr error
	for _, ch := range checks {
		<-ch.done
		if ch.err != nil && firstErr == nil {
			firstErr = ch.err
		}
		if ch.missing {
			out = append(out, &stack.ConflictError{Oid: ch.op.oid, Read: ch.op.serial, Data: ch.op.data})
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// Vote implements stack.Txn (vote). Conflict dicts from the server come
// back as stack.Conflicts carrying the rejected data; an error reply as
// its typed error (a *stack.ConflictError gets the data stored here).
func (t *Txn) Vote(ctx context.Context) ([]stack.Oid, error) {
	fail := func(err error) ([]stack.Oid, error) { return nil, t.s.opErr("vote", nil, nil, err) }
	if err := t.check(txnOpen); err != nil {
		return fail(err)
	}
	checkCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	checks := t.startExistChecks(checkCtx)
	err := t.send(ctx)
	if err != nil {
		cancel()
	}
	missing, cerr := missingObjects(checks)
	if err == nil {
		err = cerr
	}
	if err == nil && len(missing) > 0 {
		err = missing
	}
	t.ops, t.byOid = nil, map[stack.Oid]*txnOp{}
	if err != nil {
		return fail(err)
	}
	r, err := t.ss.c.Call(ctx, "vote", t.id)
	if err != nil {
		var ce *stack.ConflictError
		if errors.As(err, &ce) && ce.Data == nil {
			ce.Data = t.sent[ce.Oid]
		}
		return fail(err)
	}
	var resolved []stack.Oid
	var conflicts stack.Conflicts
	list, _ := zeoproto.Seq(r)
	for _, it := range list {
		switch v := it.(type) {
		case zeoproto.Dict:
			ce, err := conflictFromDict(v)
			if err != nil {
				return fail(err)
			}
			conflicts = append(conflicts, ce)
		default:
			b, _ := zeoproto.AsBytes(v)
			oid, err := stack.OidFromBytes(b)
			if err != nil {
				return fail(fmt.Errorf("vote result: %w", err))
			}
			resolved = append(resolved, oid)
		}
	}
	if len(conflicts) > 0 {
		return fail(conflicts)
	}
	t.oids = append(t.oids, resolved...)
	if !t.undone {
		t.written = make(map[stack.Oid][]byte, len(t.sent))
		for oid, d := range t.sent {
			t.written[oid] = d
		}
		for _, oid := range resolved {
			delete(t.written, oid)
		}
	}
	t.state = txnVoted
	return resolved, nil
}

// conflictFromDict reads one conflict dict of a vote result:
// {oid, serials: (committed, read), data}.
func conflictFromDict(d zeoproto.Dict) (*stack.ConflictError, error) {
	ce := &stack.ConflictError{}
	v, _ := d.Get("oid")
	b, _ := zeoproto.AsBytes(v)
	oid, err := stack.OidFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("conflict dict: %w", err)
	}
	ce.Oid = oid
	if v, ok := d.Get("serials"); ok {
		if pair, ok := zeoproto.Seq(v); ok && len(pair) == 2 {
			a := zeoproto.Args(pair)
			ce.Committed, _ = a.Tid(0)
			ce.Read, _ = a.Tid(1)
		}
	}
	ce.Data = dictBytes(d, "data")
	return ce, nil
}

// Finish implements stack.Txn (tpc_finish). When it returns, the cache
// has forgotten the stored objects' old revisions and the watchers have
// been sent the commit's event (before any later foreign commit).
func (t *Txn) Finish(ctx context.Context) (stack.Tid, error) {
	fail := func(err error) (stack.Tid, error) { return 0, t.s.opErr("tpc_finish", nil, nil, err) }
	if err := t.check(txnVoted); err != nil {
		if t.state == txnVoted {
			// The connection is gone (the server aborts the transaction):
			// the node is free for the next one.
			t.end()
		}
		return fail(err)
	}
	s := t.s
	s.beginFinish()
	r, err := t.ss.c.Call(ctx, "tpc_finish", t.id)
	var tid stack.Tid
	if err == nil {
		b, ok := r.([]byte)
		if !ok {
			err = fmt.Errorf("server returned %s, want the tid (the server has no such transaction)", zeoproto.TypeName(r))
		} else if tid, err = stack.TidFromBytes(b); err == nil && tid <= s.lastSeen() {
			err = fmt.Errorf("server committed tid %s, not after the last seen %s", tid, s.lastSeen())
		}
	}
	if err != nil {
		s.endFinish(nil)
		t.end()
		return fail(err)
	}
	oids := dedup(t.oids)
	s.cache.committed(tid, oids, t.written)
	for _, b := range t.blobs {
		if err := s.blobs.committed(b.oid, tid, b.path); err != nil {
			s.log.WithError(err).WithField("oid", b.oid.String()).Warn("could not keep the committed blob in the blob cache")
		}
	}
	t.blobs = nil
	s.endFinish(&stack.Event{Tid: tid, Oids: oids})
	t.end()
	return tid, nil
}

// end releases the node for the next transaction.
func (t *Txn) end() {
	if t.state != txnDone {
		t.state = txnDone
		<-t.s.commit
	}
}

// Abort implements stack.Txn (tpc_abort). A lost connection is no error:
// the server aborts the transactions of a closed connection.
func (t *Txn) Abort(ctx context.Context) error {
	if t.state == txnDone {
		return nil
	}
	defer t.end()
	for _, b := range t.blobs {
		os.Remove(b.path)
	}
	for _, op := range t.ops {
		if op.kind == opBlob {
			os.Remove(op.blob)
		}
	}
	t.blobs, t.ops = nil, nil
	if t.ss.c.Err() != nil || t.s.isClosed() {
		return nil
	}
	_, err := t.ss.c.Call(ctx, "tpc_abort", t.id)
	var de *zeoproto.DisconnectedError
	if err != nil && !errors.As(err, &de) {
		return t.s.opErr("tpc_abort", nil, nil, err)
	}
	return nil
}

func dedup(oids []stack.Oid) []stack.Oid {
	seen := make(map[stack.Oid]bool, len(oids))
	out := make([]stack.Oid, 0, len(oids))
	for _, o := range oids {
		if !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	return out
}

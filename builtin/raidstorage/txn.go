package raidstorage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
)

// opKind is what a buffered transaction operation does.
type opKind int

const (
	opStore opKind = iota
	opCheck
	opRestore
	opDelete
	opUndo
	opStoreBlob
	opRestoreBlob
)

// txnOp is one operation of the transaction, kept for the event and
// the blob files and streamed to every child as it comes.
type txnOp struct {
	kind    opKind
	oid     stack.Oid
	serial  stack.Tid
	data    []byte
	prevTxn stack.Tid
	undoID  []byte
	blob    string // the staged blob file the RAID took over
}

type txnState int

const (
	txnOpen txnState = iota
	txnVoted
	txnDone
)

// txn is a RAID transaction. Begin takes the RAID's commit lock, picks
// the tid and begins the transaction on every optimal child; each
// operation is streamed to every child while the caller goes on (one
// goroutine per child applies them in order), and Vote votes on every
// child in parallel (docs/raid.md §6.2).
type txn struct {
	r     *Storage
	meta  stack.TxnMeta
	ops   []*txnOp
	state txnState

	locked bool
	tid    stack.Tid
	parts  []*part
	oids   []stack.Oid // the event's oids, set by Vote
	// wctx bounds the children's calls of the streamed operations (the
	// caller's contexts may end with each call); cancelled when the
	// transaction ends.
	wctx    context.Context
	wcancel context.CancelFunc
	closed  bool // the parts' op channels are closed and drained
}

// part is the transaction on one child.
type part struct {
	c         *child
	txn       stack.Txn
	ops       chan *txnOp   // streamed to the child's goroutine
	done      chan struct{} // closed when it applied the last one
	conflicts stack.Conflicts
	resolved  []stack.Oid
	undone    []stack.Oid
	op        string // the call that failed, for the reason
	err       error
	blobs     []string // staged copies handed to the child
}

// streamDepth is how many operations may wait for a child's goroutine
// before Store waits for it.
const streamDepth = 256

var (
	_ stack.RestoreTxn = (*txn)(nil)
	_ stack.UndoTxn    = (*txn)(nil)
	_ stack.BlobTxn    = (*txn)(nil)
	_ stack.DeleteTxn  = (*txn)(nil)
)

// Begin implements stack.Storage (tpc_begin). It waits for the commit
// lock and then for the delay a falling-behind recovery asks for, picks
// the tid and begins the transaction on every optimal child. Below
// write-quorum it fails as fail-mode says; an explicit meta.Tid must
// follow the RAID's last tid.
func (r *Storage) Begin(ctx context.Context, meta stack.TxnMeta) (stack.Txn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := r.beginnable(meta); err != nil {
		return nil, err
	}
	if err := r.lock(ctx); err != nil {
		return nil, err
	}
	// Delayed under the lock, commits come at most once per delay
	// however many clients wait.
	r.throttle(ctx)
	r.mu.Lock()
	if err := r.beginnableLocked(meta); err != nil {
		r.mu.Unlock()
		r.unlock()
		return nil, err
	}
	if meta.Status == 0 {
		meta.Status = ' '
	}
	meta.User, meta.Description, meta.Extension = clone(meta.User), clone(meta.Description), clone(meta.Extension)
	t := &txn{r: r, meta: meta, locked: true}
	if meta.Tid != 0 {
		t.tid = meta.Tid
	} else {
		t.tid = stack.NewTid(r.last, time.Now())
	}
	cs := r.optimalLocked()
	for _, c := range cs {
		c.expect[t.tid] = true
	}
	r.mu.Unlock()
	t.wctx, t.wcancel = context.WithCancel(context.WithoutCancel(ctx))
	t.parts = make([]*part, len(cs))
	for i, c := range cs {
		p := &part{c: c, ops: make(chan *txnOp, streamDepth), done: make(chan struct{})}
		t.parts[i] = p
		go t.stream(p)
	}
	return t, nil
}

// beginnable checks what Begin needs: the RAID open, writable, and an
// explicit tid after the last.
func (r *Storage) beginnable(meta stack.TxnMeta) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.beginnableLocked(meta)
}

func (r *Storage) beginnableLocked(meta stack.TxnMeta) error {
	if r.closed {
		return stack.ErrClosed
	}
	if r.caps.ReadOnly {
		return fmt.Errorf("%s: a child is read-only: %w", r.path, stack.ErrReadOnly)
	}
	if err := r.writableLocked(); err != nil {
		return err
	}
	if meta.Tid != 0 && meta.Tid <= r.last {
		return &stack.StorageError{Msg: fmt.Sprintf("tpc_begin: explicit tid %s does not follow the last transaction %s", meta.Tid, r.last)}
	}
	return nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func (t *txn) add(ctx context.Context, op txnOp) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.state != txnOpen {
		return fmt.Errorf("write after vote or end: %w", stack.ErrTxnState)
	}
	op.data = clone(op.data)
	o := &op
	t.ops = append(t.ops, o)
	for _, p := range t.parts {
		p.ops <- o // its goroutine takes every operation until Vote or Abort
	}
	return nil
}

// Store implements stack.Txn; conflicts come from Vote.
func (t *txn) Store(ctx context.Context, oid stack.Oid, serial stack.Tid, data []byte) error {
	if data == nil {
		data = []byte{}
	}
	return t.add(ctx, txnOp{kind: opStore, oid: oid, serial: serial, data: data})
}

// CheckCurrentSerial implements stack.Txn.
func (t *txn) CheckCurrentSerial(ctx context.Context, oid stack.Oid, serial stack.Tid) error {
	return t.add(ctx, txnOp{kind: opCheck, oid: oid, serial: serial})
}

// Restore implements stack.RestoreTxn.
func (t *txn) Restore(ctx context.Context, oid stack.Oid, data []byte, prevTxn stack.Tid) error {
	if !t.r.caps.Restore {
		return stack.ErrNotSupported
	}
	return t.add(ctx, txnOp{kind: opRestore, oid: oid, data: data, prevTxn: prevTxn})
}

// Delete implements stack.DeleteTxn.
func (t *txn) Delete(ctx context.Context, oid stack.Oid, serial stack.Tid) error {
	if !t.r.caps.Delete {
		return stack.ErrNotSupported
	}
	return t.add(ctx, txnOp{kind: opDelete, oid: oid, serial: serial})
}

// StoreBlob implements stack.BlobTxn: the RAID takes over blobPath and
// hands every child its own copy at vote.
func (t *txn) StoreBlob(ctx context.Context, oid stack.Oid, serial stack.Tid, data []byte, blobPath string) error {
	if !t.r.caps.Blobs {
		return stack.ErrNotSupported
	}
	return t.add(ctx, txnOp{kind: opStoreBlob, oid: oid, serial: serial, data: data, blob: blobPath})
}

// RestoreBlob implements stack.BlobTxn.
func (t *txn) RestoreBlob(ctx context.Context, oid stack.Oid, data []byte, blobPath string, prevTxn stack.Tid) error {
	if !t.r.caps.Blobs {
		return stack.ErrNotSupported
	}
	return t.add(ctx, txnOp{kind: opRestoreBlob, oid: oid, data: data, blob: blobPath, prevTxn: prevTxn})
}

// Undo implements stack.UndoTxn. Nothing reaches the children before
// Vote: every child undoes the transaction there, in the RAID's
// transaction, so Undo returns no oids and Vote returns the children's
// (the contract lets Vote report what the storage changed on its own). An
// UndoError comes from Vote too, as from Python's ZEO server.
func (t *txn) Undo(ctx context.Context, id []byte) ([]stack.Oid, error) {
	if !t.r.caps.Undo {
		return nil, stack.ErrNotSupported
	}
	if t.state != txnOpen {
		return nil, fmt.Errorf("undo after vote or end: %w", stack.ErrTxnState)
	}
	return nil, t.add(ctx, txnOp{kind: opUndo, undoID: clone(id)})
}

// lock takes the RAID's commit lock, or fails with ctx's error.
func (r *Storage) lock(ctx context.Context) error {
	select {
	case r.commit <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Storage) unlock() { <-r.commit }

// Vote implements stack.Txn (tpc_vote): once every child applied the
// streamed operations, it votes on every child in parallel, then applies
// the outcome table of docs/raid.md §6.3.
func (t *txn) Vote(ctx context.Context) ([]stack.Oid, error) {
	r := t.r
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if t.state != txnOpen {
		return nil, fmt.Errorf("vote twice or after the end: %w", stack.ErrTxnState)
	}
	t.closeStreams()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		t.abortParts(t.parts)
		t.release()
		return nil, stack.ErrClosed
	}
	// A child degraded since Begin (a failed read) takes no part.
	var gone []*part
	kept := t.parts[:0]
	for _, p := range t.parts {
		if p.c.state == Optimal {
			kept = append(kept, p)
		} else {
			gone = append(gone, p)
		}
	}
	t.parts = kept
	r.mu.Unlock()
	t.abortParts(gone)

	r.parallel(childrenOf(t.parts), func(i int, c *child) { t.vote(ctx, t.parts[i]) })

	if err := ctx.Err(); err != nil {
		t.abortParts(t.parts)
		t.release()
		return nil, err
	}
	// Failures degrade their child; the rest are compared.
	var rest []*part
	var sigs []string
	for _, p := range t.parts {
		if p.err != nil && r.failed(ctx, p.c, p.op, p.err) {
			t.abortParts([]*part{p})
			continue
		}
		rest = append(rest, p)
		sigs = append(sigs, p.signature())
	}
	if len(rest) == 0 {
		t.release()
		return nil, &stack.OpError{Node: r.path, Op: "tpc_vote", Err: noChildLeft(t.parts)}
	}
	win := majority(sigs)
	var yes []*part
	var answer *part
	for i, p := range rest {
		if sigs[i] != win {
			r.degrade(p.c, reasonInconsistent+"vote")
			t.abortParts([]*part{p})
			continue
		}
		if answer == nil {
			answer = p
		}
		yes = append(yes, p)
	}
	if answer.err != nil {
		t.abortParts(yes)
		t.release()
		return nil, answer.err
	}
	if len(yes) < r.options().WriteQuorum {
		t.abortParts(yes)
		t.release()
		r.mu.Lock()
		err := r.writableLocked()
		r.mu.Unlock()
		if err == nil {
			err = fmt.Errorf("%s: %d children voted, write-quorum %d: %w", r.path, len(yes), r.options().WriteQuorum, stack.ErrReadOnly)
		}
		return nil, err
	}
	t.parts = yes
	t.state = txnVoted
	t.oids = t.eventOids(answer)
	return answer.changed(), nil
}

// dedupOids drops repeated oids, keeping the first occurrence's order.
func dedupOids(oids []stack.Oid) []stack.Oid {
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

// eventOids lists the oids the transaction changes, for the watchers.
func (t *txn) eventOids(p *part) []stack.Oid {
	seen := map[stack.Oid]bool{}
	var out []stack.Oid
	add := func(o stack.Oid) {
		if !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	for _, op := range t.ops {
		switch op.kind {
		case opStore, opRestore, opDelete, opStoreBlob, opRestoreBlob:
			add(op.oid)
		}
	}
	for _, o := range p.undone {
		add(o)
	}
	for _, o := range p.resolved {
		add(o)
	}
	return out
}

// changed lists the oids the child changed on its own: those it undid
// and those its vote reported. Children report undone oids at Undo or at
// Vote (a ZEO server reports them at vote), so only the union compares.
func (p *part) changed() []stack.Oid {
	return dedupOids(append(slices.Clone(p.undone), p.resolved...))
}

// signature summarises a child's vote for comparison: its error, or the
// oids it resolved.
func (p *part) signature() string {
	if p.err != nil {
		return errSignature(p.err)
	}
	return fmt.Sprintf("ok %v", sortedOids(p.changed()))
}

func sortedOids(oids []stack.Oid) []stack.Oid {
	out := slices.Clone(oids)
	slices.Sort(out)
	return out
}

// call runs one call of p's child bounded by call-timeout from base,
// and records a failure in p.
func (t *txn) call(base context.Context, p *part, op string, f func(ctx context.Context) error) bool {
	cctx, cancel := t.r.callCtx(base)
	defer cancel()
	if err := f(cctx); err != nil {
		p.op, p.err = op, err
		return false
	}
	return true
}

// stream begins the transaction on p's child with the RAID's tid and
// applies the operations as Store and the others send them, each call
// bounded by call-timeout, until Vote or Abort closes p.ops. After a
// failure it only drains the channel. Conflicts reported by stores are
// kept for Vote, which merges them with the vote's.
func (t *txn) stream(p *part) {
	defer close(p.done)
	meta := t.meta
	meta.Tid = t.tid
	ok := t.call(t.wctx, p, "tpc_begin", func(ctx context.Context) (err error) {
		p.txn, err = p.c.st.Begin(ctx, meta)
		return err
	})
	for op := range p.ops {
		if ok {
			ok = t.apply(p, op)
		}
	}
}

// apply sends one operation to p's child; false when it failed.
func (t *txn) apply(p *part, op *txnOp) bool {
	c := p.c
	var name string
	var f func(ctx context.Context) error
	switch op.kind {
	case opStore:
		name = "store"
		f = func(ctx context.Context) error { return p.txn.Store(ctx, op.oid, op.serial, op.data) }
	case opCheck:
		name = "checkCurrentSerialInTransaction"
		f = func(ctx context.Context) error { return p.txn.CheckCurrentSerial(ctx, op.oid, op.serial) }
	case opRestore:
		name = "restore"
		f = func(ctx context.Context) error {
			rt, err := implements[stack.RestoreTxn](c, p.txn)
			if err != nil {
				return err
			}
			return rt.Restore(ctx, op.oid, op.data, op.prevTxn)
		}
	case opDelete:
		name = "deleteObject"
		f = func(ctx context.Context) error {
			dt, err := implements[stack.DeleteTxn](c, p.txn)
			if err != nil {
				return err
			}
			return dt.Delete(ctx, op.oid, op.serial)
		}
	case opUndo:
		name = "undo"
		f = func(ctx context.Context) error {
			ut, err := implements[stack.UndoTxn](c, p.txn)
			if err != nil {
				return err
			}
			oids, err := ut.Undo(ctx, op.undoID)
			p.undone = append(p.undone, oids...)
			return err
		}
	case opStoreBlob, opRestoreBlob:
		name = "storeBlob"
		f = func(ctx context.Context) error {
			bt, err := implements[stack.BlobTxn](c, p.txn)
			if err != nil {
				return err
			}
			staged, err := stageBlob(op.blob, c)
			if err != nil {
				return err
			}
			p.blobs = append(p.blobs, staged)
			if op.kind == opStoreBlob {
				return bt.StoreBlob(ctx, op.oid, op.serial, op.data, staged)
			}
			return bt.RestoreBlob(ctx, op.oid, op.data, staged, op.prevTxn)
		}
	}
	ok := t.call(t.wctx, p, name, f)
	var ce *stack.ConflictError
	if !ok && errors.As(p.err, &ce) && (op.kind == opStore || op.kind == opStoreBlob) {
		p.conflicts = append(p.conflicts, ce)
		p.op, p.err = "", nil
		return true
	}
	return ok
}

// vote votes on p's child, unless its stream failed, and merges the
// conflicts its stores reported with the vote's.
func (t *txn) vote(ctx context.Context, p *part) {
	if p.err != nil {
		return
	}
	if !t.call(ctx, p, "tpc_vote", func(ctx context.Context) (err error) {
		p.resolved, err = p.txn.Vote(ctx)
		return err
	}) {
		var cs stack.Conflicts
		if len(p.conflicts) > 0 && errors.As(p.err, &cs) {
			p.err = append(p.conflicts, cs...)
		}
		return
	}
	if len(p.conflicts) > 0 {
		p.op, p.err = "tpc_vote", p.conflicts
	}
}

// closeStreams ends the operations and waits until every child's
// goroutine applied them.
func (t *txn) closeStreams() {
	if t.closed {
		return
	}
	t.closed = true
	for _, p := range t.parts {
		close(p.ops)
	}
	for _, p := range t.parts {
		<-p.done
	}
}

// stageBlob gives the child c its own copy of the staged file at path, in
// its blob staging directory.
func stageBlob(path string, c *child) (string, error) {
	b, err := implements[stack.Blobber](c, c.st)
	if err != nil {
		return "", err
	}
	return stack.StageBlob(path, b)
}

// abortParts aborts the child transactions of ps in parallel; errors
// degrade nobody (docs/raid.md §6.5).
func (t *txn) abortParts(ps []*part) {
	var wg sync.WaitGroup
	for _, p := range ps {
		t.r.forget(p.c, t.tid)
		if p.txn == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := t.r.callCtx(context.Background())
			defer cancel()
			if err := p.txn.Abort(ctx); err != nil {
				t.r.log.WithFields(logrus.Fields{"child": p.c.name, "tid": t.tid.String()}).WithError(err).Warn("tpc_abort failed")
			}
		}()
	}
	wg.Wait()
}

// release gives back the commit lock.
func (t *txn) release() {
	if t.locked {
		t.locked = false
		t.wcancel()
		t.r.unlock()
	}
}

// Finish implements stack.Txn (tpc_finish): finish on every child that
// voted yes, in parallel. Children that fail are degraded "tpc_finish
// failed: …", one that reports another tid "inconsistent
// lastTransaction". The commit succeeds when write-quorum children
// finished.
func (t *txn) Finish(ctx context.Context) (stack.Tid, error) {
	r := t.r
	if t.state != txnVoted {
		return 0, fmt.Errorf("finish before vote: %w", stack.ErrTxnState)
	}
	t.state = txnDone
	defer t.release()
	defer t.removeBlobs()
	tids := make([]stack.Tid, len(t.parts))
	errs := make([]error, len(t.parts))
	finish := func(i int, c *child) {
		cctx, cancel := r.callCtx(ctx)
		defer cancel()
		tids[i], errs[i] = t.parts[i].txn.Finish(cctx)
	}
	if haltAfterFirstFinish != "" && len(t.parts) > 1 {
		t.halt(finish)
	}
	r.parallel(childrenOf(t.parts), finish)
	done := 0
	for i, p := range t.parts {
		switch {
		case errs[i] != nil:
			r.forget(p.c, t.tid)
			r.degrade(p.c, "tpc_finish failed: "+errs[i].Error())
			t.abortParts([]*part{p}) // a child may hold its transaction open after a failed finish
		case tids[i] != t.tid:
			r.degrade(p.c, reasonInconsistent+"lastTransaction")
		default:
			done++
		}
	}
	if done == 0 {
		return 0, &stack.OpError{Node: r.path, Op: "tpc_finish", Tid: &t.tid, Err: errNoChild}
	}
	r.mu.Lock()
	r.last = t.tid
	r.commits++
	for _, p := range t.parts {
		if p.c.state == Optimal {
			p.c.last = t.tid
		}
	}
	for _, o := range t.oids {
		if o >= r.nextOid {
			r.nextOid = o + 1
		}
	}
	if err := r.notifier.Publish(stack.Event{Tid: t.tid, Oids: t.oids}); err != nil {
		r.log.WithError(err).WithField("tid", t.tid.String()).Error("invalidation not published")
	}
	r.mu.Unlock()
	if done < r.options().WriteQuorum {
		return t.tid, &stack.OpError{Node: r.path, Op: "tpc_finish", Tid: &t.tid,
			Err: fmt.Errorf("only %d children finished, write-quorum %d", done, r.options().WriteQuorum)}
	}
	return t.tid, nil
}

// haltAfterFirstFinish is the crash test's hook (docs/raid.md §8.8): when
// the environment variable ZEORAID_TEST_HALT_AFTER_FIRST_FINISH names a
// file, the first commit with two or more children finishes the first
// child only, then creates that file and blocks for good. The test kills
// the process there: one child is a transaction behind the other.
var haltAfterFirstFinish = os.Getenv("ZEORAID_TEST_HALT_AFTER_FIRST_FINISH")

// halt finishes the first child and stops (haltAfterFirstFinish).
func (t *txn) halt(finish func(i int, c *child)) {
	finish(0, t.parts[0].c)
	t.r.log.WithFields(logrus.Fields{"tid": t.tid.String(), "finished": t.parts[0].c.name}).
		Warn("halting between the children's tpc_finish (ZEORAID_TEST_HALT_AFTER_FIRST_FINISH)")
	if err := os.WriteFile(haltAfterFirstFinish, []byte(t.tid.String()+"\n"), 0o644); err != nil {
		t.r.log.WithError(err).Error("cannot create the halt file")
	}
	select {}
}

// noChildLeft is errNoChild with the failure of every part that voted.
func noChildLeft(ps []*part) error {
	why := make([]string, 0, len(ps))
	for _, p := range ps {
		if p.err != nil {
			why = append(why, fmt.Sprintf("%s: %s failed: %v", p.c.name, p.op, p.err))
		}
	}
	if len(why) == 0 {
		return errNoChild
	}
	return fmt.Errorf("%w (%s)", errNoChild, strings.Join(why, "; "))
}

func childrenOf(ps []*part) []*child {
	cs := make([]*child, len(ps))
	for i, p := range ps {
		cs[i] = p.c
	}
	return cs
}

// removeBlobs deletes the staged files the RAID took over (each child
// got its own copy).
func (t *txn) removeBlobs() {
	for _, op := range t.ops {
		if op.blob != "" {
			os.Remove(op.blob)
		}
	}
}

// Abort implements stack.Txn (tpc_abort); it is idempotent.
func (t *txn) Abort(ctx context.Context) error {
	if t.state == txnDone {
		return nil
	}
	t.state = txnDone
	t.closeStreams()
	t.abortParts(t.parts)
	for _, p := range t.parts {
		for _, b := range p.blobs {
			os.Remove(b) // a child that never took it over
		}
	}
	t.parts = nil
	t.removeBlobs()
	t.release()
	return nil
}

// throttle delays a commit while a recovery falls behind (docs/raid.md §8.5).
func (r *Storage) throttle(ctx context.Context) {
	r.mu.Lock()
	var d time.Duration
	if r.rec != nil {
		d = r.rec.delay
	}
	r.mu.Unlock()
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}

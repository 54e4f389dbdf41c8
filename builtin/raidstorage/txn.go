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

// txnOp is one buffered operation, replayed on every child at vote.
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

// txn is a RAID transaction. It buffers every operation; Vote takes the
// RAID's commit lock, picks the tid and runs the transaction on every
// optimal child in parallel (docs/raid.md §6.2).
type txn struct {
	r     *Storage
	meta  stack.TxnMeta
	ops   []txnOp
	state txnState

	locked bool
	tid    stack.Tid
	parts  []*part
	oids   []stack.Oid // the event's oids, set by Vote
}

// part is the transaction on one child.
type part struct {
	c        *child
	txn      stack.Txn
	resolved []stack.Oid
	undone   []stack.Oid
	op       string // the call that failed, for the reason
	err      error
	blobs    []string // staged copies handed to the child
}

var (
	_ stack.RestoreTxn = (*txn)(nil)
	_ stack.UndoTxn    = (*txn)(nil)
	_ stack.BlobTxn    = (*txn)(nil)
	_ stack.DeleteTxn  = (*txn)(nil)
)

// Begin implements stack.Storage (tpc_begin). Nothing reaches the children
// before Vote. Below write-quorum it fails as fail-mode says; an explicit
// meta.Tid must follow the RAID's last tid.
func (r *Storage) Begin(ctx context.Context, meta stack.TxnMeta) (stack.Txn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, stack.ErrClosed
	}
	if r.caps.ReadOnly {
		return nil, fmt.Errorf("%s: a child is read-only: %w", r.path, stack.ErrReadOnly)
	}
	if err := r.writableLocked(); err != nil {
		return nil, err
	}
	if meta.Tid != 0 && meta.Tid <= r.last {
		return nil, &stack.StorageError{Msg: fmt.Sprintf("tpc_begin: explicit tid %s does not follow the last transaction %s", meta.Tid, r.last)}
	}
	if meta.Status == 0 {
		meta.Status = ' '
	}
	meta.User, meta.Description, meta.Extension = clone(meta.User), clone(meta.Description), clone(meta.Extension)
	return &txn{r: r, meta: meta}, nil
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
	t.ops = append(t.ops, op)
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

// Vote implements stack.Txn (tpc_vote): under the commit lock it picks the
// tid and runs begin, the replay and vote on every optimal child in
// parallel, then applies the outcome table of docs/raid.md §6.3.
func (t *txn) Vote(ctx context.Context) ([]stack.Oid, error) {
	r := t.r
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if t.state != txnOpen {
		return nil, fmt.Errorf("vote twice or after the end: %w", stack.ErrTxnState)
	}
	r.throttle(ctx)
	if err := r.lock(ctx); err != nil {
		return nil, err
	}
	t.locked = true
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		t.release()
		return nil, stack.ErrClosed
	}
	if err := r.writableLocked(); err != nil {
		r.mu.Unlock()
		t.release()
		return nil, err
	}
	if t.meta.Tid != 0 {
		if t.meta.Tid <= r.last {
			r.mu.Unlock()
			t.release()
			return nil, &stack.StorageError{Msg: fmt.Sprintf("tpc_vote: explicit tid %s does not follow the last transaction %s", t.meta.Tid, r.last)}
		}
		t.tid = t.meta.Tid
	} else {
		t.tid = stack.NewTid(r.last, time.Now())
	}
	cs := r.optimalLocked()
	for _, c := range cs {
		c.expect[t.tid] = true
	}
	r.mu.Unlock()

	t.parts = make([]*part, len(cs))
	r.parallel(cs, func(i int, c *child) { t.parts[i] = t.run(ctx, c) })

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

// run begins the transaction on c with the RAID's tid, replays the buffer
// and votes, each call bounded by call-timeout. Conflicts reported by
// stores are merged with the vote's into one Conflicts error.
func (t *txn) run(ctx context.Context, c *child) *part {
	p := &part{c: c}
	call := func(op string, f func(ctx context.Context) error) bool {
		cctx, cancel := t.r.callCtx(ctx)
		defer cancel()
		if err := f(cctx); err != nil {
			p.op, p.err = op, err
			return false
		}
		return true
	}
	meta := t.meta
	meta.Tid = t.tid
	if !call("tpc_begin", func(ctx context.Context) (err error) {
		p.txn, err = c.st.Begin(ctx, meta)
		return err
	}) {
		return p
	}
	var conflicts stack.Conflicts
	for _, op := range t.ops {
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
		ok := call(name, f)
		var ce *stack.ConflictError
		if !ok && errors.As(p.err, &ce) && (op.kind == opStore || op.kind == opStoreBlob) {
			conflicts = append(conflicts, ce)
			p.op, p.err = "", nil
			continue
		}
		if !ok {
			return p
		}
	}
	if !call("tpc_vote", func(ctx context.Context) (err error) {
		p.resolved, err = p.txn.Vote(ctx)
		return err
	}) {
		var cs stack.Conflicts
		if len(conflicts) > 0 && errors.As(p.err, &cs) {
			p.err = append(conflicts, cs...)
		}
		return p
	}
	if len(conflicts) > 0 {
		p.op, p.err = "tpc_vote", conflicts
	}
	return p
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
	r.parallel(childrenOf(t.parts), func(i int, c *child) {
		cctx, cancel := r.callCtx(ctx)
		defer cancel()
		tids[i], errs[i] = t.parts[i].txn.Finish(cctx)
	})
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

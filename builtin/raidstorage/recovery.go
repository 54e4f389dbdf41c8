package raidstorage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
)

// Emptier is implemented by child storages that can start over empty, for
// raid_recover(name, "rebuild") of a diverged child. A remote child (a ZEO
// server) cannot be emptied over ZEO and does not implement it: the
// operator replaces it with an empty one.
type Emptier interface {
	// Empty drops every transaction; the storage is then as new.
	Empty(ctx context.Context) error
}

// Replaceable is implemented by children that stand for a server an
// operator may replace by an empty one (a remote ZEO server): such a child
// refuses a server that is behind what it has seen, to protect its cache,
// until a recovery asks it to take it. Recover asks; the recovery then
// compares the histories itself.
type Replaceable interface {
	// AcceptReplacement(true) lets the child connect to a server whose
	// last transaction is older than the last it has seen, until
	// AcceptReplacement(false).
	AcceptReplacement(accept bool)
}

// Recovery phases shown by raid_details.
const (
	PhaseVerify  = "verify"
	PhaseCopy    = "copy"
	PhaseCatchUp = "catch-up"
)

const (
	// catchUpGap: when no more transactions than this were committed
	// during one copy pass, the rest is copied under the commit lock.
	catchUpGap = 5
	// maxPasses bounds the copy passes before the catch-up takes the lock
	// anyway: recovery always ends.
	maxPasses = 20
	// readAhead is how many source transactions are fetched ahead of the
	// target's writes, at most (and at most 2*stack.BulkBytes of data).
	readAhead = 4096
	// maxDelay caps the delay applied to one commit (docs/raid.md §8.5).
	maxDelay = time.Second
)

// autoRecoverEvery is how often auto-recover looks for degraded children.
var autoRecoverEvery = 10 * time.Second

// recovery is the running recovery of one child; guarded by Storage.mu
// except target and source, which are fixed.
type recovery struct {
	target, source *child
	rebuild        bool
	ctx            context.Context
	cancel         context.CancelFunc

	phase    string
	tid      stack.Tid // last verified or copied
	started  time.Time
	startTid stack.Tid // where copying started
	verified int64
	copied   int64
	bytes    int64
	decile   int

	// rate sampling (docs/raid.md §8.5)
	sampleAt      time.Time
	sampleCopied  int64
	sampleCommits int64
	copyRate      float64 // transactions per second
	commitRate    float64
	delay         time.Duration

	savedAt time.Time // when the checkpoint was last saved (copyBatch)
}

// Recover starts the recovery of the degraded child name (raid_recover).
// With rebuild, a child that implements Emptier is emptied first, which
// also recovers a diverged child. It returns once the recovery started;
// it runs on until the child is optimal, or degraded again with the
// reason "recovery failed: …".
func (r *Storage) Recover(name string, rebuild bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return stack.ErrClosed
	}
	c, ok := r.byName[name]
	if !ok {
		return fmt.Errorf("no child named %q", name)
	}
	if c.state != Degraded {
		return fmt.Errorf("%q is %s, not degraded", name, c.state)
	}
	if r.rec != nil {
		return fmt.Errorf("the recovery of %q is running", r.rec.target.name)
	}
	if r.packing > 0 {
		return errors.New("a pack is running; recover after it")
	}
	srcs := r.optimalLocked()
	if len(srcs) == 0 {
		return errors.New("no optimal child to copy from")
	}
	src := srcs[0]
	if _, ok := stack.AsIterator(src.st); !ok {
		return fmt.Errorf("source %q cannot be iterated", src.name)
	}
	if _, ok := c.st.(Emptier); rebuild && !ok {
		return fmt.Errorf("%q cannot be emptied for a rebuild: replace it with an empty storage and recover", name)
	}
	if rp, ok := c.st.(Replaceable); ok {
		rp.AcceptReplacement(true)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rec := &recovery{target: c, source: src, rebuild: rebuild, ctx: ctx, cancel: cancel,
		phase: PhaseVerify, started: time.Now(), sampleAt: time.Now(), sampleCommits: r.commits}
	c.state, c.reason = Recovering, ""
	r.rec = rec
	r.bg.Add(1)
	go r.runRecovery(rec)
	return nil
}

func (r *Storage) runRecovery(rec *recovery) {
	defer r.bg.Done()
	defer rec.cancel()
	if rp, ok := rec.target.st.(Replaceable); ok {
		// Once recovered (or not), the child refuses a server that went
		// back again: that is a failure, not a replacement.
		defer rp.AcceptReplacement(false)
	}
	log := r.log.WithFields(logrus.Fields{"child": rec.target.name, "source": rec.source.name})
	log.WithField("rebuild", rec.rebuild).Info("recovery started")
	err := r.recoverChild(rec, log)
	defer r.saveCheckpoints()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rec == rec {
		r.rec = nil
	}
	if err == nil {
		return
	}
	// What was verified or copied (and synced) stays: the next recovery
	// compares from there.
	if rec.tid > rec.target.checkpoint && rec.target.state != Optimal {
		rec.target.checkpoint = rec.tid
	}
	if rec.target.state == Recovering {
		rec.target.state, rec.target.reason = Degraded, "recovery failed: "+err.Error()
	}
	log.WithError(err).WithField("reason", rec.target.reason).Error("recovery ended without success")
}

// recoverChild verifies, copies and switches (docs/raid.md §8).
func (r *Storage) recoverChild(rec *recovery, log logrus.FieldLogger) error {
	ctx := rec.ctx
	// A replaced server may still be connecting: give it call-timeout.
	if err := r.reachable(ctx, rec.target); err != nil {
		return fmt.Errorf("lastTransaction: %w", err)
	}
	// What a child supports is known once it answers (a remote server).
	if missing := missingCaps(rec.target.st.Capabilities(), r.caps); missing != "" {
		return fmt.Errorf("%q cannot be a mirror of this RAID: it has no %s support", rec.target.name, missing)
	}
	if err := unimplemented(rec.target); err != nil {
		return err
	}
	if _, ok := stack.AsIterator(rec.target.st); !ok {
		return fmt.Errorf("%q cannot be iterated", rec.target.name)
	}
	if rec.rebuild {
		cctx, cancel := r.callCtx(ctx)
		e, err := implements[Emptier](rec.target, rec.target.st)
		if err == nil {
			err = e.Empty(cctx)
		}
		cancel()
		if err != nil {
			return fmt.Errorf("empty: %w", err)
		}
		r.mu.Lock()
		rec.target.checkpoint = 0
		r.mu.Unlock()
	}
	common, err := r.verifyPrefix(ctx, rec)
	if err != nil {
		return err
	}
	r.mu.Lock()
	rec.phase, rec.tid, rec.startTid = PhaseCopy, common, common
	verified := rec.verified
	r.mu.Unlock()
	log.WithFields(logrus.Fields{"tid": common.String(), "verified": verified}).Info("recovery: histories agree up to here; copying the rest")
	for pass := 1; ; pass++ {
		before := r.commitCount()
		if err := r.copyFrom(ctx, rec, log); err != nil {
			return err
		}
		if r.commitCount()-before <= catchUpGap || pass >= maxPasses {
			break
		}
	}
	// Catch up and switch under the commit lock (docs/raid.md §8.4).
	if err := r.lock(ctx); err != nil {
		return err
	}
	defer r.unlock()
	r.mu.Lock()
	rec.phase = PhaseCatchUp
	rec.delay = 0
	r.mu.Unlock()
	if err := r.copyFrom(ctx, rec, log); err != nil {
		return err
	}
	cctx, cancel := r.callCtx(ctx)
	defer cancel()
	last, err := rec.target.st.LastTransaction(cctx)
	if err != nil {
		return fmt.Errorf("lastTransaction: %w", err)
	}
	oids, err := rec.target.st.NewOIDs(cctx, 1)
	if err != nil {
		return fmt.Errorf("new_oids: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if last != r.last {
		return fmt.Errorf("last transaction %s after the copy, the RAID's is %s", last, r.last)
	}
	if rec.target.state != Recovering {
		return fmt.Errorf("%q left recovering (%s)", rec.target.name, rec.target.reason)
	}
	if len(oids) == 1 && oids[0] >= r.nextOid {
		r.nextOid = oids[0] + 1
	}
	c := rec.target
	c.state, c.reason, c.checkpoint, c.last, c.commitsAtDegrade = Optimal, "", 0, last, -1
	for tid := range c.expect {
		if tid <= last {
			delete(c.expect, tid) // copied, but not announced again (an emptied child)
		}
	}
	r.rec = nil
	log.WithFields(logrus.Fields{"copied": rec.copied, "bytes": rec.bytes, "seconds": time.Since(rec.started).Seconds(),
		"status": r.statusLocked()}).Info("recovery finished: child optimal")
	return nil
}

// reachable waits until c answers LastTransaction, retrying backend
// failures until call-timeout.
func (r *Storage) reachable(ctx context.Context, c *child) error {
	cctx, cancel := r.callCtx(ctx)
	defer cancel()
	for {
		_, err := c.st.LastTransaction(cctx)
		if err == nil || !stack.IsBackendFailure(err) {
			return err
		}
		select {
		case <-cctx.Done():
			return err
		case <-time.After(probeEvery):
		}
	}
}

func (r *Storage) commitCount() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.commits
}

// errRestart: the checkpoint is not in the target's history; compare
// from the start.
var errRestart = errors.New("checkpoint not found")

// verifyPrefix finds where copying starts (docs/raid.md §8.2): the target's
// history must be a prefix of the source's. It compares from the target's
// checkpoint when it still has it, else from the start, and returns the
// last common tid.
func (r *Storage) verifyPrefix(ctx context.Context, rec *recovery) (stack.Tid, error) {
	r.mu.Lock()
	from := rec.target.checkpoint
	r.mu.Unlock()
	common, err := r.walk(ctx, rec, from)
	if errors.Is(err, errRestart) {
		common, err = r.walk(ctx, rec, 0)
	}
	return common, err
}

func (r *Storage) walk(ctx context.Context, rec *recovery, from stack.Tid) (stack.Tid, error) {
	tIt, _ := stack.AsIterator(rec.target.st)
	sIt, _ := stack.AsIterator(rec.source.st)
	tt, err := tIt.Iterate(ctx, from, 0)
	if err != nil {
		return 0, fmt.Errorf("iterate the target: %w", err)
	}
	defer tt.Close()
	st, err := sIt.Iterate(ctx, from, 0)
	if err != nil {
		return 0, r.sourceErr(ctx, rec, err)
	}
	defer st.Close()
	var common stack.Tid
	for first := true; ; first = false {
		cctx, cancel := r.callCtx(ctx)
		tr, ok, err := tt.Next(cctx)
		cancel()
		if err != nil {
			return 0, fmt.Errorf("iterate the target: %w", err)
		}
		if from != 0 && first && (!ok || tr.Tid != from) {
			return 0, errRestart
		}
		if !ok {
			return common, nil
		}
		cctx, cancel = r.callCtx(ctx)
		sr, ok, err := st.Next(cctx)
		cancel()
		if err != nil {
			return 0, r.sourceErr(ctx, rec, err)
		}
		if !ok {
			return 0, fmt.Errorf("diverged at %s", tr.Tid)
		}
		if stack.CompareTransactions(sr, tr) != "" {
			return 0, fmt.Errorf("diverged at %s", min(sr.Tid, tr.Tid))
		}
		common = tr.Tid
		r.mu.Lock()
		rec.tid = common
		rec.verified++
		r.mu.Unlock()
	}
}

// sourceErr degrades the source for a failure and names it in the
// recovery's error.
func (r *Storage) sourceErr(ctx context.Context, rec *recovery, err error) error {
	r.failed(ctx, rec.source, "iterator", err)
	return fmt.Errorf("source %q: %w", rec.source.name, err)
}

// copyFrom copies every source transaction after rec.tid to the target,
// reading ahead on its own goroutine: what was read while the target
// wrote goes to it in one bulk (one fsync for a stack.BulkRestorer such
// as a filestorage).
func (r *Storage) copyFrom(ctx context.Context, rec *recovery, log logrus.FieldLogger) error {
	r.mu.Lock()
	start := rec.tid + 1
	srcState := rec.source.state
	r.mu.Unlock()
	if srcState != Optimal {
		return fmt.Errorf("source %q is %s", rec.source.name, srcState)
	}
	it, _ := stack.AsIterator(rec.source.st)
	ti, err := it.Iterate(ctx, start, 0)
	if err != nil {
		return r.sourceErr(ctx, rec, err)
	}
	ra := stack.StartReadAhead(ctx, ti, readAhead, r.callCtx)
	defer ra.Close()
	bw := stack.NewBulkWriter(rec.source.st, rec.target.st, r.callCtx)
	// The last batch is synced and counted however the pass ends.
	end := func(err error) error {
		durable, ferr := bw.Flush()
		r.copied(rec, durable, log)
		if err == nil {
			err = ferr
		}
		return err
	}
	for {
		batch, err := ra.Batch(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return end(ctx.Err())
			}
			return end(r.sourceErr(ctx, rec, err))
		}
		if len(batch) == 0 {
			return end(ctx.Err())
		}
		if err := r.copyBatch(ctx, rec, bw, batch, log); err != nil {
			return end(err)
		}
	}
}

// checkpointEvery is how often a recovery saves its checkpoint at most.
const checkpointEvery = 250 * time.Millisecond

// copyBatch writes consecutive source transactions to the target
// through the restore path, with their original tids, status and
// metadata, data records with their backpointers, and blobs; they count
// as copied once they are durable (bw syncs a bulk while the next is
// written).
func (r *Storage) copyBatch(ctx context.Context, rec *recovery, bw *stack.BulkWriter, batch []stack.TxnRecord, log logrus.FieldLogger) error {
	target := rec.target
	r.mu.Lock()
	if target.state != Recovering {
		r.mu.Unlock()
		return fmt.Errorf("%q left recovering (%s)", target.name, target.reason)
	}
	for _, tr := range batch {
		target.expect[tr.Tid] = true
	}
	r.mu.Unlock()
	durable, err := bw.Write(ctx, batch)
	r.copied(rec, durable, log)
	if err != nil {
		for _, tr := range batch {
			if tr.Tid > rec.tid {
				r.forget(target, tr.Tid)
			}
		}
		if errors.Is(err, stack.ErrSource) {
			return r.sourceErr(ctx, rec, err)
		}
		return err
	}
	return nil
}

// copied records transactions made durable on the target, and saves the
// checkpoint now and then.
func (r *Storage) copied(rec *recovery, trs []stack.TxnRecord, log logrus.FieldLogger) {
	for _, tr := range trs {
		size := int64(0)
		for _, d := range tr.Records {
			size += int64(len(d.Data))
		}
		r.progress(rec, tr.Tid, size, log)
	}
	if len(trs) > 0 && time.Since(rec.savedAt) >= checkpointEvery {
		rec.savedAt = time.Now()
		r.saveCheckpoints()
	}
}

// progress records one copied transaction, logs every tenth of the way
// and re-estimates the commit delay (docs/raid.md §8.5, §8.6).
func (r *Storage) progress(rec *recovery, tid stack.Tid, size int64, log logrus.FieldLogger) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec.tid = tid
	rec.copied++
	rec.bytes += size
	rec.target.last = tid
	if d := int(rec.fraction(r.last) * 10); d > rec.decile && d < 10 {
		rec.decile = d
		log.WithFields(logrus.Fields{"percent": d * 10, "copied": rec.copied, "bytes": rec.bytes, "tid": tid.String()}).Info("recovery progress")
	}
	now := time.Now()
	dt := now.Sub(rec.sampleAt).Seconds()
	if dt < 0.5 {
		return
	}
	rec.copyRate = float64(rec.copied-rec.sampleCopied) / dt
	rec.commitRate = float64(r.commits-rec.sampleCommits) / dt
	// The lag, in transactions, shrinks when more were copied than
	// committed over the interval.
	shrinking := rec.copied-rec.sampleCopied > r.commits-rec.sampleCommits
	switch {
	case rec.phase == PhaseCopy && !shrinking && rec.copyRate < r.options().RecoveryRate*rec.commitRate:
		// Commit at most copyRate/recoveryRate times a second.
		d := maxDelay
		if rec.copyRate > 0 {
			d = min(maxDelay, time.Duration(r.options().RecoveryRate/rec.copyRate*float64(time.Second)))
		}
		rec.delay = max(d, rec.delay)
	case shrinking:
		rec.delay /= 2
	}
	rec.sampleAt, rec.sampleCopied, rec.sampleCommits = now, rec.copied, r.commits
}

// fraction estimates how far the recovery is, 0..1, from the tids: where
// it started, where it is and the RAID's last tid.
func (rec *recovery) fraction(last stack.Tid) float64 {
	if rec.phase == PhaseVerify || last <= rec.startTid {
		return 0
	}
	f := float64(rec.tid-rec.startTid) / float64(last-rec.startTid)
	return min(max(f, 0), 1)
}

// autoRecover starts the recovery of a degraded child (not one disabled
// by the controller) whenever none runs: at once when the RAID opens (a
// child left behind by a crash catches up at start), then every
// autoRecoverEvery. On the same beat it saves the checkpoints, so that
// after a crash the comparison of a child that is behind starts at most
// that long before the crash.
func (r *Storage) autoRecover() {
	defer r.bg.Done()
	tick := time.NewTicker(autoRecoverEvery)
	defer tick.Stop()
	for first := true; ; first = false {
		if !first {
			select {
			case <-r.stop:
				return
			case <-tick.C:
			}
			r.saveCheckpoints()
		}
		if !r.options().AutoRecover {
			continue
		}
		r.mu.Lock()
		var names []string
		for _, c := range r.children {
			if c.state == Degraded && c.reason != ReasonDisabled {
				names = append(names, c.name)
			}
		}
		r.mu.Unlock()
		for _, name := range names {
			if err := r.Recover(name, false); err == nil {
				r.log.WithFields(logrus.Fields{"child": name, "at_start": first}).Info("auto-recover: catching up a degraded child")
				break
			}
		}
	}
}

// missingCaps names the first capability of want (a RAID's) that have (a
// child's) lacks: restore always counts, since the RAID writes with its
// own tids. "" when none is missing.
func missingCaps(have, want stack.Capabilities) string {
	switch {
	case !have.Restore:
		return "restore"
	case want.Iterate && !have.Iterate:
		return "iteration"
	case want.Blobs && !have.Blobs:
		return "blob"
	case want.Undo && !have.Undo:
		return "undo"
	case want.Pack && !have.Pack:
		return "pack"
	case want.Delete && !have.Delete:
		return "deleteObject"
	}
	return ""
}

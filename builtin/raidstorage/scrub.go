package raidstorage

import (
	"context"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
)

// scrubState is the background consistency check (scrub-interval),
// guarded by Storage.mu.
type scrubState struct {
	verified stack.Tid // every optimal child agreed up to here
	runs     int64
	diffs    int64
	lastRun  time.Time
	lastOK   bool
	lastErr  string
}

// scrubIdle is how often the scrub looks at its options while it is off,
// so that a reload can switch it on.
const scrubIdle = 5 * time.Second

// scrubLoop runs a scrub pass every scrub-interval until the RAID closes.
func (r *Storage) scrubLoop() {
	defer r.bg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		every := r.options().ScrubInterval
		wait := every
		if every <= 0 {
			wait = scrubIdle
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if every > 0 {
			r.scrubPass(ctx)
		}
	}
}

// scrubPass compares, from the last verified tid to the RAID's last tid,
// each optimal child's history with the first optimal child's (in
// configuration order), by stack.CompareHistories' rules, at most
// scrub-rate transactions per second per child. A child that differs is
// degraded with the first differing tid in its reason. A pass is skipped
// while a recovery or a pack runs, and voided when a pack started during
// it (packing rewrites the histories it reads).
func (r *Storage) scrubPass(ctx context.Context) {
	r.mu.Lock()
	if r.closed || r.rec != nil || r.packing > 0 {
		r.mu.Unlock()
		return
	}
	cs := r.optimalLocked()
	from, stop, packs := r.scrub.verified, r.last, r.packs
	r.mu.Unlock()
	if !r.caps.Iterate {
		r.endScrub(from, false, "the children cannot iterate their histories", 0)
		return
	}
	if len(cs) < 2 || stop <= from {
		r.endScrub(stop, true, "", 0)
		return
	}
	start := stack.Tid(0)
	if from != 0 {
		start = from + 1
	}
	ref := cs[0]
	opts := r.options()
	diffs := 0
	for _, c := range cs[1:] {
		res, err := stack.CompareHistoriesPaced(ctx, ref.st, c.st, start, stop, opts.CallTimeout, pacer(opts.ScrubRate))
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		void := r.packs != packs || r.rec != nil
		r.mu.Unlock()
		if void {
			return
		}
		if err != nil {
			r.log.WithError(err).WithFields(logrus.Fields{"child": c.name, "reference": ref.name}).Warn("scrub pass stopped")
			r.endScrub(from, false, fmt.Sprintf("comparing %q with %q: %v", c.name, ref.name, err), 0)
			return
		}
		if res.Diff != nil {
			reason := fmt.Sprintf("%shistory at %s: %s (scrub, against %q)", reasonInconsistent, res.Diff.Tid, res.Diff.What, ref.name)
			r.log.WithFields(logrus.Fields{"child": c.name, "reference": ref.name, "tid": res.Diff.Tid.String(), "difference": res.Diff.What}).Error("scrub found a difference")
			r.degrade(c, reason)
			diffs++
		}
	}
	if diffs > 0 {
		r.endScrub(from, false, fmt.Sprintf("%d children differed and were degraded", diffs), diffs)
		return
	}
	r.endScrub(stop, true, "", 0)
}

// endScrub records a pass's outcome.
func (r *Storage) endScrub(verified stack.Tid, ok bool, why string, diffs int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.scrub.verified = verified
	r.scrub.runs++
	r.scrub.diffs += int64(diffs)
	r.scrub.lastRun = time.Now()
	r.scrub.lastOK, r.scrub.lastErr = ok, why
}

// pacer returns a stack.CompareHistoriesPaced pace that holds a comparison
// to rate transactions per second.
func pacer(rate float64) func(ctx context.Context, n int) error {
	began := time.Now()
	return func(ctx context.Context, n int) error {
		d := time.Until(began.Add(time.Duration(float64(n) / rate * float64(time.Second))))
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

package raidstorage

import (
	"time"

	"github.com/zeoraid/zeoraid/stack"
)

var (
	_ stack.MirrorReporter   = (*Storage)(nil)
	_ stack.ReadOnlyExtender = (*Storage)(nil)
)

// ReadOnlyExtensions implements stack.ReadOnlyExtender: the management
// calls that only report stay open to every client, as gocept.zeoraid's
// were; raid_disable and raid_recover need a trusted connection.
// raid_verify only reads, so it is open as well.
func (r *Storage) ReadOnlyExtensions() []string {
	return []string{"raid_status", "raid_details", "raid_info", "raid_verify"}
}

// MirrorReport implements stack.MirrorReporter, for metrics and health
// checks: the same facts as raid_info, typed.
func (r *Storage) MirrorReport() stack.MirrorReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := stack.MirrorReport{
		Status:  r.statusLocked(),
		Last:    r.last,
		Commits: r.commits,
		Scrub: stack.ScrubReport{
			Enabled:  r.options().ScrubInterval > 0,
			Verified: r.scrub.verified,
			Runs:     r.scrub.runs,
			Diffs:    r.scrub.diffs,
			LastRun:  r.scrub.lastRun,
			LastOK:   r.scrub.lastOK,
			LastErr:  r.scrub.lastErr,
		},
	}
	for _, c := range r.children {
		cr := stack.ChildReport{
			Name:        c.name,
			State:       c.state.String(),
			Reason:      c.reason,
			Reads:       c.reads.Load(),
			ReadLatency: time.Duration(c.latency.Load()),
			Lag:         r.lagLocked(c),
		}
		if rec := r.rec; rec != nil && rec.target == c {
			cr.Recovery = &stack.RecoveryReport{
				Source:       rec.source.name,
				Phase:        rec.phase,
				Fraction:     rec.fraction(r.last),
				Transactions: rec.copied,
				Bytes:        rec.bytes,
				Rate:         rec.copyRate,
			}
		}
		rep.Children = append(rep.Children, cr)
	}
	return rep
}

// lagLocked is how many transactions c is behind: 0 when optimal, -1 when
// unknown (degraded at start, or being copied).
func (r *Storage) lagLocked(c *child) int64 {
	if c.state == Optimal {
		return 0
	}
	if rec := r.rec; rec != nil && rec.target == c && rec.phase != PhaseVerify {
		return -1
	}
	if c.commitsAtDegrade < 0 {
		return -1
	}
	return r.commits - c.commitsAtDegrade
}

// scrubInfo is the scrub's part of raid_info.
func (r *Storage) scrubInfoLocked() map[string]any {
	var last any
	if !r.scrub.lastRun.IsZero() {
		last = float64(r.scrub.lastRun.UnixNano()) / 1e9
	}
	return map[string]any{
		"enabled":      r.options().ScrubInterval > 0,
		"interval_s":   r.options().ScrubInterval.Seconds(),
		"verified_tid": r.scrub.verified.String(),
		"runs":         r.scrub.runs,
		"differences":  r.scrub.diffs,
		"last_run":     last,
		"last_ok":      r.scrub.lastOK,
		"last_error":   r.scrub.lastErr,
	}
}

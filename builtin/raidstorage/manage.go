package raidstorage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/zeoraid/zeoraid/stack"
)

// Extensions implements stack.Extender: the management calls of
// docs/raid.md §10, with gocept.zeoraid's names and result shapes.
func (r *Storage) Extensions() map[string]stack.Extension {
	return map[string]stack.Extension{
		"raid_status":  r.extStatus,
		"raid_details": r.extDetails,
		"raid_disable": r.extDisable,
		"raid_recover": r.extRecover,
		"raid_verify":  r.extVerify,
		"raid_info":    r.extInfo,
	}
}

// mgmtError is a refused management call: a logical answer with a message.
func mgmtError(format string, args ...any) error {
	return &stack.StorageError{Msg: fmt.Sprintf(format, args...)}
}

// stringArgs checks that args are between min and max strings.
func stringArgs(call string, args []any, min, max int) ([]string, error) {
	if len(args) < min || len(args) > max {
		return nil, mgmtError("%s takes %d to %d arguments, got %d", call, min, max, len(args))
	}
	out := make([]string, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			out[i] = v
		case []byte:
			out[i] = string(v)
		default:
			return nil, mgmtError("%s: argument %d must be a string, got %T", call, i+1, a)
		}
	}
	return out, nil
}

func (r *Storage) extStatus(ctx context.Context, args []any) (any, error) {
	if _, err := stringArgs("raid_status", args, 0, 0); err != nil {
		return nil, err
	}
	return r.Status(), nil
}

// Details returns raid_details: child name → "optimal", "failed: <reason>"
// or "recovering: <phase> transaction <tid>".
func (r *Storage) Details() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]string{}
	for _, c := range r.children {
		switch c.state {
		case Optimal:
			out[c.name] = "optimal"
		case Degraded:
			out[c.name] = "failed: " + c.reason
		case Recovering:
			phase, tid := PhaseVerify, stack.Tid(0)
			if r.rec != nil && r.rec.target == c {
				phase, tid = r.rec.phase, r.rec.tid
			}
			out[c.name] = fmt.Sprintf("recovering: %s transaction %s", phase, tid)
		}
	}
	return out
}

func (r *Storage) extDetails(ctx context.Context, args []any) (any, error) {
	if _, err := stringArgs("raid_details", args, 0, 0); err != nil {
		return nil, err
	}
	out := map[string]any{}
	for k, v := range r.Details() {
		out[k] = v
	}
	return out, nil
}

// Disable degrades the child name with the reason "disabled by
// controller" (raid_disable). An unknown name, or the last optimal child,
// is refused and nothing changes. It waits for a commit in flight.
func (r *Storage) Disable(ctx context.Context, name string) error {
	if err := r.lock(ctx); err != nil {
		return err
	}
	defer r.unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.byName[name]
	if !ok {
		return mgmtError("no child named %q", name)
	}
	if c.state == Optimal && len(r.optimalLocked()) == 1 {
		return mgmtError("%q is the last optimal child: disabling it would fail the RAID", name)
	}
	if c.state == Degraded {
		c.reason = ReasonDisabled
		return nil
	}
	r.degradeLocked(c, ReasonDisabled)
	return nil
}

func (r *Storage) extDisable(ctx context.Context, args []any) (any, error) {
	a, err := stringArgs("raid_disable", args, 1, 1)
	if err != nil {
		return nil, err
	}
	if err := r.Disable(ctx, a[0]); err != nil {
		return nil, err
	}
	return fmt.Sprintf("disabled '%s'", a[0]), nil
}

func (r *Storage) extRecover(ctx context.Context, args []any) (any, error) {
	a, err := stringArgs("raid_recover", args, 1, 2)
	if err != nil {
		return nil, err
	}
	rebuild := false
	if len(a) == 2 {
		if a[1] != "rebuild" {
			return nil, mgmtError("raid_recover: unknown mode %q (only 'rebuild')", a[1])
		}
		rebuild = true
	}
	if err := r.Recover(a[0], rebuild); err != nil {
		if errors.Is(err, stack.ErrClosed) {
			return nil, err
		}
		return nil, mgmtError("cannot recover '%s': %v", a[0], err)
	}
	return fmt.Sprintf("recovering '%s'", a[0]), nil
}

// Verify compares the histories of children a and b up to the RAID's
// last tid (raid_verify, docs/raid.md §9).
func (r *Storage) Verify(ctx context.Context, a, b string) (stack.CompareResult, error) {
	r.mu.Lock()
	ca, okA := r.byName[a]
	cb, okB := r.byName[b]
	stop := r.last
	r.mu.Unlock()
	switch {
	case !okA:
		return stack.CompareResult{}, mgmtError("no child named %q", a)
	case !okB:
		return stack.CompareResult{}, mgmtError("no child named %q", b)
	case stop == 0:
		return stack.CompareResult{}, nil
	}
	return stack.CompareHistories(ctx, ca.st, cb.st, 0, stop, r.options().CallTimeout)
}

func (r *Storage) extVerify(ctx context.Context, args []any) (any, error) {
	a, err := stringArgs("raid_verify", args, 2, 2)
	if err != nil {
		return nil, err
	}
	res, err := r.Verify(ctx, a[0], a[1])
	if err != nil {
		return nil, err
	}
	out := map[string]any{
		"identical":    res.Diff == nil,
		"transactions": int64(res.Transactions),
		"last":         res.Last.String(),
	}
	if res.Diff == nil {
		out["message"] = fmt.Sprintf("'%s' and '%s' are identical: %d transactions up to %s", a[0], a[1], res.Transactions, res.Last)
	} else {
		out["tid"] = res.Diff.Tid.String()
		out["difference"] = res.Diff.What
		out["message"] = fmt.Sprintf("'%s' and '%s' differ at %s: %s (%d identical transactions before)", a[0], a[1], res.Diff.Tid, res.Diff.What, res.Transactions)
	}
	return out, nil
}

// InfoMap returns raid_info: the RAID's status and settings, and per child
// its state, reason, last tid, lag in transactions (-1 when unknown), read
// count and latency, and for the recovering child the recovery's progress.
func (r *Storage) InfoMap() map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	children := map[string]any{}
	for _, c := range r.children {
		lag := int64(0)
		if c.state != Optimal {
			lag = -1
			if c.commitsAtDegrade >= 0 {
				lag = r.commits - c.commitsAtDegrade
			}
		}
		ci := map[string]any{
			"state":      c.state.String(),
			"reason":     c.reason,
			"last_tid":   c.last.String(),
			"lag":        lag,
			"reads":      c.reads.Load(),
			"latency_ms": float64(c.latency.Load()) / 1e6,
			"index":      int64(c.index),
		}
		if rec := r.rec; rec != nil && rec.target == c {
			ci["recovery"] = rec.info(r.last)
			if rec.phase != PhaseVerify {
				ci["lag"] = int64(-1)
			}
		}
		children[c.name] = ci
	}
	delay := time.Duration(0)
	if r.rec != nil {
		delay = r.rec.delay
	}
	writable := r.writableLocked() == nil
	return map[string]any{
		"status":            r.statusLocked(),
		"last_tid":          r.last.String(),
		"writable":          writable,
		"write_quorum":      int64(r.options().WriteQuorum),
		"fail_mode":         r.options().FailMode,
		"read_distribution": r.options().ReadDistribution,
		"commit_delay_ms":   float64(delay) / 1e6,
		"commits":           r.commits,
		"children":          children,
		"scrub":             r.scrubInfoLocked(),
	}
}

// info is the recovery's progress for raid_info; the totals and the ETA
// are estimates from how far the copy is between its start tid and the
// RAID's last tid.
func (rec *recovery) info(last stack.Tid) map[string]any {
	frac := rec.fraction(last)
	elapsed := time.Since(rec.started).Seconds()
	out := map[string]any{
		"source":              rec.source.name,
		"phase":               rec.phase,
		"tid":                 rec.tid.String(),
		"verified":            rec.verified,
		"copied_transactions": rec.copied,
		"copied_bytes":        rec.bytes,
		"percent":             frac * 100,
		"rate":                rec.copyRate,
		"commit_rate":         rec.commitRate,
		"commit_delay_ms":     float64(rec.delay) / 1e6,
		"elapsed_seconds":     elapsed,
		"eta_seconds":         float64(-1),
		"total_transactions":  int64(-1),
		"total_bytes":         int64(-1),
	}
	if frac > 0 {
		out["eta_seconds"] = elapsed * (1 - frac) / frac
		out["total_transactions"] = int64(float64(rec.copied) / frac)
		out["total_bytes"] = int64(float64(rec.bytes) / frac)
	}
	return out
}

func (r *Storage) extInfo(ctx context.Context, args []any) (any, error) {
	if _, err := stringArgs("raid_info", args, 0, 0); err != nil {
		return nil, err
	}
	return r.InfoMap(), nil
}

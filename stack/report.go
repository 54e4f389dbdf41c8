package stack

import "time"

// ReadOnlyExtender is implemented by an Extender some of whose extension
// calls only read (a status, a report): those are open to every
// connection. Its other calls change state, and the server accepts them
// only from connections that <zeo> management-trust trusts
// (docs/operations.md).
type ReadOnlyExtender interface {
	ReadOnlyExtensions() []string
}

// MirrorReporter is implemented by storages that keep mirrors of their
// data (raidstorage): what health checks and metrics show of them, read
// without blocking on commits.
type MirrorReporter interface {
	MirrorReport() MirrorReport
}

// MirrorReport is the state of a mirror and of each of its children.
type MirrorReport struct {
	Status   string // optimal, degraded, recovering or failed
	Last     Tid
	Commits  int64 // transactions committed since it opened
	Children []ChildReport
	Scrub    ScrubReport
}

// Failed reports a mirror without an optimal child.
func (m MirrorReport) Failed() bool { return m.Status == "failed" }

// ChildReport is one child of a mirror.
type ChildReport struct {
	Name        string
	State       string // optimal, degraded or recovering
	Reason      string
	Reads       int64         // reads served since the mirror opened
	ReadLatency time.Duration // moving average of a read; 0 before the first
	Lag         int64         // transactions behind the mirror; -1 when unknown
	// Recovery is the recovery bringing this child back, if one runs.
	Recovery *RecoveryReport
}

// RecoveryReport is the progress of a recovery.
type RecoveryReport struct {
	Source       string
	Phase        string
	Fraction     float64 // 0..1 of the way from its start to the mirror's last tid
	Transactions int64   // copied so far
	Bytes        int64   // copied so far
	Rate         float64 // transactions copied per second
}

// ScrubReport is the background consistency check of a mirror's children
// (raidstorage scrub-interval).
type ScrubReport struct {
	Enabled  bool
	Verified Tid       // the children agree up to this tid
	Runs     int64     // passes completed
	Diffs    int64     // children degraded because they differed
	LastRun  time.Time // end of the last pass; zero before the first
	LastOK   bool      // the last pass found no difference and no error
	LastErr  string    // what stopped the last pass, if anything
}

// RestartReporter is implemented by storages served by a process that can
// be restarted (a plugin): how often it was.
type RestartReporter interface {
	Restarts() int64
}

package admin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zeoraid/zeoraid/stack"
)

// The metrics read from the storage tree at each scrape (docs/operations.md
// lists every metric). Labels: storage is the storage name clients
// register, node the RAID's path in its tree, child the child's name.
var (
	raidLabels  = []string{"storage", "node"}
	childLabels = []string{"storage", "node", "child"}

	descRAIDStatus     = prometheus.NewDesc("zeoraid_raid_status", "1 for the RAID's current status (optimal, degraded, recovering, failed), 0 for the others.", append(raidLabels, "status"), nil)
	descRAIDCommits    = prometheus.NewDesc("zeoraid_raid_commits_total", "Transactions the RAID committed since it opened.", raidLabels, nil)
	descChildState     = prometheus.NewDesc("zeoraid_raid_child_state", "1 for the child's current state (optimal, degraded, recovering), 0 for the others.", append(childLabels, "state"), nil)
	descChildReads     = prometheus.NewDesc("zeoraid_raid_child_reads_total", "Reads the child served.", childLabels, nil)
	descChildLatency   = prometheus.NewDesc("zeoraid_raid_child_read_latency_seconds", "Moving average of the child's read latency.", childLabels, nil)
	descChildLag       = prometheus.NewDesc("zeoraid_raid_child_lag_transactions", "Transactions the child is behind the RAID (absent while unknown).", childLabels, nil)
	descRecoveryRatio  = prometheus.NewDesc("zeoraid_raid_recovery_progress_ratio", "How far the child's recovery is, 0 to 1.", childLabels, nil)
	descRecoveryTxns   = prometheus.NewDesc("zeoraid_raid_recovery_copied_transactions", "Transactions the running recovery copied so far.", childLabels, nil)
	descRecoveryBytes  = prometheus.NewDesc("zeoraid_raid_recovery_copied_bytes", "Bytes the running recovery copied so far.", childLabels, nil)
	descRecoveryRate   = prometheus.NewDesc("zeoraid_raid_recovery_rate_transactions_per_second", "Transactions per second the running recovery copies.", childLabels, nil)
	descScrubEnabled   = prometheus.NewDesc("zeoraid_raid_scrub_enabled", "1 when scrub-interval is set.", raidLabels, nil)
	descScrubVerified  = prometheus.NewDesc("zeoraid_raid_scrub_verified_timestamp_seconds", "Time of the last transaction the scrub verified on every optimal child (its tid).", raidLabels, nil)
	descScrubRuns      = prometheus.NewDesc("zeoraid_raid_scrub_runs_total", "Scrub passes completed.", raidLabels, nil)
	descScrubDiffs     = prometheus.NewDesc("zeoraid_raid_scrub_differences_total", "Children the scrub degraded because their history differed.", raidLabels, nil)
	descScrubLastOK    = prometheus.NewDesc("zeoraid_raid_scrub_last_success", "1 when the last scrub pass found no difference and no error.", raidLabels, nil)
	descScrubLastRun   = prometheus.NewDesc("zeoraid_raid_scrub_last_run_timestamp_seconds", "When the last scrub pass ended.", raidLabels, nil)
	descPluginRestarts = prometheus.NewDesc("zeoraid_plugin_restarts_total", "Times the plugin process serving the node was restarted.", raidLabels, nil)
	descReloadOK       = prometheus.NewDesc("zeoraid_last_reload_success", "1 when the last configuration reload was applied, 0 when it was refused (absent before the first).", nil, nil)
	descReloadTime     = prometheus.NewDesc("zeoraid_last_reload_timestamp_seconds", "When the last configuration reload ran.", nil, nil)
)

var (
	raidStatuses = []string{"optimal", "degraded", "recovering", "failed"}
	childStates  = []string{"optimal", "degraded", "recovering"}
)

// treeCollector reads the RAIDs and plugins of the running tree and the
// last reload at each scrape.
type treeCollector Admin

func (tc *treeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRAIDStatus, descRAIDCommits, descChildState, descChildReads, descChildLatency,
		descChildLag, descRecoveryRatio, descRecoveryTxns, descRecoveryBytes, descRecoveryRate, descScrubEnabled,
		descScrubVerified, descScrubRuns, descScrubDiffs, descScrubLastOK, descScrubLastRun, descPluginRestarts,
		descReloadOK, descReloadTime} {
		ch <- d
	}
}

func (tc *treeCollector) Collect(ch chan<- prometheus.Metric) {
	a := (*Admin)(tc)
	_, tree := a.attached()
	if tree != nil {
		for _, name := range tree.Names {
			walk(tree.Roots[name], func(b *stack.Built) { collectNode(ch, name, b) })
		}
	}
	a.mu.Lock()
	reload := a.reload
	a.mu.Unlock()
	if reload != nil {
		if st := reload(); !st.When.IsZero() {
			ok := 0.0
			if st.OK {
				ok = 1
			}
			ch <- prometheus.MustNewConstMetric(descReloadOK, prometheus.GaugeValue, ok)
			ch <- prometheus.MustNewConstMetric(descReloadTime, prometheus.GaugeValue, float64(st.When.UnixNano())/1e9)
		}
	}
}

func collectNode(ch chan<- prometheus.Metric, storage string, b *stack.Built) {
	if rr, ok := b.Storage.(stack.RestartReporter); ok {
		ch <- prometheus.MustNewConstMetric(descPluginRestarts, prometheus.CounterValue, float64(rr.Restarts()), storage, b.Path)
	}
	mr, ok := b.Storage.(stack.MirrorReporter)
	if !ok {
		return
	}
	rep := mr.MirrorReport()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	for _, s := range raidStatuses {
		gauge(descRAIDStatus, bool01(rep.Status == s), storage, b.Path, s)
	}
	counter(descRAIDCommits, float64(rep.Commits), storage, b.Path)
	for _, c := range rep.Children {
		l := []string{storage, b.Path, c.Name}
		for _, s := range childStates {
			gauge(descChildState, bool01(c.State == s), storage, b.Path, c.Name, s)
		}
		counter(descChildReads, float64(c.Reads), l...)
		gauge(descChildLatency, c.ReadLatency.Seconds(), l...)
		if c.Lag >= 0 {
			gauge(descChildLag, float64(c.Lag), l...)
		}
		if rec := c.Recovery; rec != nil {
			gauge(descRecoveryRatio, rec.Fraction, l...)
			gauge(descRecoveryTxns, float64(rec.Transactions), l...)
			gauge(descRecoveryBytes, float64(rec.Bytes), l...)
			gauge(descRecoveryRate, rec.Rate, l...)
		}
	}
	sc := rep.Scrub
	gauge(descScrubEnabled, bool01(sc.Enabled), storage, b.Path)
	counter(descScrubRuns, float64(sc.Runs), storage, b.Path)
	counter(descScrubDiffs, float64(sc.Diffs), storage, b.Path)
	if sc.Verified != 0 {
		gauge(descScrubVerified, sc.Verified.Seconds(), storage, b.Path)
	}
	if !sc.LastRun.IsZero() {
		gauge(descScrubLastOK, bool01(sc.LastOK), storage, b.Path)
		gauge(descScrubLastRun, float64(sc.LastRun.UnixNano())/1e9, storage, b.Path)
	}
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

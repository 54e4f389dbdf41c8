package server

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// callBuckets are the bounds of the call latency histograms, in seconds:
// from 100µs (a load from memory) to 6.5s (a vote waiting for the lock).
var callBuckets = prometheus.ExponentialBuckets(0.0001, 4, 9)

// serverMetrics are the server's own instruments; the counters of
// server_status are read from each mount's stats when scraped.
type serverMetrics struct {
	calls *prometheus.HistogramVec // storage, method
}

func newServerMetrics() *serverMetrics {
	return &serverMetrics{calls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "zeoraid_call_duration_seconds",
		Help:    "Time from a client's call to its reply (or, for an asynchronous call, to its handling), by storage and method.",
		Buckets: callBuckets,
	}, []string{"storage", "method"})}
}

// mountMetrics are one mount's instruments, resolved once so that a call
// observes without a lookup by labels.
type mountMetrics struct {
	calls map[string]prometheus.Observer // every method of dispatch; read-only

	extMu sync.Mutex
	ext   map[string]prometheus.Observer // extension calls, as they come

	read, written atomic.Int64 // frame bytes, after registration
}

func (sm *serverMetrics) forMount(name string) *mountMetrics {
	mm := &mountMetrics{calls: map[string]prometheus.Observer{}, ext: map[string]prometheus.Observer{}}
	for m := range syncMethods {
		mm.calls[m] = sm.calls.WithLabelValues(name, m)
	}
	for m := range asyncMethods {
		mm.calls[m] = sm.calls.WithLabelValues(name, m)
	}
	return mm
}

// observe records a call of method that began at start.
func (ms *mountState) observe(method string, start time.Time) {
	d := time.Since(start).Seconds()
	if o, ok := ms.metrics.calls[method]; ok {
		o.Observe(d)
		return
	}
	mm := ms.metrics
	mm.extMu.Lock()
	o, ok := mm.ext[method]
	if !ok {
		o = ms.srv.metrics.calls.WithLabelValues(ms.mount.Name(), method)
		mm.ext[method] = o
	}
	mm.extMu.Unlock()
	o.Observe(d)
}

// pendingCall is a synchronous call whose reply comes later, from another
// goroutine (a vote, pack, undoLog, an extension call): its latency is
// observed when the reply is sent.
type pendingCall struct {
	method string
	start  time.Time
}

// deferredReply are the synchronous calls whose handlers reply later.
var deferredReply = map[string]bool{"vote": true, "pack": true, "undoLog": true, "undoInfo": true}

// pend notes that the reply to msgid id comes later.
func (c *conn) pend(id any, method string, start time.Time) {
	n, ok := id.(int64)
	if !ok {
		return
	}
	c.pendMu.Lock()
	if c.pending == nil {
		c.pending = map[int64]pendingCall{}
	}
	c.pending[n] = pendingCall{method: method, start: start}
	c.npending.Add(1)
	c.pendMu.Unlock()
}

// settle observes the latency of the call replied to, if it was pending.
func (c *conn) settle(id any) {
	if c.npending.Load() == 0 {
		return
	}
	n, ok := id.(int64)
	if !ok {
		return
	}
	c.pendMu.Lock()
	p, ok := c.pending[n]
	if ok {
		delete(c.pending, n)
		c.npending.Add(-1)
	}
	c.pendMu.Unlock()
	if ok {
		c.ms.observe(p.method, p.start)
	}
}

// Collector returns the server's metrics for a Prometheus registry: per
// storage the counters of server_status, connected clients, the
// invalidation queue, bytes read and written and call latencies
// (docs/operations.md lists them).
func (s *Server) Collector() prometheus.Collector { return (*serverCollector)(s) }

type serverCollector Server

var (
	storageLabel    = []string{"storage"}
	descLoads       = prometheus.NewDesc("zeoraid_loads_total", "Loads (loadBefore) served.", storageLabel, nil)
	descStores      = prometheus.NewDesc("zeoraid_stores_total", "Objects stored by transactions.", storageLabel, nil)
	descCommits     = prometheus.NewDesc("zeoraid_commits_total", "Transactions committed.", storageLabel, nil)
	descAborts      = prometheus.NewDesc("zeoraid_aborts_total", "Transactions aborted.", storageLabel, nil)
	descConflicts   = prometheus.NewDesc("zeoraid_conflicts_total", "Write conflicts returned to clients.", storageLabel, nil)
	descActive      = prometheus.NewDesc("zeoraid_active_transactions", "Transactions begun and not yet finished or aborted.", storageLabel, nil)
	descWaiting     = prometheus.NewDesc("zeoraid_commit_lock_waiting", "Votes waiting for the commit lock.", storageLabel, nil)
	descClients     = prometheus.NewDesc("zeoraid_connected_clients", "Client connections registered on the storage.", storageLabel, nil)
	descQueue       = prometheus.NewDesc("zeoraid_invalidation_queue_length", "Transactions kept for getInvalidations.", storageLabel, nil)
	descRead        = prometheus.NewDesc("zeoraid_read_bytes_total", "Bytes of frames read from the storage's clients.", storageLabel, nil)
	descWritten     = prometheus.NewDesc("zeoraid_written_bytes_total", "Bytes of frames written to the storage's clients (replies and invalidations).", storageLabel, nil)
	descLastCommit  = prometheus.NewDesc("zeoraid_last_transaction_timestamp_seconds", "Time of the storage's last transaction (its tid), as the clients see it.", storageLabel, nil)
	descConnections = prometheus.NewDesc("zeoraid_connections", "Open client connections, registered or not.", nil, nil)
)

func (sc *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLoads, descStores, descCommits, descAborts, descConflicts, descActive,
		descWaiting, descClients, descQueue, descRead, descWritten, descLastCommit, descConnections} {
		ch <- d
	}
	sc.metrics.calls.Describe(ch)
}

func (sc *serverCollector) Collect(ch chan<- prometheus.Metric) {
	s := (*Server)(sc)
	for _, ms := range s.mountStates() {
		name := ms.mount.Name()
		ms.mu.Lock()
		st := ms.stats
		st.loads = ms.loads.Load()
		clients, queue, last := len(ms.conns), len(ms.queue), ms.lastTid
		ms.mu.Unlock()
		counter := func(d *prometheus.Desc, v int64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), name)
		}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, name)
		}
		counter(descLoads, st.loads)
		counter(descStores, st.stores)
		counter(descCommits, st.commits)
		counter(descAborts, st.aborts)
		counter(descConflicts, st.conflicts)
		gauge(descActive, float64(st.activeTxns))
		gauge(descWaiting, float64(st.waiting))
		gauge(descClients, float64(clients))
		gauge(descQueue, float64(queue))
		counter(descRead, ms.metrics.read.Load())
		counter(descWritten, ms.metrics.written.Load())
		if last != 0 {
			gauge(descLastCommit, last.Seconds())
		}
	}
	s.mu.Lock()
	conns := len(s.conns)
	s.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descConnections, prometheus.GaugeValue, float64(conns))
	s.metrics.calls.Collect(ch)
}

// forgetMetrics drops the series of a storage no longer served.
func (s *Server) forgetMetrics(name string) {
	s.metrics.calls.DeletePartialMatch(prometheus.Labels{"storage": name})
}

package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/admin"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// fixture is a server serving a RAID of three mappingstorages (a, b, c)
// as storage "1", and its admin endpoint over HTTP.
type fixture struct {
	srv      *server.Server
	raid     *raidstorage.Storage
	children []*mappingstorage.Storage
	addr     string
	http     *httptest.Server
	adm      *admin.Admin
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	log, _ := test.NewNullLogger()
	f := &fixture{}
	names := []string{"a", "b", "c"}
	var kids []stack.Storage
	tree := &stack.Tree{Names: []string{"1"}, Roots: map[string]*stack.Built{}}
	root := &stack.Built{Path: "1", Type: "raidstorage"}
	for _, n := range names {
		m := mappingstorage.New("1/"+n, log)
		f.children = append(f.children, m)
		kids = append(kids, m)
		root.Children = append(root.Children, &stack.Built{Storage: m, Path: "1/" + n, Type: "mappingstorage"})
	}
	o := raidstorage.DefaultOptions()
	o.CallTimeout = 2 * time.Second
	r, err := raidstorage.Open(context.Background(), raidstorage.Config{Path: "1", Names: names, Children: kids, Options: o, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	f.raid = r
	root.Storage = r
	tree.Roots["1"] = root
	f.srv = server.New([]*stack.Mount{stack.NewMount("1", r)}, server.Options{Log: log})
	f.adm = admin.New(admin.Options{Log: log})
	f.http = httptest.NewServer(f.adm.Handler())
	// Before the server is attached: alive, not ready.
	if code, body := get(t, f.http.URL+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
		t.Fatalf("/readyz before attach: %d %q", code, body)
	}
	if code, _ := get(t, f.http.URL+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz before attach: %d", code)
	}
	l, err := server.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(l) }()
	f.addr = l.Addr().String()
	status := stack.ReloadStatus{When: time.Unix(1700000000, 0), Trigger: "SIGHUP", OK: false, Error: "zeo.conf:3:1: bad"}
	if err := f.adm.Attach(f.srv, func() *stack.Tree { return tree }, func() stack.ReloadStatus { return status }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.http.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
		r.Close()
		for _, c := range f.children {
			c.Close()
		}
	})
	return f
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// metrics scrapes /metrics and parses it with Prometheus' own text parser.
type metrics map[string]*dto.MetricFamily

func (f *fixture) scrape(t *testing.T) metrics {
	t.Helper()
	code, body := get(t, f.http.URL+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return mfs
}

// value is the sample of family name whose labels include want (label
// value pairs); ok false when there is none.
func (m metrics) value(name string, want ...string) (float64, bool) {
	mf, ok := m[name]
	if !ok {
		return 0, false
	}
	for _, s := range mf.Metric {
		labels := map[string]string{}
		for _, l := range s.Label {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i+1 < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case s.Counter != nil:
			return s.Counter.GetValue(), true
		case s.Gauge != nil:
			return s.Gauge.GetValue(), true
		case s.Histogram != nil:
			return float64(s.Histogram.GetSampleCount()), true
		case s.Untyped != nil:
			return s.Untyped.GetValue(), true
		}
	}
	return 0, false
}

func (m metrics) must(t *testing.T, name string, want ...string) float64 {
	t.Helper()
	v, ok := m.value(name, want...)
	if !ok {
		t.Fatalf("no sample %s%v", name, want)
	}
	return v
}

// client registers on storage "1".
func (f *fixture) client(t *testing.T) *zeoproto.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := zeoproto.Dial(ctx, "tcp", f.addr, zeoproto.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Register(ctx, "1", false); err != nil {
		t.Fatal(err)
	}
	return c
}

// commit stores data for oid (a new object) in one transaction.
func commit(t *testing.T, c *zeoproto.Client, txn int64, oid stack.Oid) stack.Tid {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.CallAsync(ctx, "tpc_begin", txn, []byte("u"), []byte("d"), zeoproto.Dict{}, nil, " "); err != nil {
		t.Fatal(err)
	}
	if err := c.CallAsync(ctx, "storea", oid, stack.Tid(0), []byte("data"), txn); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(ctx, "vote", txn); err != nil {
		t.Fatalf("vote: %v", err)
	}
	r, err := c.Call(ctx, "tpc_finish", txn)
	if err != nil {
		t.Fatalf("tpc_finish: %v", err)
	}
	tid, err := stack.TidFromBytes(r.([]byte))
	if err != nil {
		t.Fatal(err)
	}
	return tid
}

func load(t *testing.T, c *zeoproto.Client, oid stack.Oid) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.LoadBefore(ctx, oid, stack.MaxTid); err != nil {
		t.Fatal(err)
	}
}

// waitMetric scrapes until the sample has value v, or fails after 30s.
func (f *fixture) waitMetric(t *testing.T, v float64, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, _ := f.scrape(t).value(name, labels...)
		if got == v {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v is %v, want %v", name, labels, got, v)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The counters move with loads and commits; the call histograms count the
// calls; bytes, clients, the invalidation queue and the Go runtime are
// there; the names pass Prometheus' linter.
func TestMetricsCountLoadsAndCommits(t *testing.T) {
	f := newFixture(t)
	m0 := f.scrape(t)
	if v := m0.must(t, "zeoraid_loads_total", "storage", "1"); v != 0 {
		t.Fatalf("loads before any: %v", v)
	}
	c := f.client(t)
	var tid stack.Tid
	for i := range 3 {
		tid = commit(t, c, int64(i+1), stack.Oid(i+1))
	}
	for range 5 {
		load(t, c, 1)
	}
	m := f.scrape(t)
	for _, w := range []struct {
		name string
		want float64
	}{
		{"zeoraid_commits_total", 3},
		{"zeoraid_stores_total", 3},
		{"zeoraid_loads_total", 5},
		{"zeoraid_aborts_total", 0},
		{"zeoraid_connected_clients", 1},
		{"zeoraid_invalidation_queue_length", 4}, // the start marker and 3 commits
		{"zeoraid_raid_commits_total", 3},
	} {
		if v := m.must(t, w.name, "storage", "1"); v != w.want {
			t.Errorf("%s = %v, want %v", w.name, v, w.want)
		}
	}
	if v := m.must(t, "zeoraid_call_duration_seconds", "storage", "1", "method", "loadBefore"); v != 5 {
		t.Errorf("loadBefore observations %v, want 5", v)
	}
	for _, method := range []string{"vote", "tpc_finish", "storea", "tpc_begin"} {
		if v := m.must(t, "zeoraid_call_duration_seconds", "storage", "1", "method", method); v != 3 {
			t.Errorf("%s observations %v, want 3", method, v)
		}
	}
	if r, w := m.must(t, "zeoraid_read_bytes_total", "storage", "1"), m.must(t, "zeoraid_written_bytes_total", "storage", "1"); r <= 0 || w <= 0 {
		t.Errorf("bytes read %v, written %v", r, w)
	}
	if v := m.must(t, "zeoraid_last_transaction_timestamp_seconds", "storage", "1"); v != tid.Seconds() {
		t.Errorf("last transaction time %v, want %v", v, tid.Seconds())
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "zeoraid_connections"} {
		m.must(t, name)
	}
	if v := m.must(t, "zeoraid_last_reload_success"); v != 0 {
		t.Errorf("last reload (refused) success %v", v)
	}
	f.adm.ObserveReload(stack.ReloadStatus{OK: true})
	if v := f.scrape(t).must(t, "zeoraid_reloads_total", "result", "ok"); v != 1 {
		t.Errorf("reloads ok %v, want 1", v)
	}
	_, body := get(t, f.http.URL+"/metrics")
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "zeoraid_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
}

// A child's state gauges follow it as it fails, is disabled, recovers;
// /readyz fails once the RAID has failed.
func TestMetricsChildStates(t *testing.T) {
	f := newFixture(t)
	c := f.client(t)
	m := f.scrape(t)
	for _, child := range []string{"a", "b", "c"} {
		if v := m.must(t, "zeoraid_raid_child_state", "child", child, "state", "optimal"); v != 1 {
			t.Fatalf("child %s optimal = %v", child, v)
		}
		if v := m.must(t, "zeoraid_raid_child_state", "child", child, "state", "degraded"); v != 0 {
			t.Fatalf("child %s degraded = %v", child, v)
		}
	}
	if v := m.must(t, "zeoraid_raid_status", "storage", "1", "node", "1", "status", "optimal"); v != 1 {
		t.Fatalf("status optimal = %v", v)
	}
	if code, body := get(t, f.http.URL+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	commit(t, c, 1, 1)
	// Child c fails: its storage is closed under the RAID.
	f.children[2].Close()
	commit(t, c, 2, 2)
	m = f.scrape(t)
	if v := m.must(t, "zeoraid_raid_child_state", "child", "c", "state", "degraded"); v != 1 {
		t.Fatalf("failed child c degraded = %v", v)
	}
	if v := m.must(t, "zeoraid_raid_status", "status", "degraded"); v != 1 {
		t.Fatalf("status degraded = %v", v)
	}
	if v := m.must(t, "zeoraid_raid_child_lag_transactions", "child", "c"); v != 1 {
		t.Fatalf("lag of c, which missed the commit it failed in: %v", v)
	}
	commit(t, c, 3, 3)
	if v := f.scrape(t).must(t, "zeoraid_raid_child_lag_transactions", "child", "c"); v != 2 {
		t.Fatalf("lag of c one commit later: %v", v)
	}
	// Child b is disabled and recovered.
	if err := f.raid.Disable(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	if v := f.scrape(t).must(t, "zeoraid_raid_child_state", "child", "b", "state", "degraded"); v != 1 {
		t.Fatalf("disabled child b degraded = %v", v)
	}
	if err := f.raid.Recover("b", false); err != nil {
		t.Fatal(err)
	}
	f.waitMetric(t, 1, "zeoraid_raid_child_state", "child", "b", "state", "optimal")
	if v := f.scrape(t).must(t, "zeoraid_raid_child_state", "child", "b", "state", "recovering"); v != 0 {
		t.Fatalf("recovered child b recovering = %v", v)
	}
	load(t, c, 1)
	if v := f.scrape(t).must(t, "zeoraid_raid_child_reads_total", "child", "a"); v < 1 {
		t.Fatalf("reads of a: %v", v)
	}
	// /status is every storage's ctl info --json.
	_, body := get(t, f.http.URL+"/status")
	var st map[string]map[string]any
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status: %v\n%s", err, body)
	}
	one := st["1"]
	children, _ := one["children"].(map[string]any)
	cc, _ := children["c"].(map[string]any)
	if one["status"] != "degraded" || one["storage"] != "1" || cc["state"] != "degraded" {
		t.Fatalf("/status: %s", body)
	}
	if srvStatus, _ := one["server"].(map[string]any); srvStatus["commits"] != float64(3) {
		t.Fatalf("/status server part: %v", one["server"])
	}
	if lr, _ := one["last_reload"]; lr != nil {
		t.Fatalf("no reload_status extension, but last_reload %v", lr)
	}
	// Every child gone: the RAID has failed, and the server is not ready.
	f.children[0].Close()
	f.children[1].Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = c.LoadBefore(ctx, 1, stack.MaxTid)
	_, _ = c.LoadBefore(ctx, 1, stack.MaxTid)
	code, rbody := get(t, f.http.URL+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(rbody, "RAID 1 has failed") {
		t.Fatalf("/readyz with a failed RAID: %d %q", code, rbody)
	}
	if v := f.scrape(t).must(t, "zeoraid_raid_status", "status", "failed"); v != 1 {
		t.Fatalf("status failed = %v", v)
	}
}

// pprof is served only when asked for.
func TestPprofOnlyWhenAsked(t *testing.T) {
	for _, on := range []bool{false, true} {
		a := admin.New(admin.Options{Pprof: on})
		hs := httptest.NewServer(a.Handler())
		code, _ := get(t, hs.URL+"/debug/pprof/cmdline")
		hs.Close()
		if want := map[bool]int{false: 404, true: 200}[on]; code != want {
			t.Errorf("pprof %v: /debug/pprof/cmdline answered %d, want %d", on, code, want)
		}
	}
}

// The index names the endpoints; unknown paths are 404.
func TestIndex(t *testing.T) {
	hs := httptest.NewServer(admin.New(admin.Options{}).Handler())
	defer hs.Close()
	if code, body := get(t, hs.URL+"/"); code != 200 || !strings.Contains(body, "/metrics") {
		t.Fatalf("index: %d %q", code, body)
	}
	if code, _ := get(t, hs.URL+"/nope"); code != 404 {
		t.Fatalf("unknown path: %d", code)
	}
}

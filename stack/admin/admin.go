// Package admin is zeoraid's HTTP admin endpoint (`zeoraid serve --admin`,
// <zeo> admin-address): /metrics for Prometheus, /healthz and /readyz for
// load balancers and supervisors, /status with every storage's
// `zeoraid ctl info --json`, and, only when asked for, Go's pprof
// (docs/operations.md).
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/server"
)

// Options configure an Admin.
type Options struct {
	// Pprof serves net/http/pprof under /debug/pprof/.
	Pprof bool
	// ProbeTimeout bounds the lastTransaction each /readyz asks of every
	// storage; 0: 2 seconds.
	ProbeTimeout time.Duration
	Log          logrus.FieldLogger
}

// Admin is the endpoint. It answers /healthz from the start; the rest
// needs the server and its storages, which Attach brings once they are
// open and listening: until then /readyz answers 503 "starting".
type Admin struct {
	opts     Options
	registry *prometheus.Registry
	reloads  *prometheus.CounterVec
	mux      *http.ServeMux

	mu     sync.Mutex
	srv    *server.Server
	tree   func() *stack.Tree
	reload func() stack.ReloadStatus
	http   *http.Server
}

// New returns an endpoint whose registry has the Go runtime and process
// collectors and the reload counter.
func New(opts Options) *Admin {
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = 2 * time.Second
	}
	if opts.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		opts.Log = l
	}
	a := &Admin{opts: opts, registry: prometheus.NewRegistry(), mux: http.NewServeMux()}
	a.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "zeoraid_reloads_total",
		Help: "Configuration reloads, by result: ok or refused.",
	}, []string{"result"})
	a.reloads.WithLabelValues("ok")
	a.reloads.WithLabelValues("refused")
	a.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		a.reloads,
		(*treeCollector)(a),
	)
	a.mux.Handle("/metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{ErrorLog: errorLog{opts.Log}}))
	a.mux.HandleFunc("/healthz", a.healthz)
	a.mux.HandleFunc("/readyz", a.readyz)
	a.mux.HandleFunc("/status", a.status)
	if opts.Pprof {
		a.mux.HandleFunc("/debug/pprof/", pprof.Index)
		a.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		a.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		a.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		a.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	a.mux.HandleFunc("/", a.index)
	return a
}

// Attach brings the server once it listens: tree returns the running
// storage tree (a reload replaces it), reload the last reload's outcome
// (nil: none is possible).
func (a *Admin) Attach(srv *server.Server, tree func() *stack.Tree, reload func() stack.ReloadStatus) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.srv != nil {
		return errors.New("admin: a server is already attached")
	}
	if err := a.registry.Register(srv.Collector()); err != nil {
		return fmt.Errorf("admin: server metrics: %w", err)
	}
	a.srv, a.tree, a.reload = srv, tree, reload
	return nil
}

// ObserveReload counts a reload by its result (stack.Reloader.Observe).
func (a *Admin) ObserveReload(st stack.ReloadStatus) {
	result := "ok"
	if !st.OK {
		result = "refused"
	}
	a.reloads.WithLabelValues(result).Inc()
}

// Handler is the endpoint's routes.
func (a *Admin) Handler() http.Handler { return a.mux }

// Registry is the endpoint's Prometheus registry, for collectors of the
// caller's own.
func (a *Admin) Registry() *prometheus.Registry { return a.registry }

// Serve answers HTTP on l until Shutdown; it returns nil after a shutdown.
func (a *Admin) Serve(l net.Listener) error {
	hs := &http.Server{Handler: a.mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errorLog{a.opts.Log}.std()}
	a.mu.Lock()
	a.http = hs
	a.mu.Unlock()
	a.opts.Log.WithField("address", l.Addr().String()).Info("admin endpoint listening")
	if err := hs.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops Serve, letting requests in progress end until ctx does.
func (a *Admin) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	hs := a.http
	a.mu.Unlock()
	if hs == nil {
		return nil
	}
	return hs.Shutdown(ctx)
}

func (a *Admin) attached() (*server.Server, *stack.Tree) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.srv == nil {
		return nil, nil
	}
	var t *stack.Tree
	if a.tree != nil {
		t = a.tree()
	}
	return a.srv, t
}

func (a *Admin) index(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "zeoraid admin endpoint: /metrics /healthz /readyz /status")
	if a.opts.Pprof {
		fmt.Fprintln(w, "profiling: /debug/pprof/")
	}
}

// healthz answers 200 as long as the process serves HTTP: a liveness
// check, which says nothing about the storages.
func (a *Admin) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

// readyz answers 200 when the server accepts connections, every storage
// of the configuration is served and answers lastTransaction, and no RAID
// (at any depth of a storage's tree) has failed; otherwise 503 with one
// line per reason.
func (a *Admin) readyz(w http.ResponseWriter, r *http.Request) {
	problems := a.unready(r.Context())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		for _, p := range problems {
			fmt.Fprintln(w, p)
		}
		return
	}
	fmt.Fprintln(w, "ready")
}

// unready lists why the server is not ready; none means ready.
func (a *Admin) unready(ctx context.Context) []string {
	srv, tree := a.attached()
	if srv == nil {
		return []string{"starting: storages are being opened"}
	}
	if !srv.Serving() {
		return []string{"not accepting connections (shutting down)"}
	}
	var problems []string
	served := map[string]bool{}
	for _, n := range srv.Names() {
		served[n] = true
	}
	if tree == nil {
		return nil
	}
	for _, name := range tree.Names {
		root := tree.Roots[name]
		if !served[name] || root == nil || root.Storage == nil {
			problems = append(problems, fmt.Sprintf("storage %q: not served", name))
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, a.opts.ProbeTimeout)
		_, err := root.Storage.LastTransaction(pctx)
		cancel()
		if err != nil {
			problems = append(problems, fmt.Sprintf("storage %q: lastTransaction: %v", name, err))
		}
		walk(root, func(b *stack.Built) {
			if m, ok := b.Storage.(stack.MirrorReporter); ok {
				if rep := m.MirrorReport(); rep.Failed() {
					problems = append(problems, fmt.Sprintf("storage %q: RAID %s has failed: no optimal child", name, b.Path))
				}
			}
		})
	}
	return problems
}

// status answers every storage's `zeoraid ctl info --json`, by name.
func (a *Admin) status(w http.ResponseWriter, r *http.Request) {
	srv, _ := a.attached()
	w.Header().Set("Content-Type", "application/json")
	if srv == nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "starting: storages are being opened"})
		return
	}
	out := map[string]any{}
	for _, name := range srv.Names() {
		info, err := srv.Info(r.Context(), name)
		if err != nil {
			out[name] = map[string]any{"storage": name, "error": err.Error()}
			continue
		}
		out[name] = info
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		a.opts.Log.WithError(err).Debug("admin: writing /status")
	}
}

// walk calls f for b and every node below it.
func walk(b *stack.Built, f func(*stack.Built)) {
	if b == nil {
		return
	}
	f(b)
	for _, c := range b.Children {
		walk(c, f)
	}
}

// errorLog sends net/http's and promhttp's complaints to the logger.
type errorLog struct{ log logrus.FieldLogger }

// Println implements promhttp.Logger.
func (e errorLog) Println(v ...any) { e.Write([]byte(fmt.Sprintln(v...))) }

func (e errorLog) Write(p []byte) (int, error) {
	e.log.WithField("component", "admin").Warn(strings.TrimSpace(string(p)))
	return len(p), nil
}

// std is the logger as net/http wants it.
func (e errorLog) std() *log.Logger { return log.New(e, "", 0) }

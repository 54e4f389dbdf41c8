package main

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"strings"
	"sync"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/eventlog"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
	"github.com/zeoraid/zeoraid/zconfig"
)

// serveHost is the server side of a configuration reload
// (stack.ReloadHost): the mounts, the live <zeo> keys, the listener and
// the <eventlog>.
type serveHost struct {
	srv *server.Server
	log *eventlog.Logger

	mu       sync.Mutex
	cfg      *stack.Config // the configuration in force
	listener net.Listener
	served   chan error // Serve's results; the current listener's ends the server
}

// serveOn serves l on its own goroutine; Serve's error of the listener in
// force ends the server.
func (h *serveHost) serveOn(l net.Listener) {
	go func() {
		err := h.srv.Serve(l)
		h.mu.Lock()
		current := h.listener == l
		h.mu.Unlock()
		if current {
			h.served <- err
		} else if err != nil {
			h.log.WithError(err).Warn("an old listener ended with an error")
		}
	}()
}

func (h *serveHost) AddMount(m *stack.Mount) error { return h.srv.AddMount(m) }

func (h *serveHost) RemoveMount(name, reason string) *stack.Mount {
	return h.srv.RemoveMount(name, reason)
}

// Prepare implements stack.ReloadHost.
func (h *serveHost) Prepare(cfg *stack.Config) (apply func() []string, abort func(), err error) {
	h.mu.Lock()
	old := h.cfg
	h.mu.Unlock()
	var lines []string
	var undo []func()
	abort = func() {
		for _, f := range undo {
			f()
		}
	}
	// A new address: listen there first, so a refused bind refuses the
	// reload; the old listener closes once the new one serves.
	var newL net.Listener
	if a, b := old.ZEO.Address, cfg.ZEO.Address; a.Network != b.Network || a.String() != b.String() {
		newL, err = server.Listen(b.Network, b.String())
		if err != nil {
			return nil, nil, fmt.Errorf("<zeo> address %s: %w", b.String(), err)
		}
		undo = append(undo, func() { newL.Close() })
		lines = append(lines, fmt.Sprintf("address %s -> %s", a.String(), newL.Addr()))
	}
	var newLog *eventlog.Logger
	if !reflect.DeepEqual(old.EventLog, cfg.EventLog) {
		newLog, err = eventlog.New(cfg.EventLog)
		if err != nil {
			abort()
			return nil, nil, fmt.Errorf("<eventlog>: %w", err)
		}
		undo = append(undo, newLog.Close)
		lines = append(lines, "<eventlog> replaced")
	}
	lines = append(lines, liveChanges(&old.ZEO, &cfg.ZEO)...)
	for _, key := range restartChanges(&old.ZEO, &cfg.ZEO) {
		lines = append(lines, key+" changed: applies at the next restart")
	}
	apply = func() []string {
		h.srv.SetOptions(liveOptions(&cfg.ZEO))
		if newLog != nil {
			h.log.Replace(newLog)
		}
		h.mu.Lock()
		h.cfg = cfg
		oldL := h.listener
		if newL != nil {
			h.listener = newL
		}
		h.mu.Unlock()
		if newL != nil {
			h.serveOn(newL)
			if err := h.srv.StopListening(oldL); err != nil {
				h.log.WithError(err).Warn("closing the old listener")
			}
		}
		return lines
	}
	return apply, abort, nil
}

// liveOptions are the <zeo> keys a reload changes in place
// (management-trust was checked when the configuration was decoded).
func liveOptions(z *stack.ZEOOptions) server.LiveOptions {
	trust, _ := z.Trust()
	return server.LiveOptions{
		Trust:                 trust,
		ReadOnly:              z.ReadOnly,
		InvalidationQueueSize: z.InvalidationQueueSize,
		InvalidationAge:       z.InvalidationAge,
		TransactionTimeout:    z.TransactionTimeoutDuration(),
	}
}

// liveChanges describes the live <zeo> keys that differ.
func liveChanges(a, b *stack.ZEOOptions) []string {
	var out []string
	add := func(key string, x, y any) {
		if x != y {
			out = append(out, fmt.Sprintf("%s %v -> %v", key, x, y))
		}
	}
	add("read-only", a.ReadOnly, b.ReadOnly)
	add("invalidation-queue-size", a.InvalidationQueueSize, b.InvalidationQueueSize)
	add("invalidation-age", a.InvalidationAge, b.InvalidationAge)
	add("transaction-timeout", a.TransactionTimeout, b.TransactionTimeout)
	add("management-trust", a.ManagementTrust, b.ManagementTrust)
	return out
}

// restartChanges names the <zeo> keys that differ but apply only at a
// restart (the wire format and TLS of connections, the pid file).
func restartChanges(a, b *stack.ZEOOptions) []string {
	var out []string
	if !reflect.DeepEqual(a.Msgpack, b.Msgpack) {
		out = append(out, "msgpack")
	}
	if !reflect.DeepEqual(a.SSL, b.SSL) {
		out = append(out, "<ssl>")
	}
	if a.PidFilename != b.PidFilename {
		out = append(out, "pid-filename")
	}
	if !reflect.DeepEqual(a.AdminAddress, b.AdminAddress) {
		out = append(out, "admin-address")
	}
	return out
}

// reloadExtensions are the server's reload calls, offered on every
// storage: raid_reload (gocept.zeoraid's name) reloads and answers the
// summary, one line per change; reload_status answers the last reload's
// outcome as a dict.
func reloadExtensions(r *stack.Reloader) map[string]stack.Extension {
	return map[string]stack.Extension{
		"raid_reload": func(ctx context.Context, args []any) (any, error) {
			summary, err := r.Reload(ctx, "raid_reload")
			if err != nil {
				return nil, &stack.StorageError{Msg: "reload refused: " + err.Error()}
			}
			return strings.Join(summary, "\n"), nil
		},
		"reload_status": func(ctx context.Context, args []any) (any, error) {
			st := r.Status()
			var when any
			if !st.When.IsZero() {
				when = float64(st.When.UnixNano()) / 1e9
			}
			summary := make([]any, len(st.Summary))
			for i, s := range st.Summary {
				summary[i] = s
			}
			return zeoproto.Dict{
				{Key: "when", Value: when},
				{Key: "trigger", Value: st.Trigger},
				{Key: "ok", Value: st.OK},
				{Key: "error", Value: st.Error},
				{Key: "summary", Value: summary},
			}, nil
		},
	}
}

// reloadSource is where a reload reads the configuration: the -C file
// (watched unless --no-watch) and the command line's overrides.
type reloadSource struct {
	conf  string
	watch bool
	load  func() (*stack.Config, error)
}

// applyOverrides applies -t and --pid-file over the configuration.
func applyOverrides(cfg *stack.Config, timeout int, pidFile string) {
	if timeout > 0 {
		cfg.ZEO.TransactionTimeout = timeout
	}
	if pidFile != "" {
		cfg.ZEO.PidFilename = zconfig.ExistingDirPath(pidFile)
	}
}

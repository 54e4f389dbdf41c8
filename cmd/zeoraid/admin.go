package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/admin"
	"github.com/zeoraid/zeoraid/stack/server"
)

// adminFlags are serve's --admin and --admin-pprof.
type adminFlags struct {
	addr  string
	pprof bool
}

func (f *adminFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "admin", "", "serve the HTTP admin endpoint (/metrics, /healthz, /readyz, /status) here: host:port, port or a unix socket path (overrides <zeo> admin-address)")
	fs.BoolVar(&f.pprof, "admin-pprof", false, "also serve Go's profiler under /debug/pprof/ on the admin endpoint")
}

// apply sets <zeo> admin-address from --admin.
func (f *adminFlags) apply(cfg *stack.Config) error {
	if f.addr == "" {
		return nil
	}
	a, err := parseBindAddress(f.addr)
	if err != nil {
		return err
	}
	cfg.ZEO.AdminAddress = &a
	return nil
}

// start opens the admin endpoint of cfg and serves it on its own
// goroutine, before the storages open, so that /healthz answers (and
// /readyz says "starting") meanwhile. nil when none is configured.
func (f *adminFlags) start(cfg *stack.Config, log logrus.FieldLogger) (*admin.Admin, error) {
	a := cfg.ZEO.AdminAddress
	if a == nil {
		if f.pprof {
			log.Warn("--admin-pprof without an admin endpoint (--admin or <zeo> admin-address): no profiler is served")
		}
		return nil, nil
	}
	l, err := server.Listen(a.Network, a.String())
	if err != nil {
		return nil, fmt.Errorf("admin endpoint %s: %w", a.String(), err)
	}
	endpoint := admin.New(admin.Options{Pprof: f.pprof, Log: log})
	go func() {
		if err := endpoint.Serve(l); err != nil {
			log.WithError(err).Error("admin endpoint stopped")
		}
	}()
	return endpoint, nil
}

// stop ends the admin endpoint after the server stopped.
func (f *adminFlags) stop(endpoint *admin.Admin, log logrus.FieldLogger) {
	if endpoint == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := endpoint.Shutdown(ctx); err != nil {
		log.WithError(err).Warn("admin endpoint shutdown")
	}
}

// notifySystemd tells systemd the service's state (READY=1 once
// listening, STOPPING=1 at shutdown) when it runs us as Type=notify; it
// does nothing without $NOTIFY_SOCKET.
func notifySystemd(log logrus.FieldLogger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.WithError(err).WithField("state", state).Warn("systemd notification failed")
	}
}

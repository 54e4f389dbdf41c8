package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/admin"
	"github.com/zeoraid/zeoraid/stack/configwatch"
	"github.com/zeoraid/zeoraid/stack/eventlog"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/zconfig"
)

// shutdownGrace is how long a shutdown waits for commits in progress.
const shutdownGrace = 30 * time.Second

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	conf := fs.String("C", "", "configuration file (default: the embedded default)")
	addr := fs.String("a", "", "address to listen on (overrides <zeo> address): host:port, port, or a unix socket path")
	var files multiFlag
	fs.Var(&files, "f", "serve this Data.fs as a <filestorage> (repeatable; named 1, 2, …)")
	timeout := fs.Int("t", 0, "transaction timeout in seconds (overrides <zeo> transaction-timeout)")
	pidFile := fs.String("pid-file", "", "write the server's pid to this file (overrides <zeo> pid-filename)")
	readyFile := fs.String("ready-file", "", "once listening, write the bound address to this file (for tests and supervisors; useful with port 0)")
	noWatch := fs.Bool("no-watch", false, "do not reload when the configuration files change (SIGHUP and `zeoraid ctl reload` still do)")
	var adm adminFlags
	adm.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: zeoraid serve [-C zeo.conf] [-a ADDRESS] [-f Data.fs]... [-t SECONDS] [--pid-file PATH]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	cfg, err := serveConfig(*conf, *addr, files)
	if err != nil {
		printConfigError(stderr, err)
		return 2
	}
	applyOverrides(cfg, *timeout, *pidFile)
	if err := adm.apply(cfg); err != nil {
		printConfigError(stderr, err)
		return 2
	}
	log, err := eventlog.New(cfg.EventLog)
	if err != nil {
		// The section was checked when it was decoded; what is left is
		// the system's answer (a log file that cannot be opened, say).
		fmt.Fprintf(stderr, "zeoraid: <eventlog>: %v\n", err)
		return 2
	}
	defer log.Close()
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	src := reloadSource{conf: *conf, watch: !*noWatch && *conf != "", load: func() (*stack.Config, error) {
		c, err := serveConfig(*conf, *addr, files)
		if err == nil {
			applyOverrides(c, *timeout, *pidFile)
			err = adm.apply(c)
		}
		return c, err
	}}
	endpoint, err := adm.start(cfg, log)
	if err != nil {
		log.WithError(err).Error("admin endpoint")
		fmt.Fprintf(stderr, "zeoraid: %v\n", err)
		return 1
	}
	defer adm.stop(endpoint, log)
	if err := serve(cfg, log, *readyFile, src, endpoint); err != nil {
		log.WithError(err).Error("server stopped")
		fmt.Fprintf(stderr, "zeoraid: %v\n", err)
		return 1
	}
	return 0
}

// multiFlag collects a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// serveConfig builds the configuration from -C (or the embedded default),
// then applies -a and -f as runzeo does: with -f and -a no file is needed.
func serveConfig(conf, addr string, files []string) (*stack.Config, error) {
	var src strings.Builder
	if conf == "" && len(files) > 0 {
		fmt.Fprintf(&src, "<zeo>\n  address %s\n</zeo>\n", orDefault(addr, "127.0.0.1:8100"))
	}
	for i, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&src, "<filestorage %d>\n  path %s\n</filestorage>\n", i+1, abs)
	}
	var cfg *stack.Config
	var err error
	switch {
	case conf == "" && len(files) > 0:
		root, perr := zconfig.Parse("(command line)", []byte(src.String()))
		if perr != nil {
			return nil, perr
		}
		cfg, err = stack.DecodeConfig(root)
	default:
		if conf == "" {
			for _, dir := range defaultDirs {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return nil, err
				}
			}
		}
		cfg, err = loadConfig(conf)
		if err == nil && len(files) > 0 {
			root, perr := zconfig.Parse("(command line)", []byte(src.String()))
			if perr != nil {
				return nil, perr
			}
			cfg.Storages = append(cfg.Storages, root.Sections...)
		}
	}
	if err != nil {
		return nil, err
	}
	if addr != "" {
		a, err := parseBindAddress(addr)
		if err != nil {
			return nil, err
		}
		cfg.ZEO.Address = a
	}
	return cfg, nil
}

// parseBindAddress reads -a with the same rules as <zeo> address.
func parseBindAddress(addr string) (zconfig.BindAddress, error) {
	var v struct {
		Address zconfig.BindAddress `zconfig:"address,required"`
	}
	root, err := zconfig.Parse("-a", []byte("<a>\naddress "+addr+"\n</a>\n"))
	if err == nil {
		err = zconfig.Decode(root.Sections[0], &v)
	}
	return v.Address, err
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// serve opens the storages, listens, and runs until SIGTERM or SIGINT;
// SIGHUP, `zeoraid ctl reload` and (unless --no-watch) a change of the
// configuration files reload it (docs/reload.md).
// The admin endpoint, when there is one, is attached once the server
// listens; systemd is told READY=1 then (docs/operations.md).
func serve(cfg *stack.Config, log *eventlog.Logger, readyFile string, src reloadSource, endpoint *admin.Admin) error {
	ctx := context.Background()
	// One pool for the first tree and every reload's, so that a new tree
	// shares what the running one holds.
	buildOpts := stack.BuildOptions{Log: log, Pool: stack.NewPool(), Import: pluginImporter(log)}
	tree, err := stack.Build(ctx, cfg, buildOpts)
	if err != nil {
		return err
	}
	var mounts []*stack.Mount
	for _, name := range tree.Names {
		mounts = append(mounts, stack.NewMount(name, tree.Roots[name].Storage))
	}
	reloader := stack.NewReloader(tree, mounts)
	reloader.Load, reloader.Build, reloader.Log = src.load, buildOpts, log
	if endpoint != nil {
		reloader.Observe = endpoint.ObserveReload
	}
	defer func() {
		if err := reloader.Close(); err != nil {
			log.WithError(err).Error("closing storages")
		}
	}()
	tlsConf, err := serverTLS(cfg.ZEO.SSL)
	if err != nil {
		return err
	}
	trust, err := cfg.ZEO.Trust()
	if err != nil {
		return err
	}
	srv := server.New(mounts, server.Options{
		ReadOnly:              cfg.ZEO.ReadOnly,
		InvalidationQueueSize: cfg.ZEO.InvalidationQueueSize,
		InvalidationAge:       cfg.ZEO.InvalidationAge,
		TransactionTimeout:    cfg.ZEO.TransactionTimeoutDuration(),
		Msgpack:               useMsgpack(cfg.ZEO.Msgpack),
		TLS:                   tlsConf,
		Log:                   log,
		Extensions:            reloadExtensions(reloader),
		ReadOnlyExtensions:    []string{"reload_status"},
		Trust:                 trust,
	})
	l, err := server.Listen(cfg.ZEO.Address.Network, cfg.ZEO.Address.String())
	if err != nil {
		return err
	}
	if p := string(cfg.ZEO.PidFilename); p != "" && !cfg.ZEO.ReadOnly {
		if err := os.WriteFile(p, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			l.Close()
			return fmt.Errorf("pid file: %w", err)
		}
		defer os.Remove(p)
	}
	if readyFile != "" {
		// Written to a temporary name and renamed, so a reader never sees
		// half an address.
		tmp := readyFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(l.Addr().String()+"\n"), 0o644); err == nil {
			err = os.Rename(tmp, readyFile)
		}
		if err != nil {
			l.Close()
			return fmt.Errorf("ready file: %w", err)
		}
	}
	host := &serveHost{srv: srv, log: log, cfg: cfg, listener: l, served: make(chan error, 1)}
	reloader.Host = host
	host.serveOn(l)
	served := host.served
	if src.watch {
		w, err := configwatch.New(src.conf, configwatch.Options{Log: log, OnChange: func() {
			_, _ = reloader.Reload(ctx, "file change")
		}})
		if err != nil {
			log.WithError(err).Warn("cannot watch the configuration files; SIGHUP and zeoraid ctl reload still reload")
		} else {
			defer w.Close()
		}
	}
	log.WithField("address", l.Addr().String()).WithField("storages", strings.Join(tree.Names, ",")).Info("zeoraid serving")
	if endpoint != nil {
		if err := endpoint.Attach(srv, reloader.Tree, reloader.Status); err != nil {
			return err
		}
	}
	notifySystemd(log, daemon.SdNotifyReady)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR2, syscall.SIGHUP)
	defer signal.Stop(sigs)
	for {
		select {
		case err := <-served:
			return err
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				go func() { _, _ = reloader.Reload(ctx, "SIGHUP") }()
				continue
			}
			if sig == syscall.SIGUSR2 {
				if err := log.Reopen(); err != nil {
					log.WithError(err).Error("reopening log files")
				}
				continue
			}
			log.WithField("signal", sig.String()).Info("shutting down")
			notifySystemd(log, daemon.SdNotifyStopping)
			sctx, cancel := context.WithTimeout(ctx, shutdownGrace)
			err := srv.Shutdown(sctx)
			cancel()
			<-served
			if unix := cfg.ZEO.Address; unix.Network == "unix" {
				os.Remove(unix.Path)
			}
			return err
		}
	}
}

// useMsgpack is runzeo's rule: the msgpack key if given, otherwise whether
// $ZEO_MSGPACK is non-empty.
func useMsgpack(key *bool) bool {
	if key != nil {
		return *key
	}
	return os.Getenv("ZEO_MSGPACK") != ""
}

// serverTLS builds the TLS configuration of <ssl>: client certificates are
// required and verified against `authenticate`, as Python's server does.
func serverTLS(o *stack.SSLOptions) (*tls.Config, error) {
	if o == nil {
		return nil, nil
	}
	keyFile := string(o.Key)
	if keyFile == "" {
		keyFile = string(o.Certificate)
	}
	cert, err := tls.LoadX509KeyPair(string(o.Certificate), keyFile)
	if err != nil {
		return nil, fmt.Errorf("<ssl>: %w", err)
	}
	pool := x509.NewCertPool()
	if o.Authenticate != "DYNAMIC" {
		if err := addCerts(pool, o.Authenticate); err != nil {
			return nil, fmt.Errorf("<ssl> authenticate: %w", err)
		}
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// addCerts adds a PEM file, or every file of a directory, to pool.
func addCerts(pool *x509.CertPool, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	files := []string{path}
	if fi.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return err
		}
		files = files[:0]
		for _, e := range entries {
			if !e.IsDir() {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
	}
	added := false
	for _, f := range files {
		pem, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if pool.AppendCertsFromPEM(pem) {
			added = true
		}
	}
	if !added {
		return errors.New("no certificates found in " + path)
	}
	return nil
}

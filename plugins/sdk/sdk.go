// Package sdk is what a zeoraid storage plugin imports. A plugin is an
// executable named zeoraid-plugin-NAME whose main calls Serve with the
// section types it implements, each an ordinary stack.Module: its Options
// struct with zconfig tags (the schema zeoraid validates and documents) and
// its Open, which returns a stack.Storage with whatever optional
// capabilities it really supports. zeoraid starts one process per
// configured section and talks to it over gRPC; nothing of that shows in
// this package's API. docs/plugins.md is the author's guide.
package sdk

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"

	"github.com/zeoraid/zeoraid/plugins/internal/wire"
	"github.com/zeoraid/zeoraid/plugins/proto"
	"github.com/zeoraid/zeoraid/stack"
)

// EnvWatchStdin, set by the host, says that the plugin's stdin is a pipe
// the host holds open: end of file on it means the host is gone.
const EnvWatchStdin = "ZEORAID_PLUGIN_WATCH_STDIN"

// advertisedMajor, when set at link time (-ldflags -X), replaces the
// protocol version the plugin announces. It exists for the host's test of
// the version check, which needs a plugin of another major version.
var advertisedMajor string

// closeTimeout bounds the storage's Close when the plugin ends on its own
// (the host died): long enough for a backend to flush, short enough that
// an orphan does not linger.
const closeTimeout = 30 * time.Second

// parentPoll is how often the watchdog checks that the host is alive.
const parentPoll = 500 * time.Millisecond

// Serve serves modules to zeoraid and returns only by exiting the process.
// Call it from main, before anything writes to stdout: stdout carries the
// handshake. Log with the logrus logger a module's Open gets in Node.Log
// (or with Logger): its lines reach zeoraid's log with the node's fields.
//
// Started by hand rather than by zeoraid, the program says so, lists its
// section types and exits with status 1.
func Serve(modules ...stack.Module) {
	major := proto.Major
	if advertisedMajor != "" {
		if n, err := strconv.Atoi(advertisedMajor); err == nil {
			major = n
		}
	}
	if os.Getenv(proto.MagicCookieKey) != proto.MagicCookieValue {
		fmt.Fprintf(os.Stderr, "%s is a zeoraid storage plugin (protocol %d). It is started by zeoraid: put\n  %%import %s\nin zeo.conf and use its section types:\n", os.Args[0], major, pluginName())
		for _, m := range modules {
			fmt.Fprintf(os.Stderr, "  <%s>  %s\n", m.Type, m.Doc)
		}
		os.Exit(1)
	}
	// baseLog writes to the original stderr, which goes to the host's log
	// bridge; go-plugin replaces os.Stderr by a stream of its own.
	log := baseLog
	srv := newServer(modules, log, major)
	go watchdog(srv, log)
	ignoreSignals(log)
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig:  wire.Handshake,
		VersionedPlugins: wire.Plugins(major, srv),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			opts = append(opts, grpc.MaxRecvMsgSize(wire.MaxMessage), grpc.MaxSendMsgSize(wire.MaxMessage))
			return grpc.NewServer(opts...)
		},
		Logger: hclog.New(&hclog.LoggerOptions{Output: log.Out, JSONFormat: true, Level: hclog.Warn, Name: "go-plugin"}),
	})
	// The host stopped the gRPC server (its Kill): close what is still
	// open, then exit.
	srv.shutdown(closeTimeout)
	os.Exit(0)
}

// Logger returns the plugin's logger: JSON lines on the process's
// original stderr, which the host turns into lines of its own log.
func Logger() logrus.FieldLogger { return baseLog }

// baseLog is made at init, so it holds the original stderr before Serve
// replaces os.Stderr.
var baseLog = newLogger(os.Stderr)

// newLogger logs JSON lines the host parses: level, msg, time and the
// fields.
func newLogger(w io.Writer) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(w)
	l.SetLevel(logrus.TraceLevel)
	l.SetFormatter(&logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano})
	return l
}

// pluginName is the NAME of zeoraid-plugin-NAME, for the message to a
// user who runs the plugin by hand.
func pluginName() string {
	base := os.Args[0]
	for i := len(base) - 1; i >= 0; i-- {
		if base[i] == '/' {
			base = base[i+1:]
			break
		}
	}
	const prefix = "zeoraid-plugin-"
	if len(base) > len(prefix) && base[:len(prefix)] == prefix {
		return base[len(prefix):]
	}
	return base
}

// ignoreSignals keeps the plugin alive on SIGTERM, SIGINT and SIGHUP: the
// host decides when its plugins stop (a service manager signals the whole
// group; the host then closes each storage before it stops the process),
// and a plugin whose host died exits through the watchdog. SIGPIPE is
// taken so that writing to a host that is gone fails instead of killing
// the process before its storage is closed.
func ignoreSignals(log logrus.FieldLogger) {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGPIPE)
	go func() {
		for sig := range ch {
			if sig != syscall.SIGPIPE {
				log.WithField("signal", sig.String()).Info("signal ignored: zeoraid stops its plugins itself")
			}
		}
	}()
}

// watchdog ends the plugin when its host is gone: end of file on stdin
// (the host holds the pipe's other end; the kernel closes it whatever way
// the host died) or a change of the parent process (re-parented to init
// or a subreaper). The storage is closed first, within closeTimeout.
func watchdog(srv *server, log logrus.FieldLogger) {
	gone := make(chan string, 2)
	if os.Getenv(EnvWatchStdin) != "" {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			gone <- "stdin closed"
		}()
	}
	go func() {
		parent := os.Getppid()
		for range time.Tick(parentPoll) {
			if os.Getppid() != parent {
				gone <- "parent process changed"
				return
			}
		}
	}()
	why := <-gone
	log.WithField("reason", why).Warn("zeoraid is gone; closing the storage and exiting")
	srv.shutdown(closeTimeout)
	os.Exit(0)
}

package host

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/plugins/internal/wire"
	"github.com/zeoraid/zeoraid/plugins/proto"
	"github.com/zeoraid/zeoraid/plugins/sdk"
)

// startTimeout bounds a plugin's start up to its handshake.
const startTimeout = 30 * time.Second

// killWait is how long a stop waits for the process to exit after
// go-plugin's shutdown before the group is killed.
const killWait = 5 * time.Second

// process is one running plugin process and the gRPC client of its
// storage service.
type process struct {
	path   string
	client *goplugin.Client
	rpc    proto.StorageClient
	run    *procRunner
	log    logrus.FieldLogger
	stdio  []*io.PipeWriter // the lineLoggers of the forwarded stdout and stderr
}

// startProcess starts the plugin executable path, completes the handshake
// and returns the client of its service. Its log lines go to log. With
// mtls, the connection uses go-plugin's automatic mutual TLS.
func startProcess(path string, log logrus.FieldLogger, mtls bool) (*process, error) {
	r := &procRunner{path: path, log: log, stderrDone: make(chan struct{}), exited: make(chan struct{})}
	r.handshakeMajor.Store(-1)
	stdout, stderr := lineLogger(log, "stdout"), lineLogger(log, "stderr")
	closeStdio := func() { stdout.Close(); stderr.Close() }
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  wire.Handshake,
		VersionedPlugins: wire.Plugins(proto.Major, nil),
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         mtls,
		RunnerFunc: func(_ hclog.Logger, cmd *exec.Cmd, _ string) (runner.Runner, error) {
			return r, r.prepare(cmd)
		},
		StartTimeout: startTimeout,
		Logger:       goPluginLogger(log),
		SyncStdout:   stdout,
		SyncStderr:   stderr,
	})
	cp, err := client.Client()
	if err != nil {
		client.Kill()
		r.killGroup()
		closeStdio()
		if m := r.handshakeMajor.Load(); m >= 0 && m != proto.Major {
			return nil, fmt.Errorf("%s speaks version %d of the zeoraid plugin protocol, this zeoraid speaks version %d: rebuild the plugin against a plugins/sdk of version %d", path, m, proto.Major, proto.Major)
		}
		return nil, fmt.Errorf("starting plugin %s: %w", path, err)
	}
	raw, err := cp.Dispense(proto.PluginName)
	if err != nil {
		client.Kill()
		r.killGroup()
		closeStdio()
		return nil, fmt.Errorf("plugin %s: %w", path, err)
	}
	return &process{path: path, client: client, rpc: raw.(proto.StorageClient), run: r, log: log, stdio: []*io.PipeWriter{stdout, stderr}}, nil
}

// pid is the plugin's process id.
func (p *process) pid() int { return p.run.pid }

// stop closes the storage of the process (its own Close call, bounded by
// closeTimeout), then stops the process (go-plugin's shutdown, which waits
// a moment and then kills it) and kills its process group, so no
// descendant outlives it. It returns the storage's Close error.
func (p *process) stop(closeTimeout time.Duration) error {
	var closeErr error
	if closeTimeout > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		res, err := p.rpc.Close(ctx, &proto.Empty{})
		cancel()
		if err != nil {
			closeErr = wire.FromStatus(err)
		} else {
			closeErr = wire.Error(res.GetFailure())
		}
	}
	killed := make(chan struct{})
	go func() {
		p.client.Kill()
		close(killed)
	}()
	select {
	case <-killed:
	case <-time.After(killWait + 2*time.Second):
		p.log.Warn("plugin did not stop in time; killing its process group")
	}
	p.run.killGroup()
	<-killed
	for _, w := range p.stdio {
		w.Close()
	}
	return closeErr
}

// exitedCh is closed when the process has exited.
func (p *process) exitedCh() <-chan struct{} { return p.run.exited }

// handshakeLine matches go-plugin's handshake: core|app|network|address|protocol...
var handshakeLine = regexp.MustCompile(`^1\|(\d+)\|(unix|tcp)\|[^|]+\|`)

// procRunner runs a plugin process for go-plugin: in its own process
// group, with a stdin pipe the plugin watches (end of file: the host is
// gone), a stdout filtered down to the handshake line, and a stderr read by
// zeoraid's own log bridge, so go-plugin's log parsing never sees a line.
type procRunner struct {
	path string
	log  logrus.FieldLogger
	cmd  *exec.Cmd
	pid  int

	stdinW         *os.File
	stdout         io.ReadCloser // what go-plugin reads: the handshake only
	handshakeMajor atomic.Int64  // the plugin's protocol version, -1 before the handshake
	stderrDone     chan struct{} // closed when the plugin's stderr ended
	exited         chan struct{} // closed when Wait returned
	exitOnce       sync.Once
	realStdout     io.ReadCloser
	realStderr     io.ReadCloser
}

// prepare makes the command from go-plugin's template (its environment).
func (r *procRunner) prepare(tmpl *exec.Cmd) error {
	cmd := exec.Command(r.path)
	cmd.Env = append(tmpl.Env, sdk.EnvWatchStdin+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stdin = stdinR
	r.stdinW = stdinW
	if r.realStdout, err = cmd.StdoutPipe(); err != nil {
		return err
	}
	if r.realStderr, err = cmd.StderrPipe(); err != nil {
		return err
	}
	r.cmd = cmd
	return nil
}

func (r *procRunner) Start(context.Context) error {
	if err := r.cmd.Start(); err != nil {
		r.stdinW.Close()
		return err
	}
	// The child has its copy of the pipe's read end.
	r.cmd.Stdin.(*os.File).Close()
	r.pid = r.cmd.Process.Pid
	pr, pw := io.Pipe()
	r.stdout = pr
	go r.filterStdout(pw)
	go func() {
		bridgeLog(r.realStderr, r.log)
		close(r.stderrDone)
	}()
	r.log.WithFields(logrus.Fields{"plugin": r.path, "pid": r.pid}).Debug("plugin started")
	return nil
}

// filterStdout passes the handshake line to go-plugin and logs anything
// else the plugin wrote on stdout, verbatim: stdout is reserved for the
// handshake, and a stray line before it would otherwise fail the start.
func (r *procRunner) filterStdout(pw *io.PipeWriter) {
	defer pw.Close()
	br := bufio.NewReaderSize(r.realStdout, 64<<10)
	seen := false
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			text := strings.TrimRight(line, "\r\n")
			if m := handshakeLine.FindStringSubmatch(text); !seen && m != nil {
				seen = true
				if v, err := strconv.Atoi(m[1]); err == nil {
					r.handshakeMajor.Store(int64(v))
				}
				if _, err := io.WriteString(pw, text+"\n"); err != nil {
					return
				}
			} else {
				msg := "plugin wrote to stdout, which is reserved for its handshake"
				r.log.WithFields(logrus.Fields{"stream": "stdout", "line": text}).Warn(msg)
			}
		}
		if err != nil {
			return
		}
	}
}

// Stdout is what go-plugin reads the handshake from.
func (r *procRunner) Stdout() io.ReadCloser { return r.stdout }

// Stderr gives go-plugin nothing to parse: it ends when the plugin's real
// stderr, read by bridgeLog, has ended.
func (r *procRunner) Stderr() io.ReadCloser { return endReader{r.stderrDone} }

// Wait waits for the process; its stdin pipe is closed then.
func (r *procRunner) Wait(context.Context) error {
	err := r.cmd.Wait()
	r.stdinW.Close()
	r.exitOnce.Do(func() { close(r.exited) })
	return err
}

// Kill kills the plugin's whole process group.
func (r *procRunner) Kill(context.Context) error {
	r.killGroup()
	return nil
}

// killGroup sends SIGKILL to the plugin's process group (the plugin and
// anything it started) and closes its stdin pipe.
func (r *procRunner) killGroup() {
	if r.pid > 0 {
		if err := syscall.Kill(-r.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			r.log.WithError(err).Warn("killing the plugin's process group")
		}
	}
	if r.stdinW != nil {
		r.stdinW.Close()
	}
}

func (r *procRunner) Diagnose(context.Context) string {
	return fmt.Sprintf("is %s a zeoraid plugin built for this system (see the lines it logged above)?", r.path)
}

func (r *procRunner) Name() string { return r.path }
func (r *procRunner) ID() string   { return strconv.Itoa(r.pid) }

func (r *procRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (r *procRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}

// endReader reads nothing and ends when done is closed.
type endReader struct{ done <-chan struct{} }

func (e endReader) Read([]byte) (int, error) {
	<-e.done
	return 0, io.EOF
}

func (e endReader) Close() error { return nil }

// maxLogLine bounds one log line of a plugin; longer lines are logged in
// pieces.
const maxLogLine = 64 << 10

// bridgeLog turns the plugin's stderr into lines of log. A JSON object
// with a string message ("msg", or hclog's "@message") becomes an entry
// at its level ("level" or "@level") with its other members as fields;
// any other line is logged verbatim, at error level from a Go panic or
// fatal error on. Nothing a plugin writes can make this fail.
func bridgeLog(r io.Reader, log logrus.FieldLogger) {
	br := bufio.NewReaderSize(r, maxLogLine)
	inPanic := false
	for {
		line, isPrefix, err := br.ReadLine()
		if len(line) > 0 {
			inPanic = logLine(log, line, isPrefix, inPanic)
		}
		if err != nil {
			return
		}
	}
}

// logLine logs one stderr line and reports whether a panic is being
// printed.
func logLine(log logrus.FieldLogger, line []byte, partial, inPanic bool) bool {
	text := string(line)
	if !partial && !inPanic && bytes.HasPrefix(bytes.TrimSpace(line), []byte("{")) {
		var obj map[string]any
		if json.Unmarshal(line, &obj) == nil {
			if msg, ok := stringMember(obj, "msg", "@message"); ok {
				level := logrus.InfoLevel
				if l, ok := stringMember(obj, "level", "@level"); ok {
					if parsed, err := logrus.ParseLevel(l); err == nil {
						level = parsed
					}
				}
				fields := logrus.Fields{}
				for k, v := range obj {
					switch k {
					case "msg", "@message", "level", "@level", "time", "@timestamp", "timestamp":
						continue
					}
					fields[k] = v
				}
				logAt(log.WithFields(fields), level, msg)
				return false
			}
		}
	}
	if strings.HasPrefix(text, "panic: ") || strings.HasPrefix(text, "fatal error: ") {
		inPanic = true
	}
	entry := log.WithField("stream", "stderr")
	if inPanic {
		entry.Error(text)
	} else {
		entry.Info(text)
	}
	return inPanic
}

// stringMember returns the first of keys that obj has as a string.
func stringMember(obj map[string]any, keys ...string) (string, bool) {
	for _, k := range keys {
		if s, ok := obj[k].(string); ok {
			return s, true
		}
	}
	return "", false
}

func logAt(e logrus.FieldLogger, level logrus.Level, msg string) {
	switch level {
	case logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel:
		// A plugin's panic or fatal is its own; the host only logs it.
		e.Error(msg)
	case logrus.WarnLevel:
		e.Warn(msg)
	case logrus.InfoLevel:
		e.Info(msg)
	case logrus.DebugLevel:
		e.Debug(msg)
	default:
		e.WithField("plugin_level", level.String()).Debug(msg)
	}
}

// lineLogger is a writer whose lines are logged at info level with the
// stream's name: what a plugin writes to os.Stdout or os.Stderr after
// Serve, which go-plugin forwards.
func lineLogger(log logrus.FieldLogger, stream string) *io.PipeWriter {
	pr, pw := io.Pipe()
	go func() {
		br := bufio.NewReaderSize(pr, maxLogLine)
		for {
			line, _, err := br.ReadLine()
			if len(line) > 0 {
				log.WithField("stream", stream).Info(string(line))
			}
			if err != nil {
				return
			}
		}
	}()
	return pw
}

// goPluginLogger routes go-plugin's own messages to the node's log at
// debug level: the host logs what matters (start, exit, restart) itself.
func goPluginLogger(log logrus.FieldLogger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:        "go-plugin",
		Level:       hclog.Info,
		Output:      debugWriter{log},
		DisableTime: true,
	})
}

// debugWriter logs each write at debug level.
type debugWriter struct{ log logrus.FieldLogger }

func (w debugWriter) Write(p []byte) (int, error) {
	w.log.Debug(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

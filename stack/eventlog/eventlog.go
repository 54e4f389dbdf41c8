// Package eventlog turns zeo.conf's <eventlog> section into a logrus
// logger: the level names of Python's logging (ZConfig's logger component),
// <logfile> handlers with Python's %(name)s-style format strings, and
// reopening of log files on request (SIGUSR2, for logrotate).
package eventlog

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/zeoraid/zeoraid/stack"
)

// DefaultFormat is runzeo's format when zeo.conf has no <eventlog>.
const DefaultFormat = "------\n%(asctime)s %(levelname)s %(name)s %(message)s"

// Logger is the server's logger plus the files it writes, so they can be
// reopened and closed.
type Logger struct {
	*logrus.Logger
	files []*reopenable
}

// New builds the logger for opts; nil opts gives runzeo's default: INFO and
// above to stderr in DefaultFormat.
func New(opts *stack.EventLogOptions) (*Logger, error) {
	l := &Logger{Logger: logrus.New()}
	if opts == nil {
		l.SetOutput(os.Stderr)
		l.SetLevel(logrus.InfoLevel)
		l.SetFormatter(&Formatter{Layout: DefaultFormat, DateFormat: "%Y-%m-%dT%H:%M:%S"})
		return l, nil
	}
	level, err := ParseLevel(opts.Level)
	if err != nil {
		return nil, err
	}
	l.SetLevel(level)
	if len(opts.LogFiles) == 0 {
		l.SetOutput(os.Stderr)
		l.SetFormatter(&Formatter{Layout: DefaultFormat, DateFormat: "%Y-%m-%dT%H:%M:%S"})
		return l, nil
	}
	// logrus has one output and one formatter; several handlers become a
	// hook each, and the logger's own output is discarded.
	l.SetOutput(io.Discard)
	for _, f := range opts.LogFiles {
		hlevel := logrus.TraceLevel
		if f.Level != "" && !strings.EqualFold(f.Level, "notset") {
			if hlevel, err = ParseLevel(f.Level); err != nil {
				l.Close()
				return nil, err
			}
		}
		w, err := openLog(f.Path)
		if err != nil {
			l.Close()
			return nil, err
		}
		l.files = append(l.files, w)
		format := strings.ReplaceAll(f.Format, `\n`, "\n")
		format = strings.ReplaceAll(format, `\t`, "\t")
		l.AddHook(&handler{w: w, level: hlevel, fmt: &Formatter{Layout: format, DateFormat: f.DateFormat}})
	}
	return l, nil
}

// Reopen closes and reopens every log file (after logrotate moved them).
func (l *Logger) Reopen() error {
	var first error
	for _, f := range l.files {
		if err := f.reopen(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Close closes the log files.
func (l *Logger) Close() {
	for _, f := range l.files {
		f.close()
	}
	l.files = nil
}

// ParseLevel maps a ZConfig logging level (a name of Python's logging or an
// integer 0..50) to logrus. Python's CRITICAL has no logrus counterpart and
// maps to error; BLATHER (15) maps to debug; TRACE, ALL and NOTSET to trace.
func ParseLevel(s string) (logrus.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "critical", "fatal", "error":
		return logrus.ErrorLevel, nil
	case "warn", "warning":
		return logrus.WarnLevel, nil
	case "info":
		return logrus.InfoLevel, nil
	case "blather", "debug":
		return logrus.DebugLevel, nil
	case "trace", "all", "notset":
		return logrus.TraceLevel, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 || n > 50 {
		return 0, fmt.Errorf("unknown logging level %q: use critical, error, warn, info, blather, debug, trace, all, notset or 0..50", s)
	}
	switch {
	case n >= 40:
		return logrus.ErrorLevel, nil
	case n >= 30:
		return logrus.WarnLevel, nil
	case n >= 20:
		return logrus.InfoLevel, nil
	case n >= 10:
		return logrus.DebugLevel, nil
	}
	return logrus.TraceLevel, nil
}

// LoggerField is the entry field that names the Python logger a line is
// logged under (%(name)s), for lines that keep the wording of ZEO's own
// server (its loggers are "ZEO.StorageServer" and "ZEO.asyncio.server"), so
// that what operators and ZEO's tests look for in runzeo's logs is found in
// zeoraid's. Without it the name is "zeoraid", or "zeoraid.NODE" for an
// entry with a "node" field.
const LoggerField = "logger"

// Formatter renders entries with a Python logging format string:
// %(asctime)s, %(levelname)s, %(name)s, %(message)s, %(process)d; the
// entry's fields other than LoggerField follow the message as key=value,
// sorted.
type Formatter struct {
	Layout     string // the Python format string
	DateFormat string // strftime subset: %Y %m %d %H %M %S
}

// Format implements logrus.Formatter.
func (f *Formatter) Format(e *logrus.Entry) ([]byte, error) {
	msg := e.Message
	if len(e.Data) > 0 {
		keys := make([]string, 0, len(e.Data))
		for k := range e.Data {
			if k != LoggerField {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		var b strings.Builder
		b.WriteString(msg)
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%v", k, e.Data[k])
		}
		msg = b.String()
	}
	name := "zeoraid"
	if n, ok := e.Data[LoggerField]; ok {
		name = fmt.Sprint(n)
	} else if n, ok := e.Data["node"]; ok {
		name = fmt.Sprintf("zeoraid.%v", n)
	}
	r := strings.NewReplacer(
		"%(asctime)s", strftime(f.DateFormat, e.Time),
		"%(levelname)s", pythonLevel(e.Level),
		"%(name)s", name,
		"%(message)s", msg,
		"%(process)d", strconv.Itoa(os.Getpid()),
	)
	var out bytes.Buffer
	out.WriteString(r.Replace(f.Layout))
	out.WriteByte('\n')
	return out.Bytes(), nil
}

func pythonLevel(l logrus.Level) string {
	switch l {
	case logrus.PanicLevel, logrus.FatalLevel:
		return "CRITICAL"
	case logrus.ErrorLevel:
		return "ERROR"
	case logrus.WarnLevel:
		return "WARNING"
	case logrus.InfoLevel:
		return "INFO"
	case logrus.DebugLevel:
		return "DEBUG"
	}
	return "TRACE"
}

func strftime(format string, t time.Time) string {
	if format == "" {
		format = "%Y-%m-%dT%H:%M:%S"
	}
	r := strings.NewReplacer(
		"%Y", fmt.Sprintf("%04d", t.Year()), "%m", fmt.Sprintf("%02d", int(t.Month())),
		"%d", fmt.Sprintf("%02d", t.Day()), "%H", fmt.Sprintf("%02d", t.Hour()),
		"%M", fmt.Sprintf("%02d", t.Minute()), "%S", fmt.Sprintf("%02d", t.Second()),
		"%%", "%",
	)
	return r.Replace(format)
}

// handler is one <logfile>: a level threshold, a formatter and a writer.
type handler struct {
	w     io.Writer
	level logrus.Level
	fmt   logrus.Formatter
}

func (h *handler) Levels() []logrus.Level { return logrus.AllLevels[:h.level+1] }

func (h *handler) Fire(e *logrus.Entry) error {
	b, err := h.fmt.Format(e)
	if err != nil {
		return err
	}
	_, err = h.w.Write(b)
	return err
}

// reopenable is a log file that can be reopened in place; STDOUT and
// STDERR are never closed.
type reopenable struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

func openLog(path string) (*reopenable, error) {
	r := &reopenable{path: path}
	switch strings.ToUpper(path) {
	case "STDOUT":
		r.f = os.Stdout
		return r, nil
	case "STDERR":
		r.f = os.Stderr
		return r, nil
	}
	if err := r.reopen(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *reopenable) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Write(p)
}

func (r *reopenable) reopen() error {
	if r.f == os.Stdout || r.f == os.Stderr {
		return nil
	}
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	r.mu.Lock()
	old := r.f
	r.f = f
	r.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

func (r *reopenable) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f != nil && r.f != os.Stdout && r.f != os.Stderr {
		r.f.Close()
	}
}

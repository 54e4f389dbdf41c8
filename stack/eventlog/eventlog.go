// Package eventlog turns zeo.conf's <eventlog> section into a logrus
// logger: the levels of Python's logging (ZConfig's logger component),
// <logfile> and <syslog> handlers with Python's format strings, and
// reopening of log files on request (SIGUSR2, for logrotate). The section
// is decoded and checked by stack.DecodeConfig (the same for validate and
// serve); New only builds what it describes.
package eventlog

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// DefaultFormat is runzeo's format when zeo.conf has no <eventlog>.
const DefaultFormat = "------\n%(asctime)s %(levelname)s %(name)s %(message)s"

// Logger is the server's logger plus the files and sockets it writes, so
// they can be reopened and closed.
type Logger struct {
	*logrus.Logger
	files   []*reopenable
	syslogs []*syslogWriter
}

// New builds the logger for opts; nil opts gives runzeo's default: INFO and
// above to stderr in DefaultFormat, as does an <eventlog> without handlers.
func New(opts *stack.EventLogOptions) (*Logger, error) {
	l := &Logger{Logger: logrus.New()}
	l.SetLevel(logrus.InfoLevel)
	if opts != nil {
		l.SetLevel(Level(opts.Level))
	}
	if opts == nil || len(opts.LogFiles)+len(opts.Syslogs) == 0 {
		l.SetOutput(os.Stderr)
		l.SetFormatter(&Formatter{Layout: DefaultFormat})
		return l, nil
	}
	// logrus has one output and one formatter; several handlers become a
	// hook each, and the logger's own output is discarded.
	l.SetOutput(io.Discard)
	for _, f := range opts.LogFiles {
		format, err := handlerFormatter(&f.LogHandlerOptions, f.Format)
		if err != nil {
			l.Close()
			return nil, err
		}
		w, err := openLog(f.Path)
		if err != nil {
			l.Close()
			return nil, err
		}
		l.files = append(l.files, w)
		l.AddHook(&handler{w: w, level: f.Level, fmt: format})
	}
	for _, s := range opts.Syslogs {
		format, err := handlerFormatter(&s.LogHandlerOptions, s.Format)
		if err != nil {
			l.Close()
			return nil, err
		}
		w, err := dialSyslog(s.Address)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("<syslog> %s: %w", s.Address, err)
		}
		l.syslogs = append(l.syslogs, w)
		l.AddHook(&syslogHandler{w: w, level: s.Level, fmt: format, facility: syslogFacilities[s.Facility]})
	}
	return l, nil
}

// lineFormatter renders an entry as one line, with the final newline
// (Format, for files) or without (line, for syslog).
type lineFormatter interface {
	logrus.Formatter
	line(e *logrus.Entry) (string, error)
}

// handlerFormatter is the formatter of a handler section: JSON lines for
// one of stack.JSONLogFormatters, else Python's logging.Formatter.
func handlerFormatter(h *stack.LogHandlerOptions, format zconfig.EscapedString) (lineFormatter, error) {
	f := &Formatter{Layout: string(format), DateFormat: h.DateFormat, Style: h.Style, ArbitraryFields: h.ArbitraryFields}
	if _, err := f.layout(); err != nil {
		return nil, err
	}
	if stack.JSONLogFormatters[h.Formatter] {
		return &JSONFormatter{Formatter: Formatter{Layout: f.Layout, DateFormat: f.DateFormat, Style: f.Style, ArbitraryFields: f.ArbitraryFields}}, nil
	}
	return f, nil
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

// Close closes the log files and syslog sockets.
func (l *Logger) Close() {
	for _, f := range l.files {
		f.close()
	}
	for _, w := range l.syslogs {
		w.close()
	}
	l.files, l.syslogs = nil, nil
}

// Level is the logrus level that lets through what Python's logging lets
// through at level n: the entries whose Python level (PythonLevel) is at
// least n. NOTSET (0) lets everything through. BLATHER (15) lets INFO
// through but not DEBUG, as in Python.
func Level(n zconfig.LoggingLevel) logrus.Level {
	level := logrus.PanicLevel
	for _, l := range logrus.AllLevels {
		if PythonLevel(l) >= int(n) {
			level = l
		}
	}
	return level
}

// PythonLevel is the number Python's logging gives the level of a logrus
// entry: fatal (and panic) are CRITICAL, trace is ZConfig's TRACE.
func PythonLevel(l logrus.Level) int {
	switch l {
	case logrus.PanicLevel, logrus.FatalLevel:
		return 50
	case logrus.ErrorLevel:
		return 40
	case logrus.WarnLevel:
		return 30
	case logrus.InfoLevel:
		return 20
	case logrus.DebugLevel:
		return 10
	}
	return 5
}

// levelsFrom lists the logrus levels a handler at Python level n handles.
func levelsFrom(n zconfig.LoggingLevel) []logrus.Level {
	var levels []logrus.Level
	for _, l := range logrus.AllLevels {
		if PythonLevel(l) >= int(n) {
			levels = append(levels, l)
		}
	}
	return levels
}

// LoggerField is the entry field that names the Python logger a line is
// logged under (%(name)s), for lines that keep the wording of ZEO's own
// server (its loggers are "ZEO.StorageServer" and "ZEO.asyncio.server"), so
// that what operators and ZEO's tests look for in runzeo's logs is found in
// zeoraid's. Without it the name is "zeoraid", or "zeoraid.NODE" for an
// entry with a "node" field.
const LoggerField = "logger"

// Formatter renders entries with a Python logging format string, any of
// the fields of Python's log records (%(asctime)s, %(levelname)-8s,
// %(process)d, …) in the classic, template or safe-template style; the
// entry's fields other than LoggerField follow the message as key=value,
// sorted. With ArbitraryFields, a name that is not a record field is the
// entry field of that name.
type Formatter struct {
	Layout          string // the Python format string
	DateFormat      string // strftime format of %(asctime)s; "" is ISO 8601
	Style           zconfig.LogFormatStyle
	ArbitraryFields bool

	once   sync.Once
	parsed *zconfig.LogFormat
	err    error
}

// layout is the parsed Layout.
func (f *Formatter) layout() (*zconfig.LogFormat, error) {
	f.once.Do(func() { f.parsed, f.err = zconfig.ParseLogFormat(f.Layout, f.Style, f.ArbitraryFields) })
	return f.parsed, f.err
}

// started is when the process began logging, for %(relativeCreated)d.
var started = time.Now()

// Format implements logrus.Formatter.
func (f *Formatter) Format(e *logrus.Entry) ([]byte, error) {
	line, err := f.line(e)
	if err != nil {
		return nil, err
	}
	return append([]byte(line), '\n'), nil
}

// line renders e without the final newline.
func (f *Formatter) line(e *logrus.Entry) (string, error) {
	layout, err := f.layout()
	if err != nil {
		return "", err
	}
	return layout.Format(f.record(e, true)), nil
}

// record returns the values of e's log record fields by name; with
// withData the message is followed by e's fields as key=value.
func (f *Formatter) record(e *logrus.Entry, withData bool) func(field string) (zconfig.LogValue, bool) {
	msg := e.Message
	if withData && len(e.Data) > 0 {
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
	created := float64(e.Time.UnixNano()) / 1e9
	value := func(field string) (zconfig.LogValue, bool) {
		switch field {
		case "name":
			return name, true
		case "message", "msg":
			return msg, true
		case "levelname":
			return pythonLevel(e.Level), true
		case "levelno":
			return int64(PythonLevel(e.Level)), true
		case "asctime":
			return strftime(f.DateFormat, e.Time), true
		case "created":
			return created, true
		case "msecs":
			return float64(e.Time.Nanosecond()/1000) / 1000, true
		case "relativeCreated":
			return float64(e.Time.Sub(started).Microseconds()) / 1000, true
		case "process":
			return int64(os.Getpid()), true
		case "processName":
			return "MainProcess", true
		case "thread":
			return int64(0), true
		case "threadName":
			return "MainThread", true
		case "pathname", "filename", "module", "funcName":
			if e.Caller == nil {
				return "", true
			}
			return map[string]string{
				"pathname": e.Caller.File, "filename": filepath.Base(e.Caller.File),
				"module": strings.TrimSuffix(filepath.Base(e.Caller.File), ".go"), "funcName": e.Caller.Function,
			}[field], true
		case "lineno":
			if e.Caller == nil {
				return int64(0), true
			}
			return int64(e.Caller.Line), true
		case "args":
			return zconfig.PyObject{Repr: "()"}, true
		case "exc_info", "exc_text", "stack_info":
			return zconfig.PyObject{Repr: "None"}, true
		}
		v, ok := e.Data[field]
		switch v := v.(type) {
		case string:
			return v, ok
		case int:
			return int64(v), ok
		case int64:
			return v, ok
		case float64:
			return v, ok
		}
		return fmt.Sprint(v), ok
	}
	return value
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

// strftime formats t with the C directives Python's time.strftime knows
// (in the C locale); an unknown directive is kept as written.
func strftime(format string, t time.Time) string {
	if format == "" {
		format = "%Y-%m-%dT%H:%M:%S"
	}
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 == len(format) {
			b.WriteByte(format[i])
			continue
		}
		i++
		switch c := format[i]; c {
		case 'Y':
			fmt.Fprintf(&b, "%04d", t.Year())
		case 'y':
			fmt.Fprintf(&b, "%02d", t.Year()%100)
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case 'e':
			fmt.Fprintf(&b, "%2d", t.Day())
		case 'H':
			fmt.Fprintf(&b, "%02d", t.Hour())
		case 'I':
			fmt.Fprintf(&b, "%02d", (t.Hour()+11)%12+1)
		case 'M':
			fmt.Fprintf(&b, "%02d", t.Minute())
		case 'S':
			fmt.Fprintf(&b, "%02d", t.Second())
		case 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case 'p':
			b.WriteString(t.Format("PM"))
		case 'a':
			b.WriteString(t.Format("Mon"))
		case 'A':
			b.WriteString(t.Format("Monday"))
		case 'b', 'h':
			b.WriteString(t.Format("Jan"))
		case 'B':
			b.WriteString(t.Format("January"))
		case 'c':
			b.WriteString(t.Format("Mon Jan _2 15:04:05 2006"))
		case 'x':
			b.WriteString(t.Format("01/02/06"))
		case 'X':
			b.WriteString(t.Format("15:04:05"))
		case 'z':
			b.WriteString(t.Format("-0700"))
		case 'Z':
			b.WriteString(t.Format("MST"))
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(c)
		}
	}
	return b.String()
}

// handler is one <logfile>: a Python level threshold, a formatter and a
// writer.
type handler struct {
	w     io.Writer
	level zconfig.LoggingLevel
	fmt   logrus.Formatter
}

func (h *handler) Levels() []logrus.Level { return levelsFrom(h.level) }

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
	switch path { // exactly these names, as ZConfig compares
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

package stack

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/zeoraid/zeoraid/zconfig"
)

// checkEventLog applies to a decoded <eventlog> the rules that ZConfig's
// handler factories apply when runzeo loads its configuration: formats
// checked against their style, the rotation keys' combinations, what
// STDOUT and STDERR refuse, SMTP credentials in pairs, and that each log
// file and syslog socket can be used. It creates and opens nothing, so
// `zeoraid validate` can run it; `zeoraid serve` runs it through
// DecodeConfig too, so both refuse the same configurations. Handler types
// zeoraid does not implement are warned about.
func checkEventLog(o *EventLogOptions) (warnings []string, err error) {
	var errs zconfig.ErrorList
	fail := func(pos zconfig.Pos, format string, args ...any) {
		errs = append(errs, &zconfig.Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
	}
	base := func(h *LogHandlerOptions, format zconfig.EscapedString) {
		if _, err := zconfig.ParseLogFormat(string(format), h.Style, h.ArbitraryFields); err != nil {
			key := "format"
			if h.Style == "format" { // the style is what zeoraid lacks
				key = "style"
			}
			fail(keyPos(h.Section, key), "<%s>: %v", h.Section.Type, err)
		}
		if h.Formatter != "" && h.Formatter != "logging.Formatter" && !JSONLogFormatters[h.Formatter] {
			warnings = append(warnings, fmt.Sprintf("%s: formatter %s is a Python class; zeoraid formats as logging.Formatter does",
				keyPos(h.Section, "formatter"), h.Formatter))
		}
	}
	for _, f := range o.LogFiles {
		base(&f.LogHandlerOptions, f.Format)
		checkLogFile(f, fail, &warnings)
	}
	for _, s := range o.Syslogs {
		base(&s.LogHandlerOptions, s.Format)
		checkSyslog(s, fail)
	}
	unimplemented := func(h *LogHandlerOptions) {
		warnings = append(warnings, fmt.Sprintf("%s: <%s> log handler accepted but not implemented by zeoraid", h.Section.Pos, h.Section.Type))
	}
	for _, e := range o.EmailNotifiers {
		base(&e.LogHandlerOptions, e.Format)
		if (e.SMTPUsername == "") != (e.SMTPPassword == "") {
			fail(e.Section.Pos, "<email-notifier>: give both smtp-username and smtp-password, or neither")
		}
		unimplemented(&e.LogHandlerOptions)
	}
	for _, h := range o.HTTPLoggers {
		base(&h.LogHandlerOptions, h.Format)
		unimplemented(&h.LogHandlerOptions)
	}
	for _, w := range o.Win32EventLogs {
		base(&w.LogHandlerOptions, w.Format)
		unimplemented(&w.LogHandlerOptions)
	}
	if len(errs) > 0 {
		return warnings, errs
	}
	return warnings, nil
}

// JSONLogFormatters are the formatter class names that make a log
// handler write one JSON object per line, for log shippers:
// python-json-logger's JsonFormatter (at its old and its new module
// path), so that the same <logfile> works under runzeo with that package
// installed (docs/operations.md).
var JSONLogFormatters = map[zconfig.DottedName]bool{
	"pythonjsonlogger.jsonlogger.JsonFormatter": true,
	"pythonjsonlogger.json.JsonFormatter":       true,
}

// IsStdStream says whether a <logfile> path names standard output or
// error: exactly STDOUT or STDERR, as ZConfig compares (stdout is a file).
func IsStdStream(path string) bool { return path == "STDOUT" || path == "STDERR" }

// checkLogFile is ZConfig's FileHandlerFactory's checks, and that the file
// can be opened for appending.
func checkLogFile(f *LogFileOptions, fail func(zconfig.Pos, string, ...any), warnings *[]string) {
	sec := f.Section
	rotates := f.MaxSize != 0 || f.OldFiles != 0 || f.When != ""
	if IsStdStream(f.Path) {
		switch {
		case rotates:
			fail(sec.Pos, "<logfile>: cannot rotate %s", f.Path)
		case f.Delay:
			fail(keyPos(sec, "delay"), "<logfile>: cannot delay opening %s", f.Path)
		case f.Encoding != "":
			fail(keyPos(sec, "encoding"), "<logfile>: cannot specify an encoding for %s", f.Path)
		}
		return
	}
	if rotates || f.Interval != 0 {
		switch {
		case f.OldFiles == 0:
			fail(sec.Pos, "<logfile>: old-files must be set for log rotation")
		case f.When != "" && f.MaxSize != 0:
			fail(sec.Pos, "<logfile>: set max-size or when, not both")
		case f.When == "" && f.MaxSize == 0:
			fail(sec.Pos, "<logfile>: max-size or when must be set for log rotation")
		default:
			*warnings = append(*warnings, fmt.Sprintf("%s: <logfile> rotation is left to the system: rotate %s with logrotate and send SIGUSR2 to reopen it", sec.Pos, f.Path))
		}
	}
	if f.Encoding != "" && !strings.EqualFold(strings.ReplaceAll(f.Encoding, "-", ""), "utf8") {
		*warnings = append(*warnings, fmt.Sprintf("%s: <logfile> encoding %s: zeoraid writes UTF-8", keyPos(sec, "encoding"), f.Encoding))
	}
	if err := appendable(f.Path); err != nil {
		fail(keyPos(sec, "path"), "<logfile>: cannot write the log file %s: %v", f.Path, err)
	}
}

// appendable checks, without creating or opening anything, that path is a
// file that could be opened for appending: an existing writable file, or a
// new name in an existing writable directory.
func appendable(path string) error {
	const wOK = 2 // access(2)'s W_OK
	if fi, err := os.Stat(path); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("it is a directory")
		}
		return syscall.Access(path, wOK)
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case err != nil:
		return fmt.Errorf("directory %s: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := syscall.Access(dir, wOK); err != nil {
		return fmt.Errorf("directory %s: %w", dir, err)
	}
	return nil
}

// SyslogPort is the port a <syslog> address without one is sent to.
const SyslogPort = 514

// checkSyslog checks that the syslog daemon's address can be used: a Unix
// socket must exist (Python's handler connects to it when it is made), and
// a host must resolve.
func checkSyslog(s *SyslogOptions, fail func(zconfig.Pos, string, ...any)) {
	pos := keyPos(s.Section, "address")
	if s.Address.Network == "unix" {
		fi, err := os.Stat(s.Address.Path)
		switch {
		case err != nil:
			fail(pos, "<syslog>: no syslog socket: %v", err)
		case fi.Mode()&os.ModeSocket == 0:
			fail(pos, "<syslog>: %s is not a socket", s.Address.Path)
		}
		return
	}
	if _, err := net.ResolveUDPAddr("udp", net.JoinHostPort(s.Address.Host, "514")); err != nil {
		fail(pos, "<syslog>: %v", err)
	}
}

// keyPos is where the value of key name is in s, or s itself when the key
// is not given (its default is in effect).
func keyPos(s *zconfig.Section, name string) zconfig.Pos {
	for _, k := range s.Keys {
		if k.Name == name {
			return k.ValuePos
		}
	}
	return s.Pos
}

package zconfig

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// The datatypes of ZConfig's logger component (ZConfig.components.logger),
// which zeo.conf's <eventlog> and its handler sections use.

// LoggingLevel is the logger component's logging_level: a level name of
// Python's logging (case-insensitive, with ZConfig's trace, blather and
// all) or an integer 0..50, held as Python's numeric level.
type LoggingLevel int

// loggingLevels are ZConfig's level names.
var loggingLevels = map[string]LoggingLevel{
	"critical": 50, "fatal": 50, "error": 40, "warn": 30, "warning": 30,
	"info": 20, "blather": 15, "debug": 10, "trace": 5, "all": 1, "notset": 0,
}

func parseLoggingLevel(s string) (LoggingLevel, error) {
	l := strings.ToLower(s)
	if n, ok := loggingLevels[l]; ok {
		return n, nil
	}
	n, err := parsePyInt(l)
	if err != nil || n < 0 || n > 50 {
		return 0, fmt.Errorf("%s is not a logging level (critical, error, warn, info, blather, debug, trace, all, notset or 0..50)", quote(s))
	}
	return LoggingLevel(n), nil
}

// SyslogFacility is the logger component's syslog_facility, lower-cased.
type SyslogFacility string

var syslogFacilities = []string{
	"auth", "authpriv", "cron", "daemon", "kern", "local0", "local1", "local2",
	"local3", "local4", "local5", "local6", "local7", "lpr", "mail", "news",
	"security", "syslog", "user", "uucp",
}

func parseSyslogFacility(s string) (SyslogFacility, error) {
	l := strings.ToLower(s)
	if i := sort.SearchStrings(syslogFacilities, l); i < len(syslogFacilities) && syslogFacilities[i] == l {
		return SyslogFacility(l), nil
	}
	return "", fmt.Errorf("%s is not a syslog facility (one of %s)", quote(s), strings.Join(syslogFacilities, ", "))
}

// LogFormatStyle is the logger component's log_format_style: how a
// handler's format string refers to fields, lower-cased: classic
// (%(name)s), format ({name}), template or safe-template (${name}).
type LogFormatStyle string

func parseLogFormatStyle(s string) (LogFormatStyle, error) {
	switch l := strings.ToLower(s); l {
	case "classic", "format", "template", "safe-template":
		return LogFormatStyle(l), nil
	}
	return "", fmt.Errorf("%s is not a format style (classic, format, template or safe-template)", quote(s))
}

// EscapedString is the logger component's escaped_string (handler
// formats): the escapes \n, \t, \b, \f and \r become the characters.
type EscapedString string

func parseEscapedString(s string) EscapedString {
	for _, e := range [][2]string{{`\n`, "\n"}, {`\t`, "\t"}, {`\b`, "\b"}, {`\f`, "\f"}, {`\r`, "\r"}} {
		s = strings.ReplaceAll(s, e[0], e[1])
	}
	return EscapedString(s)
}

// DottedName is ZConfig's dotted-name: Python identifiers joined by dots.
type DottedName string

var dottedNameRE = regexp.MustCompile(`^[_a-zA-Z][_a-zA-Z0-9]*(\.[_a-zA-Z][_a-zA-Z0-9]*)*$`)

func parseDottedName(s string) (DottedName, error) {
	if !dottedNameRE.MatchString(s) {
		return "", fmt.Errorf("%s is not a dotted name", quote(s))
	}
	return DottedName(s), nil
}

// HTTPLoggerURL is the logger component's http_handler_url: an http URL
// with a host and a path.
type HTTPLoggerURL string

func parseHTTPLoggerURL(s string) (HTTPLoggerURL, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil || strings.ToLower(u.Scheme) != "http":
		return "", fmt.Errorf("%s is not an http URL", quote(s))
	case u.Host == "":
		return "", fmt.Errorf("URL %s has no host", quote(s))
	case u.Path == "":
		return "", fmt.Errorf("URL %s has no path", quote(s))
	}
	return HTTPLoggerURL(s), nil
}

// HTTPMethod is the logger component's get_or_post, upper-cased.
type HTTPMethod string

func parseHTTPMethod(s string) (HTTPMethod, error) {
	switch u := strings.ToUpper(s); u {
	case "GET", "POST":
		return HTTPMethod(u), nil
	}
	return "", fmt.Errorf("method %s is neither GET nor POST", quote(s))
}

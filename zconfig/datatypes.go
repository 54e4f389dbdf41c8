package zconfig

import (
	"fmt"
	"math"
	"net"
	"os"
	"os/user"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// The conversions below follow ZConfig's stock datatypes value for value:
// the numbers are read as Python's int() and float() read them (blanks
// around the digits, a sign, "_" between digits, Unicode decimal digits),
// so a value ZConfig accepts is accepted here with the same result. Where
// zeoraid refuses what ZConfig accepts, the reason is given at the place;
// zconfig/datatype_parity_test.go runs every datatype against ZConfig.

// ByteSize is ZConfig's byte-size: an integer with an optional KB, MB or GB
// suffix (case-insensitive, powers of 1024), so "20MB" is 20971520. Like
// ZConfig it may be negative; a key that needs a non-negative size checks.
type ByteSize int64

// ExistingDirPath is ZConfig's existing-dirpath: a file path whose parent
// directory must exist (the file itself need not). A leading "~" or "~user"
// is expanded to the home directory, as ZConfig does.
type ExistingDirPath string

// MissingDirError is the cause of an ExistingDirPath refused because its
// directory does not exist; callers that create directories themselves
// (zeoraid's default configuration) can recognise it with errors.As.
type MissingDirError struct {
	Dir  string // the directory part that does not exist
	Path string // the value as written
}

func (e *MissingDirError) Error() string {
	return fmt.Sprintf("the directory %s of path %s does not exist", quote(e.Dir), quote(e.Path))
}

// SocketAddress is ZConfig's socket-address and the common shape of its
// other socket addresses: a Unix socket (Network "unix", Path) or a TCP
// address (Network "tcp", Host, Port). Host is lower-cased and "" means all
// interfaces; a TCP address without a port has Port 0.
type SocketAddress struct {
	Network string // "tcp" or "unix"
	Host    string
	Port    int
	Path    string
}

// String returns the address as net.Listen and net.Dial take it: the path
// of a Unix socket or "host:port" (IPv6 hosts in brackets).
func (a SocketAddress) String() string {
	if a.Network == "unix" {
		return a.Path
	}
	return net.JoinHostPort(a.Host, strconv.Itoa(a.Port))
}

// BindAddress is ZConfig's socket-binding-address, where a server listens:
// a value containing "/" is a Unix socket path; otherwise "port" (all
// interfaces), "host:port", "[v6]:port", or "host" alone (port 0: the
// system picks a free port, as runzeo's asyncio listener does with ZConfig's
// port None).
type BindAddress SocketAddress

// String returns the address as net.Listen takes it.
func (a BindAddress) String() string { return SocketAddress(a).String() }

// ConnectAddress is ZConfig's socket-connection-address, where a client
// connects: like BindAddress, but a bare port means 127.0.0.1 and a port is
// required (there is nothing to dial without one).
type ConnectAddress SocketAddress

// String returns the address as net.Dial takes it.
func (a ConnectAddress) String() string { return SocketAddress(a).String() }

// InetAddress is ZConfig's inet-address: a host and port, never a Unix
// socket (Network is always "tcp").
type InetAddress SocketAddress

// String returns "host:port".
func (a InetAddress) String() string { return SocketAddress(a).String() }

// parseBoolean converts ZConfig's boolean.
func parseBoolean(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "yes", "on", "true":
		return true, nil
	case "no", "off", "false":
		return false, nil
	}
	return false, fmt.Errorf("%s is not a boolean (use yes/on/true or no/off/false)", quote(s))
}

// pySpace is the ASCII whitespace Python's int() and float() skip around a
// number.
const pySpace = " \t\n\v\f\r"

// pyNumber prepares s as Python's int() and float() do before reading it:
// Unicode blanks become spaces, Unicode decimal digits become ASCII ones,
// and the blanks around the number are dropped.
func pyNumber(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < 0x80:
			b.WriteRune(r)
		case unicode.IsDigit(r):
			b.WriteByte('0' + decimalValue(r))
		case unicode.IsSpace(r):
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return strings.Trim(b.String(), pySpace)
}

// decimalValue is the value of the Unicode decimal digit r. Unicode encodes
// decimal digits in contiguous runs 0..9, so the value is how far r is from
// the start of its run of digits, modulo 10.
func decimalValue(r rune) byte {
	n := 0
	for n < 100 && unicode.IsDigit(r-rune(n)-1) {
		n++
	}
	return byte(n % 10)
}

// pyIntRE is Python's int() literal in base 10, after pyNumber.
var pyIntRE = regexp.MustCompile(`^[+-]?[0-9](_?[0-9])*$`)

// parsePyInt reads s as Python's int(s) does. Python's integers have no
// bound; a value beyond 64 bits is refused here as out of range.
func parsePyInt(s string) (int64, error) {
	t := pyNumber(s)
	if !pyIntRE.MatchString(t) {
		return 0, fmt.Errorf("%s is not an integer", quote(s))
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(t, "_", ""), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s is out of range", quote(s))
	}
	return n, nil
}

// parseInteger converts ZConfig's integer within bits bits.
func parseInteger(s string, bits int) (int64, error) {
	n, err := parsePyInt(s)
	if err == nil && (n < -1<<(bits-1) || n > 1<<(bits-1)-1) {
		err = fmt.Errorf("%s is out of range", quote(s))
	}
	return n, err
}

// pyFloatRE is Python's float() literal, after pyNumber.
var pyFloatRE = regexp.MustCompile(`(?i)^[+-]?(((([0-9](_?[0-9])*)?\.[0-9](_?[0-9])*)|([0-9](_?[0-9])*\.?))(e[+-]?[0-9](_?[0-9])*)?|inf|infinity|nan)$`)

// parseFloat converts ZConfig's float (Python's float(): also inf and nan).
func parseFloat(s string) (float64, error) {
	t := pyNumber(s)
	if !pyFloatRE.MatchString(t) {
		return 0, fmt.Errorf("%s is not a number", quote(s))
	}
	if strings.EqualFold(strings.TrimLeft(t, "+-"), "nan") { // strconv refuses a signed NaN
		return math.NaN(), nil
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(t, "_", ""), 64)
	if err != nil && !math.IsInf(f, 0) { // Python's float() overflows to inf too
		return 0, fmt.Errorf("%s is not a number", quote(s))
	}
	return f, nil
}

// parseSuffixed is ZConfig's SuffixMultiplier: when s, lower-cased, ends in
// one of the units (all of length size) the rest is an integer counting
// that unit, otherwise s is an integer counting the base unit.
func parseSuffixed(s, what string, units map[string]int64, size int, unitHelp string) (int64, error) {
	digits, mult := strings.ToLower(s), int64(1)
	if len(digits) >= size {
		if m, ok := units[digits[len(digits)-size:]]; ok {
			digits, mult = digits[:len(digits)-size], m
		}
	}
	n, err := parsePyInt(digits)
	if err != nil {
		if strings.Contains(err.Error(), "out of range") {
			return 0, fmt.Errorf("%s %s is too large", what, quote(s))
		}
		return 0, fmt.Errorf("%s is not a %s (an integer with an optional %s suffix)", quote(s), what, unitHelp)
	}
	if n > math.MaxInt64/mult || n < math.MinInt64/mult {
		return 0, fmt.Errorf("%s %s is too large", what, quote(s))
	}
	return n * mult, nil
}

var byteSizeUnits = map[string]int64{"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}

// parseByteSize converts ZConfig's byte-size.
func parseByteSize(s string) (ByteSize, error) {
	n, err := parseSuffixed(s, "byte size", byteSizeUnits, 2, "KB/MB/GB")
	return ByteSize(n), err
}

var intervalUnits = map[string]int64{"s": 1, "m": 60, "h": 3600, "d": 86400}

// parseInterval converts ZConfig's time-interval (seconds by default).
// ZConfig counts whole seconds without bound; a time.Duration ends after
// some 292 years, beyond which an interval is refused as too large.
func parseInterval(s string) (time.Duration, error) {
	n, err := parseSuffixed(s, "time interval", intervalUnits, 1, "s/m/h/d")
	if err != nil {
		return 0, err
	}
	if n > int64(math.MaxInt64/time.Second) || n < int64(math.MinInt64/time.Second) {
		return 0, fmt.Errorf("time interval %s is too large", quote(s))
	}
	return time.Duration(n) * time.Second, nil
}

// expandUser is Python's os.path.expanduser: "~" and "~/…" use $HOME (or
// the account's home), "~name/…" the home of user name; anything else, or
// an unknown user, is returned as it is.
func expandUser(path string) string {
	if !strings.HasPrefix(path, "~") {
		return path
	}
	i := strings.IndexByte(path, '/')
	if i < 0 {
		i = len(path)
	}
	var home string
	if i == 1 {
		home = os.Getenv("HOME")
		if home == "" {
			u, err := user.Current()
			if err != nil {
				return path
			}
			home = u.HomeDir
		}
	} else {
		u, err := user.Lookup(path[1:i])
		if err != nil {
			return path
		}
		home = u.HomeDir
	}
	if expanded := strings.TrimRight(home, "/") + path[i:]; expanded != "" {
		return expanded
	}
	return "/"
}

// dirName is Python's os.path.dirname: everything before the last "/",
// without trailing slashes unless it is all slashes. Unlike
// filepath.Dir it does not clean the path, so "a/../b" needs "a".
func dirName(path string) string {
	head := path[:strings.LastIndexByte(path, '/')+1]
	if head != strings.Repeat("/", len(head)) {
		head = strings.TrimRight(head, "/")
	}
	return head
}

// parseExistingDirPath converts ZConfig's existing-dirpath.
func parseExistingDirPath(s string) (ExistingDirPath, error) {
	path := expandUser(s)
	dir := dirName(path)
	if dir == "" { // a relative name without a directory
		return ExistingDirPath(path), nil
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", &MissingDirError{Dir: dir, Path: s}
	}
	return ExistingDirPath(path), nil
}

// parseSocketAddress is ZConfig's SocketAddress: a value containing "/" is
// a Unix socket path, anything else an inet address (parseInetAddress).
func parseSocketAddress(s, defaultHost string) (SocketAddress, error) {
	if strings.Contains(s, "/") {
		return SocketAddress{Network: "unix", Path: s}, nil
	}
	return parseInetAddress(s, defaultHost)
}

// parseInetAddress is ZConfig's InetAddress: "host:port", "[v6]:port",
// ":port", an IPv6 address without brackets (no port), a port alone, or a
// host alone; defaultHost replaces an empty host. As in ZConfig, the port is
// read by int(), so "127.0.0.1: 8100" is port 8100, and a number that is no
// port (65536) is a host name.
//
// zeoraid refuses two hosts ZConfig passes on: one containing a blank
// ("a b:80", "127.0.0.1 :80") and one keeping brackets ("[::1]" without a
// port). No resolver knows such names, so runzeo fails on them when it
// binds or connects; here the error comes with the position instead.
func parseInetAddress(s, defaultHost string) (SocketAddress, error) {
	host, port := "", 0
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		h, p := s[:i], s[i+1:]
		switch {
		case strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]"):
			h = h[1 : len(h)-1]
		case strings.Contains(h, ":"): // IPv6 without brackets: no port
			h, p = s, ""
		}
		if p != "" {
			n, err := parsePort(p)
			if err != nil {
				return SocketAddress{}, fmt.Errorf("bad port in address %s: %v", quote(s), err)
			}
			port = n
		}
		host = strings.ToLower(h)
	} else if n, err := parsePort(s); err == nil {
		port = n
	} else {
		if len(strings.Fields(s)) != 1 {
			return SocketAddress{}, fmt.Errorf("%s is not a valid host name", quote(s))
		}
		host = strings.ToLower(s)
	}
	if strings.IndexFunc(host, unicode.IsSpace) >= 0 || strings.ContainsAny(host, "[]") {
		return SocketAddress{}, fmt.Errorf("%s is not a valid host name", quote(host))
	}
	if host == "" {
		host = defaultHost
	}
	return SocketAddress{Network: "tcp", Host: host, Port: port}, nil
}

// parseConnectAddress is socket-connection-address. ZConfig lets the port
// be missing ("localhost", "::1") and leaves the client to fail when it
// dials port None; zeoraid refuses it here, with the position.
func parseConnectAddress(s string) (ConnectAddress, error) {
	a, err := parseSocketAddress(s, "127.0.0.1")
	if err == nil && a.Network == "tcp" && !hasPort(s) {
		if _, nerr := parsePyInt(s); nerr == nil {
			err = fmt.Errorf("address %s has no port: %s is not in 0..65535", quote(s), quote(s))
		} else {
			err = fmt.Errorf("address %s has no port", quote(s))
		}
	}
	return ConnectAddress(a), err
}

// hasPort says whether the inet address s names a port, by ZConfig's rules.
func hasPort(s string) bool {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		_, err := parsePort(s)
		return err == nil
	}
	h := s[:i]
	if strings.Contains(h, ":") && !(strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]")) {
		return false
	}
	return s[i+1:] != ""
}

// parsePort is ZConfig's port-number: an integer 0..65535.
func parsePort(s string) (int, error) {
	n, err := parsePyInt(s)
	if err != nil {
		return 0, fmt.Errorf("%s is not a port number", quote(s))
	}
	if n < 0 || n > 0xffff {
		return 0, fmt.Errorf("%s is not in 0..65535", quote(s))
	}
	return int(n), nil
}

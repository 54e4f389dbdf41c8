package zconfig

import (
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ByteSize is ZConfig's byte-size: an integer with an optional KB, MB or GB
// suffix (case-insensitive, powers of 1024), so "20MB" is 20971520.
type ByteSize int64

// ExistingDirPath is ZConfig's existing-dirpath: a file path whose parent
// directory must exist (the file itself need not). A leading "~" is
// expanded to the home directory, as ZConfig does.
type ExistingDirPath string

// SocketAddress is the common shape of ZConfig's socket addresses: a Unix
// socket (Network "unix", Path) or a TCP address (Network "tcp", Host,
// Port). Host is lower-cased and "" means all interfaces.
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
// system picks a free port, as runzeo does).
type BindAddress SocketAddress

// String returns the address as net.Listen takes it.
func (a BindAddress) String() string { return SocketAddress(a).String() }

// ConnectAddress is ZConfig's socket-connection-address, where a client
// connects: like BindAddress, but a bare port means 127.0.0.1 and a port is
// required (there is nothing to dial without one).
type ConnectAddress SocketAddress

// String returns the address as net.Dial takes it.
func (a ConnectAddress) String() string { return SocketAddress(a).String() }

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

// parseInteger converts ZConfig's integer within bits bits.
func parseInteger(s string, bits int) (int64, error) {
	n, err := strconv.ParseInt(s, 10, bits)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, fmt.Errorf("%s is out of range", quote(s))
		}
		return 0, fmt.Errorf("%s is not an integer", quote(s))
	}
	return n, nil
}

// parseFloat converts ZConfig's float.
func parseFloat(s string) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%s is not a number", quote(s))
	}
	return f, nil
}

// parseSuffixed reads a non-negative integer with an optional unit suffix
// (matched case-insensitively) and returns it times the unit's multiplier.
func parseSuffixed(s, what string, units map[string]int64, unitHelp string) (int64, error) {
	digits, mult := strings.ToLower(s), int64(1)
	for suffix, m := range units {
		if strings.HasSuffix(digits, suffix) {
			digits, mult = strings.TrimSuffix(digits, suffix), m
			break
		}
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n < 0 || digits == "" || digits[0] == '+' {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, fmt.Errorf("%s %s is too large", what, quote(s))
		}
		return 0, fmt.Errorf("%s is not a %s (a non-negative integer with an optional %s suffix)", quote(s), what, unitHelp)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%s %s is too large", what, quote(s))
	}
	return n * mult, nil
}

var byteSizeUnits = map[string]int64{"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}

// parseByteSize converts ZConfig's byte-size.
func parseByteSize(s string) (ByteSize, error) {
	n, err := parseSuffixed(s, "byte size", byteSizeUnits, "KB/MB/GB")
	return ByteSize(n), err
}

var intervalUnits = map[string]int64{"s": 1, "m": 60, "h": 3600, "d": 86400}

// parseInterval converts ZConfig's time-interval (seconds by default).
func parseInterval(s string) (time.Duration, error) {
	n, err := parseSuffixed(s, "time interval", intervalUnits, "s/m/h/d")
	if err != nil {
		return 0, err
	}
	if n > int64(math.MaxInt64/time.Second) {
		return 0, fmt.Errorf("time interval %s is too large", quote(s))
	}
	return time.Duration(n) * time.Second, nil
}

// parseExistingDirPath converts ZConfig's existing-dirpath.
func parseExistingDirPath(s string) (ExistingDirPath, error) {
	path := s
	if path == "~" || strings.HasPrefix(path, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("cannot expand '~' in %s: %v", quote(s), err)
		}
		path = home + path[1:]
	}
	dir := filepath.Dir(path)
	if !strings.ContainsRune(path, filepath.Separator) {
		return ExistingDirPath(path), nil
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("the directory %s of path %s does not exist", quote(dir), quote(s))
	}
	return ExistingDirPath(path), nil
}

// parseSocketAddress converts a socket address; defaultHost replaces an
// empty host, and needPort refuses an address without a port.
func parseSocketAddress(s, defaultHost string, needPort bool) (SocketAddress, error) {
	if strings.Contains(s, "/") {
		return SocketAddress{Network: "unix", Path: s}, nil
	}
	host, port, hasPort := "", 0, false
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		h, p := s[:i], s[i+1:]
		switch {
		case strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]"):
			h = h[1 : len(h)-1]
		case strings.Contains(h, ":"): // an IPv6 address without brackets and port
			h, p = s, ""
		}
		if p != "" {
			n, err := parsePort(p)
			if err != nil {
				return SocketAddress{}, fmt.Errorf("bad port in address %s: %v", quote(s), err)
			}
			port, hasPort = n, true
		}
		host = h
	} else if n, err := parsePort(s); err == nil {
		port, hasPort = n, true
	} else if strings.Trim(s, "0123456789") == "" {
		return SocketAddress{}, fmt.Errorf("bad port in address %s: %v", quote(s), err)
	} else {
		host = s
	}
	if strings.ContainsAny(host, space+"[]") {
		return SocketAddress{}, fmt.Errorf("%s is not a valid host name", quote(host))
	}
	if host == "" {
		host = defaultHost
	}
	if needPort && !hasPort {
		return SocketAddress{}, fmt.Errorf("address %s has no port", quote(s))
	}
	return SocketAddress{Network: "tcp", Host: strings.ToLower(host), Port: port}, nil
}

// parsePort converts a port number (0..65535).
func parsePort(s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, fmt.Errorf("%s is above 65535", quote(s))
		}
		return 0, fmt.Errorf("%s is not a port number", quote(s))
	}
	return int(n), nil
}

//go:build interop

package zconfig_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/interop/pyenv"
	"github.com/zeoraid/zeoraid/zconfig"
)

// decodeAs decodes value as the datatype of T, through Decode as a
// configuration key would be.
func decodeAs[T any](value string) (T, error) {
	var v struct {
		V T `zconfig:"v"`
	}
	err := zconfig.Decode(&zconfig.Section{Type: "t", Keys: []*zconfig.Key{{Name: "v", Value: value}}}, &v)
	return v.V, err
}

// tcp renders a TCP address as zconfig_datatypes.py does; ZConfig's port
// None is 0 here (runzeo's listener binds None as 0, a mail or syslog
// handler without a port uses its protocol's).
func tcp(a zconfig.SocketAddress) string {
	if a.Network == "unix" {
		return "unix:" + a.Path
	}
	return fmt.Sprintf("tcp:%s:%d", a.Host, a.Port)
}

// sameFloat compares our float with Python's repr of ZConfig's, read back
// (NaN equals NaN, and the sign of zero counts).
func sameFloat(goF float64, py string) bool {
	pyF, err := strconv.ParseFloat(py, 64)
	if err != nil {
		return false
	}
	if math.IsNaN(goF) || math.IsNaN(pyF) {
		return math.IsNaN(goF) && math.IsNaN(pyF)
	}
	return goF == pyF && math.Signbit(goF) == math.Signbit(pyF)
}

// datatypes converts a value with our decoder and renders the result as
// zconfig_datatypes.py renders ZConfig's.
var datatypes = map[string]func(string) (string, error){
	"string": func(s string) (string, error) { return decodeAs[string](s) },
	"boolean": func(s string) (string, error) {
		b, err := decodeAs[bool](s)
		return map[bool]string{true: "True", false: "False"}[b], err
	},
	"integer": func(s string) (string, error) {
		n, err := decodeAs[int64](s)
		return strconv.FormatInt(n, 10), err
	},
	"float": func(s string) (string, error) {
		f, err := decodeAs[float64](s)
		return strconv.FormatFloat(f, 'g', -1, 64), err
	},
	"byte-size": func(s string) (string, error) {
		n, err := decodeAs[zconfig.ByteSize](s)
		return strconv.FormatInt(int64(n), 10), err
	},
	"time-interval": func(s string) (string, error) {
		d, err := decodeAs[time.Duration](s)
		return strconv.FormatInt(int64(d/time.Second), 10), err
	},
	"existing-dirpath": func(s string) (string, error) {
		p, err := decodeAs[zconfig.ExistingDirPath](s)
		return string(p), err
	},
	"socket-address": func(s string) (string, error) {
		a, err := decodeAs[zconfig.SocketAddress](s)
		return tcp(a), err
	},
	"socket-binding-address": func(s string) (string, error) {
		a, err := decodeAs[zconfig.BindAddress](s)
		return tcp(zconfig.SocketAddress(a)), err
	},
	"socket-connection-address": func(s string) (string, error) {
		a, err := decodeAs[zconfig.ConnectAddress](s)
		return tcp(zconfig.SocketAddress(a)), err
	},
	"inet-address": func(s string) (string, error) {
		a, err := decodeAs[zconfig.InetAddress](s)
		return tcp(zconfig.SocketAddress(a)), err
	},
	"dotted-name": func(s string) (string, error) {
		n, err := decodeAs[zconfig.DottedName](s)
		return string(n), err
	},
	"logging-level": func(s string) (string, error) {
		l, err := decodeAs[zconfig.LoggingLevel](s)
		return strconv.Itoa(int(l)), err
	},
	"syslog-facility": func(s string) (string, error) {
		f, err := decodeAs[zconfig.SyslogFacility](s)
		return string(f), err
	},
	"log-format-style": func(s string) (string, error) {
		st, err := decodeAs[zconfig.LogFormatStyle](s)
		return string(st), err
	},
	"escaped-string": func(s string) (string, error) {
		e, err := decodeAs[zconfig.EscapedString](s)
		return string(e), err
	},
	// ZConfig splits the URL into (netloc, selector); zeoraid keeps it
	// whole, so only acceptance is compared.
	"http-handler-url": func(s string) (string, error) {
		_, err := decodeAs[zconfig.HTTPLoggerURL](s)
		return "", err
	},
	"get-or-post": func(s string) (string, error) {
		m, err := decodeAs[zconfig.HTTPMethod](s)
		return string(m), err
	},
}

// parityValues are the values each datatype is tried with; dir is a
// directory that exists, home is $HOME.
func parityValues(dir, home string) map[string][]string {
	ints := []string{"0", "42", "-42", "+7", "007", "-0", " 5", "5 ", "1_000", "1__000", "_1", "1_",
		"1.5", "1e3", "0x10", "", "abc", "9223372036854775807", "-9223372036854775808",
		"9223372036854775808", "٤٢", "1 2", "--1", "+-1"}
	addrs := []string{"8100", "127.0.0.1:8100", "127.0.0.1: 8100", "127.0.0.1:+8100", "127.0.0.1:8_100",
		"LocalHost:8100", "localhost", "[::1]:8100", "[::1]", "[::1]:", "::1", "::", "[FE80::1]:8103",
		":8100", "host:", ":", "0", "65535", "65536", "-1", "127.0.0.1:0", "127.0.0.1:65535",
		"127.0.0.1:65536", "127.0.0.1:-1", "host:port", "a b:80", "127.0.0.1 :8100", "a b", "",
		"/run/zeo.sock", "./relative.sock", "var/Zeo.sock", "[::1]x:80", "Zeo.Example:8101", "١٠٠"}
	return map[string][]string{
		"string":  {"Keeps Case  inside", "", "ünïcode"},
		"boolean": {"yes", "YES", "on", "On", "true", "True", "no", "off", "false", "FALSE", "1", "0", "y", "", "maybe", "ye s"},
		"integer": ints,
		"float": {"3.5", "-1e3", "7", "1_000.5", "1__0", ".5", "5.", ".", "1e", "e5", "1E+2", "inf", "-Infinity",
			"nan", "NaN", "+nan", "0x1p3", "1e400", "-1e400", "1e-400", "", "fast", "1,5", "٣.٥", "-0.0", "  2.5 "},
		"byte-size": {"0", "512", "1kb", "1KB", "20MB", "20mb", "2Gb", "10 MB", "10XB", "1.5MB", "1.5GB", "5TB",
			"-1", "-5MB", "kb", "MB", "", "+3kb", "1_0kb", "99999999999GB", "8589934591GB", "8589934592GB", "b", "5b", "0x10"},
		"time-interval": {"0", "90", "0s", "10S", "5m", "5M", "2h", "2H", "1d", "1w", "-5s", "-5", "1.5h", "s",
			"5 m", "1h30m", "", "+7s", "1_0s", "9999999999999d", "106751d", "106752d"},
		"existing-dirpath": {"Data.fs", dir + "/Data.fs", dir + "/", dir, dir + "//x", dir + "/nope/x",
			dir + "/nope/../x", "/nonexistent-zconfig-dir/x", "/x", "~", "~/Data.fs", "~root/x",
			"~no-such-zconfig-user/x", "datatype_parity_test.go/x", "testdata/Data.fs", "./x", ""},
		"socket-address":            addrs,
		"socket-binding-address":    addrs,
		"socket-connection-address": addrs,
		"inet-address":              addrs,
		"dotted-name":               {"logging.Formatter", "zope.exceptions.log.Formatter", "_x", "a.", ".a", "a..b", "1a", "a-b", ""},
		"logging-level": {"info", "INFO", "Warn", "warning", "critical", "fatal", "error", "blather", "debug", "trace",
			"all", "notset", "0", "50", "51", "-1", "-0", "1_0", "+5", "loud", "99", "", "5.0"},
		"syslog-facility":  {"user", "USER", "local0", "Local7", "auth", "authpriv", "security", "local8", "", "kernel"},
		"log-format-style": {"classic", "CLASSIC", "format", "template", "safe-template", "Safe-Template", "bad", ""},
		"escaped-string":   {`a\nb`, `\t\b\f\r`, `\\n`, `\x`, ""},
		"http-handler-url": {"http://localhost/", "HTTP://x/y", "http://x", "https://x/y", "http:///y", "x/y", "http://x/y?q=1#f", ""},
		"get-or-post":      {"GET", "get", "post", "Post", "PUT", ""},
	}
}

// knownDifferences are the values ZConfig accepts and zeoraid refuses; the
// reason is the value. Everything else must agree.
var knownDifferences = map[string]string{}

func init() {
	blank := "a host name with a blank resolves nowhere: runzeo fails when it binds or connects"
	bracket := "'[::1]' keeps its brackets in ZConfig and resolves nowhere"
	for _, dt := range []string{"socket-address", "socket-binding-address", "socket-connection-address", "inet-address"} {
		knownDifferences[dt+" a b:80"] = blank
		knownDifferences[dt+" 127.0.0.1 :8100"] = blank
		knownDifferences[dt+" [::1]"] = bracket
		knownDifferences[dt+" [::1]x:80"] = bracket
	}
	for _, v := range []string{"localhost", "[::1]:", "::1", "::", "host:", ":", "65536", "-1"} {
		knownDifferences["socket-connection-address "+v] = "ZConfig leaves the port None and the client fails when it dials; zeoraid needs a port"
	}
	big := "Python's integers have no bound; zeoraid's are 64 bits"
	knownDifferences["integer 9223372036854775808"] = big
	knownDifferences["byte-size 99999999999GB"] = big
	knownDifferences["byte-size 8589934592GB"] = big
	knownDifferences["time-interval 9999999999999d"] = "a time.Duration ends after some 292 years"
	knownDifferences["time-interval 106752d"] = "a time.Duration ends after some 292 years"
}

// TestDatatypeParityWithZConfig converts the same values with ZConfig's own
// datatypes (one Python process for the whole table) and with ours, and
// checks that both accept or refuse each value alike, with equal results.
func TestDatatypeParityWithZConfig(t *testing.T) {
	py := pyenv.Python(t)
	home := t.TempDir()
	t.Setenv("HOME", home)
	dir := t.TempDir()
	type pair [2]string
	var pairs []pair
	values := parityValues(dir, home)
	for dt := range datatypes {
		if len(values[dt]) == 0 {
			t.Errorf("datatype %s has no values to try", dt)
		}
		for _, v := range values[dt] {
			pairs = append(pairs, pair{dt, v})
		}
	}
	in, _ := json.Marshal(pairs)
	cmd := exec.Command(py, filepath.Join("testdata", "zconfig_datatypes.py"))
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("zconfig_datatypes.py: %v", err)
	}
	var results []struct {
		OK    *string `json:"ok"`
		Error string  `json:"error"`
	}
	if err := json.Unmarshal(out, &results); err != nil || len(results) != len(pairs) {
		t.Fatalf("zconfig_datatypes.py gave %d results for %d values (%v): %s", len(results), len(pairs), err, out)
	}
	agreed, known := 0, 0
	for i, p := range pairs {
		dt, value, want := p[0], p[1], results[i]
		got, gerr := datatypes[dt](value)
		name := fmt.Sprintf("%s %q", dt, value)
		reason, isKnown := knownDifferences[dt+" "+value]
		switch {
		case gerr != nil && want.OK != nil:
			if isKnown {
				known++
				continue
			}
			t.Errorf("%s: ZConfig accepts it (%s), we refuse: %v", name, *want.OK, gerr)
		case gerr == nil && want.OK == nil:
			t.Errorf("%s: ZConfig refuses it (%s), we accept: %s", name, want.Error, got)
		case gerr == nil && dt == "float":
			if !sameFloat(mustFloat(t, dt, value), *want.OK) {
				t.Errorf("%s: ZConfig gives %s, we %s", name, *want.OK, got)
			}
		case gerr == nil && dt != "http-handler-url" && got != *want.OK:
			t.Errorf("%s: ZConfig gives %q, we %q", name, *want.OK, got)
		}
		if isKnown {
			t.Errorf("%s is listed as a known difference (%s) but both agree", name, reason)
		}
		agreed++
	}
	t.Logf("%d values agree with ZConfig, %d are known differences", agreed, known)
}

func mustFloat(t *testing.T, dt, value string) float64 {
	f, err := decodeAs[float64](value)
	if err != nil {
		t.Fatalf("%s %q: %v", dt, value, err)
	}
	return f
}

// recordValue is the fixed record of zconfig_logformat.py.
func recordValue(name string) (zconfig.LogValue, bool) {
	v, ok := map[string]zconfig.LogValue{
		"name": "zeoraid.main", "msg": "hello 'world'", "message": "hello 'world'",
		"args": zconfig.PyObject{Repr: "()"}, "levelname": "INFO", "levelno": int64(20),
		"pathname": "", "filename": "", "module": "", "exc_info": zconfig.PyObject{Repr: "None"},
		"exc_text": zconfig.PyObject{Repr: "None"}, "stack_info": zconfig.PyObject{Repr: "None"},
		"lineno": int64(0), "funcName": "", "created": 1700000000.25, "msecs": 250.0,
		"relativeCreated": 12.5, "thread": int64(0), "threadName": "MainThread",
		"processName": "MainProcess", "process": int64(4242), "asctime": "ASCTIME",
	}[name]
	return v, ok
}

// TestLogFormatParityWithZConfig checks formats with ZConfig's formatter
// factory and ours: both accept or refuse alike, and render a fixed record
// to the same line.
func TestLogFormatParityWithZConfig(t *testing.T) {
	py := pyenv.Python(t)
	type entry struct {
		format    string
		style     string
		arbitrary bool
	}
	var entries []entry
	for _, f := range []string{
		"------\n%(asctime)s %(levelname)s %(name)s %(message)s", "%(message)s", "%(levelname)-8s|%(message)s",
		"%(levelname)8s|%(name).3s|%(name)-10.4s|", "%(levelno)d %(levelno)05d %(levelno)-5d| %(levelno)+d %(levelno) d",
		"%(levelno).3d %(process)x %(process)X %(process)#x %(process)#o %(process)08x %(process)#08x",
		"%(created)f %(created).2f %(msecs)03d %(relativeCreated)e %(created)g %(msecs)g %(msecs)#g %(created)10.1f",
		"%(created)s %(msecs)s %(levelno)s %(args)s %(exc_info)s %(exc_text)r", "%(message)r %(name)r %(levelno)r %(msecs)r",
		"%(levelno)c", "%(process)i %(process)u", "100%% %(message)s", "%(message)s %%", "%(message)ls",
		"%(foo)s", "%(message)d", "%(name)x", "%(created)x", "%(levelname)c", "%(args)d", "%s", "%(message)s %s",
		"%(message)s %", "%(message)", "%(message)y", "%(message)*d", "hello", "", "%%", "%(message)s %(processName)s %(threadName)s %(thread)d",
		"%(a(b)c)s %(message)s",
	} {
		entries = append(entries, entry{f, "classic", false})
	}
	entries = append(entries, entry{"%(foo)s %(message)s", "classic", true}, entry{"%(foo)d", "classic", true}, entry{"%(foo)x", "classic", true})
	for _, f := range []string{"$message", "${levelname} $name: $message", "$$ $message", "$foo", "$ $message", "no fields", "${message}x $levelno $created"} {
		entries = append(entries, entry{f, "template", false}, entry{f, "safe-template", false})
	}
	entries = append(entries, entry{"$foo $message", "template", true})
	// str.format's mini-language is not implemented: zeoraid refuses the
	// format style (a known difference, documented in docs/configuration.md).
	entries = append(entries, entry{"{message}", "format", false}, entry{"{levelname:<8} {message}", "format", false})
	in, _ := json.Marshal(func() (out [][]any) {
		for _, e := range entries {
			out = append(out, []any{e.format, e.style, e.arbitrary})
		}
		return
	}())
	cmd := exec.Command(py, filepath.Join("testdata", "zconfig_logformat.py"))
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("zconfig_logformat.py: %v", err)
	}
	var results []struct {
		OK     *string `json:"ok"`
		Loaded bool    `json:"loaded"`
		Error  string  `json:"error"`
	}
	if err := json.Unmarshal(out, &results); err != nil || len(results) != len(entries) {
		t.Fatalf("zconfig_logformat.py gave %d results for %d formats (%v): %s", len(results), len(entries), err, out)
	}
	for i, e := range entries {
		want := results[i]
		f, err := zconfig.ParseLogFormat(e.format, zconfig.LogFormatStyle(e.style), e.arbitrary)
		name := fmt.Sprintf("%s %q (arbitrary %v)", e.style, e.format, e.arbitrary)
		accepted := want.OK != nil || want.Loaded
		switch {
		case err != nil && accepted && e.style == "format":
			continue
		case err != nil && accepted:
			t.Errorf("%s: ZConfig accepts it, we refuse: %v", name, err)
		case err == nil && !accepted:
			t.Errorf("%s: ZConfig refuses it (%s), we accept it", name, want.Error)
		case err == nil && want.OK != nil:
			if got := f.Format(recordValue); got != *want.OK {
				t.Errorf("%s: ZConfig writes %q, we %q", name, *want.OK, got)
			}
		}
	}
}

package eventlog

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// Levels are Python's thresholds: an entry passes when its Python level is
// at least the configured one.
func TestLevel(t *testing.T) {
	for n, want := range map[zconfig.LoggingLevel]logrus.Level{
		50: logrus.FatalLevel, 41: logrus.FatalLevel, 40: logrus.ErrorLevel, 30: logrus.WarnLevel,
		20: logrus.InfoLevel, 15: logrus.InfoLevel, 10: logrus.DebugLevel, 5: logrus.TraceLevel, 0: logrus.TraceLevel,
	} {
		if got := Level(n); got != want {
			t.Errorf("Level(%d) = %v, want %v", n, got, want)
		}
	}
}

// config decodes a zeo.conf whose <eventlog> is body.
func config(t *testing.T, body string) *stack.Config {
	t.Helper()
	root, err := zconfig.Parse("t.conf", []byte("<zeo>\n address 8100\n</zeo>\n<mappingstorage/>\n<eventlog>\n"+body+"\n</eventlog>\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := stack.DecodeConfig(root)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// A <logfile> gets lines in its Python format with the entry's fields,
// only at or above its level, and survives being moved away (logrotate)
// after Reopen.
func TestLogFileFormatLevelAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zeo.log")
	l, err := New(config(t, "level debug\n<logfile>\n path "+path+"\n format %(levelname)s %(name)s: %(message)s\n level info\n</logfile>").EventLog)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.WithField("node", "main/1").WithField("tid", "0x01").Info("committed")
	l.Debug("not at info")
	b, _ := os.ReadFile(path)
	if string(b) != "INFO zeoraid.main/1: committed node=main/1 tid=0x01\n" {
		t.Fatalf("log file holds %q", b)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Warn("after rotation")
	b, _ = os.ReadFile(path)
	if !strings.Contains(string(b), "WARNING zeoraid: after rotation") {
		t.Fatalf("reopened log holds %q", b)
	}
}

// Record fields beyond the four of the default format, with widths and
// conversions, render as Python's %-formatting does.
func TestFormatRecordFields(t *testing.T) {
	f := &Formatter{Layout: "%(asctime)s.%(msecs)03d %(levelname)-8s|%(levelno)2d|%(name)s|%(process)d|%(message)r", DateFormat: "%d %b %Y %H:%M:%S"}
	e := logrus.NewEntry(logrus.New())
	e.Time = time.Date(2024, 5, 1, 12, 0, 3, 45_000_000, time.UTC)
	e.Level = logrus.WarnLevel
	e.Message = "stale"
	b, err := f.Format(e)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("01 May 2024 12:00:03.045 WARNING |30|zeoraid|%d|'stale'\n", os.Getpid())
	if string(b) != want {
		t.Fatalf("formatted %q, want %q", b, want)
	}
}

// A <syslog> handler sends what Python's SysLogHandler sends to a Unix
// datagram socket: "<PRI>", the formatted line and a NUL; entries below
// its level are not sent.
func TestSyslogUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	daemon, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer daemon.Close()
	l, err := New(config(t, "level debug\n<syslog>\n address "+path+"\n facility LOCAL3\n level info\n format %(levelname)s %(name)s: %(message)s\n</syslog>").EventLog)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Debug("below the handler's level")
	l.WithField("storage", "1").Warn("disk almost full")
	l.Info("second")
	buf := make([]byte, 1024)
	for _, want := range []string{"<156>WARNING zeoraid: disk almost full storage=1\x00", "<158>INFO zeoraid: second\x00"} {
		if err := daemon.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := daemon.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(buf[:n]); got != want {
			t.Errorf("syslog received %q, want %q", got, want)
		}
	}
}

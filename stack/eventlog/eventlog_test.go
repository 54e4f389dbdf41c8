package eventlog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/zeoraid/zeoraid/stack"
)

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]logrus.Level{
		"info": logrus.InfoLevel, "WARN": logrus.WarnLevel, "critical": logrus.ErrorLevel,
		"blather": logrus.DebugLevel, "trace": logrus.TraceLevel, "30": logrus.WarnLevel, "5": logrus.TraceLevel,
	} {
		if got, err := ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"loud", "51", "-1"} {
		if _, err := ParseLevel(bad); err == nil {
			t.Errorf("ParseLevel(%q) accepted", bad)
		}
	}
}

// A <logfile> gets lines in its Python format with the entry's fields,
// only at or above its level, and survives being moved away (logrotate)
// after Reopen.
func TestLogFileFormatLevelAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zeo.log")
	l, err := New(&stack.EventLogOptions{Level: "debug", LogFiles: []*stack.LogFileOptions{{
		Path: path, Format: `%(levelname)s %(name)s: %(message)s`, Level: "info",
	}}})
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

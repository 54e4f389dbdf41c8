package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// zeopack's time rules: now, or today at -t, minus -d days.
func TestPackTime(t *testing.T) {
	now := time.Date(2026, 3, 10, 15, 4, 5, 0, time.Local)
	for _, tc := range []struct {
		at   string
		days int
		want time.Time
	}{
		{"", 0, now},
		{"", 2, now.Add(-48 * time.Hour)},
		{"3", 0, time.Date(2026, 3, 10, 3, 0, 0, 0, time.Local)},
		{"3:30", 1, time.Date(2026, 3, 9, 3, 30, 0, 0, time.Local)},
		{"23:59:58", 0, time.Date(2026, 3, 10, 23, 59, 58, 0, time.Local)},
	} {
		got, err := packTimeOf(now, tc.at, tc.days)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("-t %q -d %d: %v %v, want %v", tc.at, tc.days, got, err, tc.want)
		}
	}
	for _, bad := range []string{"1:2:3:4", "x", "1:y"} {
		if _, err := packTimeOf(now, bad, 0); err == nil || !strings.Contains(err.Error(), "Invalid time value") {
			t.Errorf("-t %q: %v", bad, err)
		}
	}
}

func TestPackServers(t *testing.T) {
	for s, want := range map[string]packTarget{
		"localhost:8100":      {"tcp", "localhost:8100", "1"},
		"10.0.0.1:8100:main":  {"tcp", "10.0.0.1:8100", "main"},
		"zeo.example:9:other": {"tcp", "zeo.example:9", "other"},
	} {
		got, err := parsePackServer(s)
		if err != nil || got != want {
			t.Errorf("%q: %+v %v, want %+v", s, got, err, want)
		}
	}
	for _, bad := range []string{"localhost", "a:b", "a:1:b:c"} {
		if _, err := parsePackServer(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Command-line errors are zeopack's, with exit status 1; no arguments
// print the usage.
func TestPackUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: zeoraid pack"},
		{[]string{"-h", "localhost"}, 1, "a port (-p) must be specified"},
		{[]string{"-t", "25:61:00:1", "localhost:1"}, 1, "Invalid time value"},
		{[]string{"localhost"}, 1, "Invalid server specification"},
		{[]string{"-d", "1"}, 1, "No servers specified."},
	} {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"pack"}, tc.args...), &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("pack %v: exit %d\n%s\nwant exit %d and %q", tc.args, code, stderr.String(), tc.code, tc.want)
		}
	}
}

// A server that cannot be reached is reported and skipped; when none
// could be, the exit status is 1.
func TestPackUnreachable(t *testing.T) {
	old := packConnectTimeout
	packConnectTimeout = 200 * time.Millisecond
	defer func() { packConnectTimeout = old }()
	var stdout, stderr bytes.Buffer
	code := run([]string{"pack", "-u", t.TempDir() + "/no.sock"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "Couldn't connect to") || !strings.Contains(stderr.String(), "Cannot connect to any") {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
}

package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestValidateGolden")

// TestValidateGolden runs `zeoraid validate -C` on every
// testdata/validate/*.conf and compares exit status and output with the
// .golden file next to it. Files named ok-* must validate, err-* must not.
func TestValidateGolden(t *testing.T) {
	t.Setenv("HOME", "/tmp")
	// A missing plugin's error lists the directories searched: make them
	// the same on every machine.
	t.Setenv("PATH", "/nonexistent/bin")
	t.Setenv("ZEORAID_PLUGIN_PATH", "")
	exe, _ := os.Executable()
	wd, _ := os.Getwd()
	stable := strings.NewReplacer(filepath.Dir(exe), "ZEORAID_DIR", wd+"/", "")
	confs, err := filepath.Glob("testdata/validate/*.conf")
	if err != nil || len(confs) < 25 {
		t.Fatalf("want at least 25 golden configs, found %d (%v)", len(confs), err)
	}
	failing := 0
	for _, conf := range confs {
		name := strings.TrimSuffix(filepath.Base(conf), ".conf")
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run([]string{"validate", "-C", conf}, &stdout, &stderr)
			got := stable.Replace("exit " + strconv.Itoa(code) + "\n" + stdout.String() + stderr.String())
			if strings.HasPrefix(name, "ok-") != (code == 0) {
				t.Errorf("exit status %d for %s:\n%s", code, name, got)
			}
			if code != 0 {
				failing++
				for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
					if !strings.HasPrefix(line, conf+":") {
						t.Errorf("error line without file:line:col position: %q", line)
					}
				}
			}
			golden := strings.TrimSuffix(conf, ".conf") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s:\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
	if failing < 25 && !*update {
		t.Errorf("only %d broken configs are rejected; the suite wants at least 25", failing)
	}
}

// Validating creates, opens and writes nothing: not the default
// configuration's var/1 and var/2, nor the Data.fs, blob directory, lock,
// index, pid file or log file of a configuration naming them.
func TestValidateTouchesNothing(t *testing.T) {
	empty := t.TempDir()
	t.Chdir(empty)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"validate"}, &stdout, &stderr); code != 0 {
		t.Fatalf("validate of the default configuration: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "note: serve creates var/1 and var/2") {
		t.Errorf("validate does not say that serve creates the default's directories:\n%s", stdout.String())
	}
	assertEntries(t, empty)

	dir := t.TempDir()
	conf := filepath.Join(dir, "zeo.conf")
	src := "<zeo>\n address " + filepath.Join(dir, "zeo.sock") + "\n pid-filename " + filepath.Join(dir, "zeo.pid") + "\n</zeo>\n" +
		"<filestorage 1>\n path " + filepath.Join(dir, "Data.fs") + "\n blob-dir " + filepath.Join(dir, "blobs") + "\n</filestorage>\n" +
		"<eventlog>\n <logfile>\n  path " + filepath.Join(dir, "zeo.log") + "\n </logfile>\n</eventlog>\n"
	if err := os.WriteFile(conf, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"validate", "-C", conf}, &stdout, &stderr); code != 0 {
		t.Fatalf("validate: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	assertEntries(t, dir, "zeo.conf")
}

// assertEntries fails t unless dir holds exactly names.
func assertEntries(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join(names, " ") {
		t.Errorf("%s holds %q after validate, want %q", dir, got, names)
	}
}

// What validate refuses in <eventlog>, serve refuses too, before it opens
// or listens on anything: both load the configuration with loadConfig.
func TestValidateEventlogRefusalsAreServes(t *testing.T) {
	confs, _ := filepath.Glob("testdata/validate/err-*log*.conf")
	if len(confs) < 10 {
		t.Fatalf("want at least 10 broken log configurations, found %d", len(confs))
	}
	for _, conf := range confs {
		if _, err := serveConfig(conf, "", nil); err == nil {
			t.Errorf("serve accepts %s, which validate refuses", conf)
		}
	}
}

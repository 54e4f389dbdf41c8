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
			got := "exit " + strconv.Itoa(code) + "\n" + stdout.String() + stderr.String()
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

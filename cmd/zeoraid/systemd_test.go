package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const unitFile = "../../examples/systemd/zeoraid.service"

// unitKeys reads a systemd unit file: section → key → values, in order.
func unitKeys(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", path, n, line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	return out
}

// The example unit is what docs/operations.md says: readiness by
// sd_notify, SIGTERM to zeoraid alone (which drains commits and stops its
// plugins), reload by SIGHUP, the serve command of the binary.
func TestSystemdUnitKeys(t *testing.T) {
	u := unitKeys(t, unitFile)
	svc := u["Service"]
	for k, want := range map[string]string{
		"Type":         "notify",
		"NotifyAccess": "main",
		"KillMode":     "mixed",
		"KillSignal":   "SIGTERM",
		"ExecReload":   "/bin/kill -HUP $MAINPID",
		"ExecStart":    "/usr/local/bin/zeoraid serve -C /etc/zeoraid/zeo.conf",
	} {
		if got := svc[k]; len(got) != 1 || got[0] != want {
			t.Errorf("[Service] %s=%v, want %s", k, got, want)
		}
	}
	if got := u["Install"]["WantedBy"]; len(got) != 1 || got[0] != "multi-user.target" {
		t.Errorf("[Install] WantedBy=%v", got)
	}
	// Serve's flags in ExecStart exist.
	var stdout, stderr bytes.Buffer
	run([]string{"serve", "-h"}, &stdout, &stderr)
	for _, a := range strings.Fields(svc["ExecStart"][0])[2:] {
		if strings.HasPrefix(a, "-") && !strings.Contains(stderr.String(), "  "+strings.TrimLeft(a, "-")+" ") && !strings.Contains(stderr.String(), "  -"+strings.TrimLeft(a, "-")+" ") {
			t.Errorf("ExecStart flag %s is not one of serve's:\n%s", a, stderr.String())
		}
	}
}

// systemd-analyze verify accepts the unit (with ExecStart pointing at a
// built binary, since verify checks that it exists).
func TestSystemdUnitVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd): only TestSystemdUnitKeys checks the unit")
	}
	exe := buildBinary(t)
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	unit := filepath.Join(dir, "zeoraid.service")
	must(t, os.WriteFile(unit, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/zeoraid", exe)), 0o644))
	out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "zeoraid.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
}

// The example configuration for the unit validates (with its directories
// made under a temporary root).
func TestSystemdExampleConfig(t *testing.T) {
	b, err := os.ReadFile("../../examples/systemd/zeo.conf")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, d := range []string{"var/lib/zeoraid/a", "var/lib/zeoraid/b", "run/zeoraid"} {
		must(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	s := strings.ReplaceAll(string(b), "/var/lib/zeoraid", filepath.Join(root, "var/lib/zeoraid"))
	s = strings.ReplaceAll(s, "/run/zeoraid", filepath.Join(root, "run/zeoraid"))
	conf := filepath.Join(root, "zeo.conf")
	must(t, os.WriteFile(conf, []byte(s), 0o644))
	var stdout, stderr bytes.Buffer
	if code := run([]string{"validate", "-C", conf}, &stdout, &stderr); code != 0 {
		t.Fatalf("validate: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if strings.Contains(stderr.String(), "formatter") {
		t.Errorf("the JSON formatter is warned about: %s", stderr.String())
	}
}

//go:build interop

package interop

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/interop/pyenv"
)

// demoStep is one block of a README section: shell commands and the
// output their foreground commands print, where "…" stands for anything.
type demoStep struct {
	commands []string
	output   []string
}

// readmeDemo reads the ```sh blocks of the README's section heading and
// the indented output block after each.
func readmeDemo(t *testing.T, heading string) []demoStep {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(pyenv.Top(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## "+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no section %q", "## "+heading)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var steps []demoStep
	lines := strings.Split(section, "\n")
	for i := 0; i < len(lines); i++ {
		switch {
		case lines[i] == "```sh":
			var st demoStep
			for i++; i < len(lines) && lines[i] != "```"; i++ {
				if c := strings.TrimSpace(lines[i]); c != "" && !strings.HasPrefix(c, "#") {
					st.commands = append(st.commands, c)
				}
			}
			steps = append(steps, st)
		case strings.HasPrefix(lines[i], "    ") && len(steps) > 0 && lines[i-1] == "":
			st := &steps[len(steps)-1]
			for ; i < len(lines) && strings.HasPrefix(lines[i], "    "); i++ {
				st.output = append(st.output, strings.TrimPrefix(lines[i], "    "))
			}
		}
	}
	return steps
}

// demoCommands are the README's commands of "A RAID in five minutes" and
// "Change the RAID without a restart", in order. The test runs the
// README's own text; this list makes a changed demo a conscious change.
var demoCommands = []string{
	"mkdir -p var/zeo1 var/zeo2",
	"cp examples/raid-zeo.conf var/zeo.conf",
	".venv/bin/runzeo -a 127.0.0.1:8101 -f var/zeo1/Data.fs &",
	".venv/bin/runzeo -a 127.0.0.1:8102 -f var/zeo2/Data.fs &",
	"go run ./cmd/zeoraid serve -C var/zeo.conf &",
	".venv/bin/python examples/demo_client.py",
	"kill %1",
	".venv/bin/python examples/demo_client.py",
	"go run ./cmd/zeoraid ctl details",
	"rm -r var/zeo1 && mkdir var/zeo1",
	".venv/bin/runzeo -a 127.0.0.1:8101 -f var/zeo1/Data.fs &",
	"go run ./cmd/zeoraid ctl recover 1",
	"go run ./cmd/zeoraid ctl status",

	"mkdir -p var/zeo3",
	".venv/bin/runzeo -a 127.0.0.1:8103 -f var/zeo3/Data.fs &",
	"cp examples/raid-zeo-3.conf var/zeo.conf",
	"go run ./cmd/zeoraid ctl details",
	"go run ./cmd/zeoraid ctl recover 3",
	"echo '<zeoclient 4>' >> var/zeo.conf",
	"go run ./cmd/zeoraid ctl info | tail -1",
	"cp examples/raid-zeo-3.conf var/zeo.conf",
	"go run ./cmd/zeoraid ctl reload",
}

// TestREADMEDemo performs the README's "A RAID in five minutes" and
// then "Change the RAID without a restart" exactly as written (on free
// ports instead of 8100-8103, with the built zeoraid for `go run
// ./cmd/zeoraid`): two runzeo servers, zeoraid in front, a client
// writing, one server stopped, `ctl details` showing it degraded, an empty
// server in its place, `ctl recover 1`, optimal again; then a third
// server added by saving the configuration, recovered, a broken save
// refused, mended, `ctl reload`. Every output the README shows must match.
// A command that saves the served configuration is followed by a wait
// for the reload it causes, as a reader would wait the second it takes.
func TestREADMEDemo(t *testing.T) {
	t.Parallel()
	steps := append(readmeDemo(t, "A RAID in five minutes"), readmeDemo(t, "Change the RAID without a restart")...)
	var all []string
	for _, st := range steps {
		all = append(all, st.commands...)
	}
	if strings.Join(all, "\n") != strings.Join(demoCommands, "\n") {
		t.Fatalf("the README's demo commands changed; update demoCommands (and check the test still does what the README says):\n%s", strings.Join(all, "\n"))
	}
	pyenv.Python(t)
	dir := t.TempDir()
	ports := map[string]string{}
	for _, p := range []string{"8100", "8101", "8102", "8103"} {
		_, port, _ := net.SplitHostPort(freeAddr(t))
		ports[p] = port
	}
	// The working directory: the virtualenv, and the example files with
	// the ports replaced.
	if err := os.Symlink(pyenv.Venv(), filepath.Join(dir, ".venv")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "examples"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"raid-zeo.conf", "raid-zeo-3.conf", "demo_client.py"} {
		b, err := os.ReadFile(filepath.Join(pyenv.Top(), "examples", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "examples", name), []byte(withPorts(string(b), ports)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rewrite := func(c string) string {
		c = strings.ReplaceAll(c, "go run ./cmd/zeoraid ctl", "go run ./cmd/zeoraid ctl -p 8100")
		c = strings.ReplaceAll(c, "go run ./cmd/zeoraid", zeoraidBin)
		return withPorts(c, ports)
	}
	var jobs []*exec.Cmd
	serving := false // zeoraid serve is running: it reloads a saved var/zeo.conf
	t.Cleanup(func() {
		for _, j := range jobs {
			if j.ProcessState == nil {
				_ = j.Process.Signal(syscall.SIGKILL)
				_ = j.Wait()
			}
		}
	})
	for _, st := range steps {
		var out bytes.Buffer
		for _, c := range st.commands {
			cmd := rewrite(c)
			switch {
			case strings.HasSuffix(cmd, " &"):
				cmd = strings.TrimSuffix(cmd, " &")
				j := exec.Command("bash", "-c", "exec "+cmd)
				j.Dir = dir
				j.Env = env(Z5)
				logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("job%d.log", len(jobs)+1)))
				if err != nil {
					t.Fatal(err)
				}
				j.Stdout, j.Stderr = logf, logf
				if err := j.Start(); err != nil {
					t.Fatal(err)
				}
				logf.Close()
				jobs = append(jobs, j)
				port := regexp.MustCompile(`127\.0\.0\.1:(\d+)`).FindStringSubmatch(cmd)
				if port == nil { // zeoraid: its address is in the config
					port = []string{"", ports["8100"]}
					serving = true
				}
				waitListening(t, "127.0.0.1:"+port[1], j)
			case strings.HasPrefix(cmd, "kill %"):
				n, err := strconv.Atoi(strings.TrimPrefix(cmd, "kill %"))
				if err != nil || n < 1 || n > len(jobs) {
					t.Fatalf("%q: no such job", c)
				}
				_ = jobs[n-1].Process.Signal(syscall.SIGTERM)
				_ = jobs[n-1].Wait()
			default:
				var reloaded func()
				if strings.Contains(cmd, "var/zeo.conf") && serving {
					reloaded = nextReload(t, "127.0.0.1:"+ports["8100"])
				}
				sh := exec.Command("bash", "-c", cmd)
				sh.Dir = dir
				sh.Env = env(Z5)
				var stderr bytes.Buffer
				sh.Stdout, sh.Stderr = &out, &stderr
				err := sh.Run()
				var ee *exec.ExitError
				// ctl's exit codes are Nagios states: 2 while degraded.
				if err != nil && !(errors.As(err, &ee) && strings.Contains(cmd, " ctl ") && ee.ExitCode() < 3) {
					t.Fatalf("%q: %v\n%s%s", c, err, out.String(), stderr.String())
				}
				if reloaded != nil {
					reloaded()
				}
			}
		}
		got := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
		if len(st.output) == 0 {
			continue
		}
		want := strings.Split(withPorts(strings.Join(st.output, "\n"), ports), "\n")
		if !matchLines(want, got) {
			t.Fatalf("after\n  %s\nthe output is\n%s\nthe README shows\n%s", strings.Join(st.commands, "\n  "),
				out.String(), strings.Join(want, "\n"))
		}
	}
}

// nextReload returns a function that waits until the zeoraid at addr
// has reloaded its configuration (well or not) after the call to
// nextReload.
func nextReload(t *testing.T, addr string) func() {
	t.Helper()
	last := func() any {
		out, _ := runZeoraid(t, "ctl", "-a", addr, "info", "--json")
		var info struct {
			LastReload struct {
				When any `json:"when"`
			} `json:"last_reload"`
		}
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			t.Fatalf("ctl info --json: %v\n%s", err, out)
		}
		return info.LastReload.When
	}
	before := last()
	return func() {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for last() == before {
			if time.Now().After(deadline) {
				t.Fatal("zeoraid did not reload the saved configuration")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// withPorts replaces the demo's ports with the test's.
func withPorts(s string, ports map[string]string) string {
	for from, to := range ports {
		s = strings.ReplaceAll(s, from, to)
	}
	return s
}

// matchLines compares output lines to the README's, where "…" in a
// README line matches anything.
func matchLines(want, got []string) bool {
	if len(want) != len(got) {
		return false
	}
	for i, w := range want {
		parts := strings.Split(w, "…")
		for j := range parts {
			parts[j] = regexp.QuoteMeta(parts[j])
		}
		if !regexp.MustCompile("^" + strings.Join(parts, ".*") + "$").MatchString(got[i]) {
			return false
		}
	}
	return true
}

// waitListening waits until addr accepts connections, or fails when job
// exits first.
func waitListening(t *testing.T, addr string, job *exec.Cmd) {
	t.Helper()
	exited := make(chan struct{})
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		// Signal 0 only asks whether the process is still there; the
		// goroutine ends with this function.
		for {
			if err := job.Process.Signal(syscall.Signal(0)); err != nil {
				close(exited)
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("%v exited before listening on %s", job.Args, addr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v did not listen on %s", job.Args, addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

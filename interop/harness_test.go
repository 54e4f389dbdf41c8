//go:build interop

package interop

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/interop/pyenv"
)

// zeoraidBin is the binary TestMain builds once for every test here.
var zeoraidBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "zeoraid-interop-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		os.Exit(2)
	}
	zeoraidBin = filepath.Join(dir, "zeoraid")
	build := exec.Command("go", "build", "-o", zeoraidBin, "./cmd/zeoraid")
	build.Dir = pyenv.Top()
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "interop: building zeoraid: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// storageTypes are the section types the built binary registers.
func storageTypes(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command(zeoraidBin, "types").Output()
	if err != nil {
		t.Fatalf("zeoraid types: %v", err)
	}
	types := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^<([A-Za-z0-9_.-]+)>`).FindAllStringSubmatch(string(out), -1) {
		types[m[1]] = true
	}
	return types
}

// Encoding is a wire encoding the server announces.
type Encoding string

// The two ZEO 5 encodings: pickle (Z5) and msgpack (M5, ZEO_MSGPACK=1).
const (
	Z5 Encoding = "Z5"
	M5 Encoding = "M5"
)

// env is the environment for Python processes and the servers they start
// in encoding enc.
func env(enc Encoding, extra ...string) []string {
	e := append(os.Environ(), "ZEORAID_BIN="+zeoraidBin, "PYTHONDONTWRITEBYTECODE=1")
	if enc == M5 {
		e = append(e, "ZEO_MSGPACK=1")
	} else {
		e = append(e, "ZEO_MSGPACK=")
	}
	return append(e, extra...)
}

// testResult is one test's outcome in run_suites.py's result file.
type testResult struct {
	Status  string  `json:"status"`
	Message string  `json:"message"`
	Seconds float64 `json:"seconds"`
}

type suiteResult struct {
	Tests   map[string]testResult `json:"tests"`
	Refused []string              `json:"refused"`
	Running *string               `json:"running"`
}

// suiteJob is one run_suites.py process: a name, the encoding and the
// classes.
type suiteJob struct {
	name    string
	enc     Encoding
	classes []string
}

// runJobs runs every job at once (go test's -parallel defaults to the
// number of cores, while these processes mostly wait on sockets and
// timers), then checks each job's results in a subtest against the
// entries of expected_failures.txt for client ("" for ZEO 6.2 in .venv,
// "zeo54" for the ZEO 5.4 client), and returns them in the order of jobs;
// nil when a job did not complete.
func runJobs(t *testing.T, python, client string, jobs []suiteJob) []suiteResult {
	t.Helper()
	results := make([]suiteResult, len(jobs))
	errs := make([]error, len(jobs))
	took := make([]time.Duration, len(jobs))
	done := make(chan int)
	for i, j := range jobs {
		go func() {
			start := time.Now()
			results[i], errs[i] = runSuites(t, python, j.enc, 3*time.Minute, j.classes)
			took[i] = time.Since(start)
			done <- i
		}()
	}
	for range jobs {
		<-done
	}
	for i, j := range jobs {
		t.Run(j.name, func(t *testing.T) {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			t.Logf("ran in %s", took[i].Round(time.Second))
			checkResults(t, client, j.enc, results[i])
		})
	}
	for _, err := range errs {
		if err != nil {
			return nil
		}
	}
	return results
}

// runSuites runs run_suites.py with python over classes in encoding enc and
// returns the outcome of every test. A test that hangs past perTest is
// recorded as an error and the run resumes after it. It is safe to call
// from several goroutines.
func runSuites(t *testing.T, python string, enc Encoding, perTest time.Duration, classes []string, extraEnv ...string) (suiteResult, error) {
	work := t.TempDir()
	out := filepath.Join(work, "result.json")
	logs := filepath.Join(work, "server-logs")
	var res suiteResult
	for attempt := 0; ; attempt++ {
		args := []string{pyenv.Script("run_suites.py"), "--out", out,
			"--timeout", fmt.Sprint(perTest.Seconds())}
		if attempt > 0 {
			args = append(args, "--resume")
		}
		cmd := exec.Command(python, append(args, classes...)...)
		cmd.Dir = work
		cmd.Env = env(enc, append([]string{"ZEORAID_SERVER_LOGS=" + logs}, extraEnv...)...)
		output, runErr := cmd.CombinedOutput()
		if err := readJSON(out, &res); err != nil {
			return res, fmt.Errorf("run_suites.py (%v) left no result: %v\n%s", runErr, err, tail(output, 4000))
		}
		if res.Running == nil {
			if runErr != nil {
				return res, fmt.Errorf("run_suites.py failed: %v\n%s", runErr, tail(output, 4000))
			}
			return res, nil
		}
		// A hung test: record it and go on with the rest.
		hung := *res.Running
		t.Logf("%s: %s hung; its output:\n%s", enc, hung, tail(output, 6000))
		res.Tests[hung] = testResult{Status: "error", Message: "hung: no result within " + perTest.String()}
		res.Running = nil
		if err := writeJSON(out, res); err != nil {
			return res, err
		}
		if attempt > 20 {
			return res, fmt.Errorf("too many hung tests")
		}
	}
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// expectedFailure is one line of expected_failures.txt.
type expectedFailure struct {
	id     string
	client string   // "" for ZEO 6.2, "zeo54" for the ZEO 5.4 client
	only   Encoding // "" for both encodings
	reason string
	line   int
}

// key is where an entry for test name (an id or "Class.*") of client in
// encoding only ("" for both) is kept in the map loadExpectedFailures
// returns.
func key(client string, only Encoding, name string) string {
	return client + "|" + string(only) + ":" + name
}

// loadExpectedFailures reads interop/expected_failures.txt: one test id per
// line, optionally prefixed "zeo54:" when it concerns the ZEO 5.4 client
// (ZODB 5.8 names its tests check*), then optionally "Z5:" or "M5:" when
// it fails in one encoding only, then "# reason". An id "module.Class.*"
// stands for every test of a class whose server configuration the forker
// refuses (checkResults holds each of them to that). Blank lines and lines
// starting with # are skipped.
func loadExpectedFailures(t *testing.T) map[string]expectedFailure {
	t.Helper()
	path := filepath.Join(pyenv.Top(), "interop", "expected_failures.txt")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]expectedFailure{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, reason, ok := strings.Cut(line, "#")
		id, reason = strings.TrimSpace(id), strings.TrimSpace(reason)
		if !ok || reason == "" || strings.ContainsAny(id, " \t") {
			t.Fatalf("%s:%d: want \"test.id  # reason\", got %q", path, n, line)
		}
		ef := expectedFailure{id: id, reason: reason, line: n}
		if rest, ok := strings.CutPrefix(ef.id, "zeo54:"); ok {
			ef.id, ef.client = rest, "zeo54"
		}
		for _, enc := range []Encoding{Z5, M5} {
			if rest, ok := strings.CutPrefix(ef.id, string(enc)+":"); ok {
				ef.id, ef.only = rest, enc
			}
		}
		k := key(ef.client, ef.only, ef.id)
		if _, dup := out[k]; dup {
			t.Fatalf("%s:%d: %s listed twice", path, n, id)
		}
		out[k] = ef
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// lookup finds the expected failure of client for test id in encoding enc:
// the entry for the test itself, else the one for its class ("Class.*").
// It returns the entry's key in efs.
func lookup(efs map[string]expectedFailure, client string, enc Encoding, id string) (expectedFailure, string, bool) {
	names := []string{id}
	if i := strings.LastIndexByte(id, '.'); i > 0 {
		names = append(names, id[:i]+".*")
	}
	for _, name := range names {
		for _, k := range []string{key(client, enc, name), key(client, "", name)} {
			if ef, ok := efs[k]; ok {
				return ef, k, true
			}
		}
	}
	return expectedFailure{}, "", false
}

// checkListUsed fails t for every entry of expected_failures.txt for
// client that matches no test of results (the outcomes of jobs, all of
// that client), so that the list holds only tests that run and fail today.
func checkListUsed(t *testing.T, client string, jobs []suiteJob, results []suiteResult) {
	t.Helper()
	efs := loadExpectedFailures(t)
	used := map[string]bool{}
	for i, j := range jobs {
		for id := range results[i].Tests {
			if _, k, ok := lookup(efs, client, j.enc, id); ok {
				used[k] = true
			}
		}
	}
	for k, ef := range efs {
		if ef.client == client && !used[k] {
			t.Errorf("expected_failures.txt:%d: %s matches no test that ran: remove it", ef.line, ef.id)
		}
	}
}

// checkResults fails t for every failing test in encoding enc not listed
// as expected for client, for every listed test that ran and passed, and
// for every test listed by its class that failed for another reason than
// a refused configuration.
func checkResults(t *testing.T, client string, enc Encoding, res suiteResult) {
	t.Helper()
	efs := loadExpectedFailures(t)
	ids := make([]string, 0, len(res.Tests))
	for id := range res.Tests {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	counts := map[string]int{}
	for _, id := range ids {
		r := res.Tests[id]
		counts[r.Status]++
		ef, _, listed := lookup(efs, client, enc, id)
		switch {
		case (r.Status == "fail" || r.Status == "error") && !listed:
			t.Errorf("%s: %s: unexpected %s (%.1fs):\n%s", enc, id, r.Status, r.Seconds, r.Message)
		case r.Status == "pass" && listed:
			t.Errorf("%s: %s now passes: remove it from expected_failures.txt (line %d: %s)", enc, id, ef.line, ef.reason)
		case listed && strings.HasSuffix(ef.id, ".*") && !strings.Contains(r.Message, "UnsupportedConfig"):
			t.Errorf("%s: %s fails, but not because its configuration is refused (line %d: %s):\n%s", enc, id, ef.line, ef.reason, r.Message)
		}
	}
	t.Logf("%s: %d tests: %v; refused server configs: %v", enc, len(ids), counts, res.Refused)
}

//go:build interop

package interop

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/builtin/zeoclient"
	"github.com/zeoraid/zeoraid/interop/pyenv"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// zeoChild is a ZEO server serving storage 1 with a blob directory: one
// child of a RAID under test, reached through a <zeoclient>. Usually a
// Python runzeo with a FileStorage; a zeoraid serving a <badgerstorage>
// in a mixed RAID. It keeps its address across kills, so that a
// replacement takes the place of the server it replaces.
type zeoChild struct {
	t    *testing.T
	name string
	addr string
	srv  childServer
}

// childServer is the process behind a zeoChild.
type childServer interface {
	Kill()                 // SIGKILL, and wait until it is gone
	Restart() error        // again on the same address and data
	Replace() error        // again on the same address, with empty storage
	Signal(syscall.Signal) // SIGSTOP, SIGCONT
}

// freeAddr returns a loopback address nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startChild starts runzeo for child name on a port of its own, with an
// empty FileStorage; it is killed at the end of the test.
func startChild(t *testing.T, name string) *zeoChild {
	t.Helper()
	srv := pyenv.StartRunzeo(t, pyenv.RunzeoOptions{Blobs: true, ClientConflictResolution: true})
	return &zeoChild{t: t, name: name, addr: srv.Addr, srv: srv}
}

// start runs the server again on its address: with new empty storage
// when fresh (the replacement of a failed server), else on its data (the
// same server back).
func (z *zeoChild) start(fresh bool) {
	z.t.Helper()
	restart := z.srv.Restart
	if fresh {
		restart = z.srv.Replace
	}
	if err := restart(); err != nil {
		z.t.Fatalf("runzeo %s: %v", z.name, err)
	}
}

// kill sends SIGKILL and waits until the process is gone.
func (z *zeoChild) kill() { z.srv.Kill() }

// signal sends sig (SIGSTOP, SIGCONT) to the running server.
func (z *zeoChild) signal(sig syscall.Signal) { z.srv.Signal(sig) }

// raidOptions are the raidstorage keys of a test RAID.
type raidOptions struct {
	callTimeout string // default 10s
	reads       string // read-distribution, default first
}

// raidConf is a <raidstorage 1> over zeoclient children (blob caches
// under dir). The children do not wait for their server at start-up, so
// that the RAID starts with children down; the RAID gives each
// call-timeout to answer.
func raidConf(dir string, o raidOptions, children ...*zeoChild) string {
	if o.callTimeout == "" {
		o.callTimeout = "10s"
	}
	if o.reads == "" {
		o.reads = "first"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<raidstorage 1>\n  call-timeout %s\n  read-distribution %s\n", o.callTimeout, o.reads)
	for _, c := range children {
		fmt.Fprintf(&b, "  <zeoclient %s>\n    server %s\n    storage 1\n    wait false\n    blob-dir %s\n  </zeoclient>\n",
			c.name, c.addr, filepath.Join(dir, "cache-"+c.name))
	}
	b.WriteString("</raidstorage>\n")
	return b.String()
}

// startRaidAgent starts raid_agent.py against addr.
func startRaidAgent(t *testing.T, python, name, addr string) *agent {
	t.Helper()
	return launchAgent(t, name, Z5, python, pyenv.Script("raid_agent.py"), addr, t.TempDir())
}

// ctl runs `zeoraid ctl -a addr args…` and returns its stdout and exit
// code.
func ctl(t *testing.T, addr string, args ...string) (string, int) {
	t.Helper()
	return runZeoraid(t, append([]string{"ctl", "-a", addr}, args...)...)
}

// runZeoraid runs the zeoraid binary and returns its stdout and exit code.
func runZeoraid(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(zeoraidBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("zeoraid %v: %v", args, err)
	}
	if stderr.Len() > 0 && testing.Verbose() {
		t.Logf("zeoraid %v stderr: %s", args, tail(stderr.Bytes(), 2000))
	}
	return stdout.String(), code
}

// details returns raid_details as child name → state, from `ctl info
// --json`.
func details(t *testing.T, addr string) map[string]string {
	t.Helper()
	out, code := ctl(t, addr, "info", "--json")
	if code == exitUnknown {
		t.Fatalf("ctl info: exit %d: %s", code, out)
	}
	var info struct {
		Children map[string]struct {
			State  string `json:"state"`
			Reason string `json:"reason"`
		} `json:"children"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("ctl info --json: %v\n%s", err, out)
	}
	m := map[string]string{}
	for name, c := range info.Children {
		m[name] = c.State
		if c.Reason != "" {
			m[name] += ": " + c.Reason
		}
	}
	return m
}

// exitUnknown is ctl's exit code for "could not connect or an error".
const exitUnknown = 3

// waitState polls until child name's state (as details gives it) starts
// with prefix, and returns it.
func waitState(t *testing.T, addr, name, prefix string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		d := details(t, addr)
		if strings.HasPrefix(d[name], prefix) {
			return d[name]
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %s is %q after %s, want %q…; all: %v", name, d[name], within, prefix, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// childHistory reads child c's whole history directly from its runzeo
// (not through the RAID): one line per transaction with tid, status,
// user, description, extension and every data record's oid and data hash
// (with blobs, the blob's hash too).
func childHistory(t *testing.T, c *zeoChild, blobs bool) []string {
	t.Helper()
	host, port, _ := net.SplitHostPort(c.addr)
	p, _ := strconv.Atoi(port)
	o := zeoclient.Options{Server: []zconfig.ConnectAddress{{Network: "tcp", Host: host, Port: p}},
		Storage: "1", Wait: true, ReadOnly: true}
	if blobs {
		o.BlobDir = zconfig.ExistingDirPath(t.TempDir())
	}
	log := logrus.New()
	log.SetOutput(os.Stderr)
	log.SetLevel(logrus.ErrorLevel)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := zeoclient.Open(ctx, "direct/"+c.name, o, log)
	if err != nil {
		t.Fatalf("child %s: %v", c.name, err)
	}
	defer s.Close()
	it, ok := stack.AsIterator(s)
	if !ok {
		t.Fatalf("child %s cannot be iterated", c.name)
	}
	ti, err := it.Iterate(ctx, 0, 0)
	if err != nil {
		t.Fatalf("child %s: %v", c.name, err)
	}
	defer ti.Close()
	var out []string
	for {
		tr, ok, err := ti.Next(ctx)
		if err != nil {
			t.Fatalf("child %s: %v", c.name, err)
		}
		if !ok {
			return out
		}
		line := fmt.Sprintf("%s %q %q %q %x |", tr.Tid, tr.Status, tr.User, tr.Description, sha256.Sum256(tr.Extension))
		// The order of records inside a transaction is not part of ZODB's
		// contract (a Badger child keeps them in oid order).
		recs := slices.Clone(tr.Records)
		slices.SortStableFunc(recs, func(a, b stack.DataRecord) int { return cmp.Compare(a.Oid, b.Oid) })
		for _, d := range recs {
			line += fmt.Sprintf(" %s:%x", d.Oid, sha256.Sum256(d.Data))
			if blobs && d.Data != nil {
				path, err := s.LoadBlob(ctx, d.Oid, tr.Tid)
				var nf *stack.NotFoundError
				switch {
				case err == nil:
					b, err := os.ReadFile(path)
					if err != nil {
						t.Fatal(err)
					}
					line += fmt.Sprintf("+blob:%x", sha256.Sum256(b))
				case !errors.As(err, &nf):
					t.Fatalf("child %s: blob of %s@%s: %v", c.name, d.Oid, tr.Tid, err)
				}
			}
		}
		out = append(out, line)
	}
}

// sameHistories fails t unless every child has the same history, of at
// least min transactions, and returns it.
func sameHistories(t *testing.T, blobs bool, min int, children ...*zeoChild) []string {
	t.Helper()
	first := childHistory(t, children[0], blobs)
	if len(first) < min {
		t.Fatalf("child %s has %d transactions, want at least %d", children[0].name, len(first), min)
	}
	for _, c := range children[1:] {
		h := childHistory(t, c, blobs)
		if len(h) != len(first) {
			t.Fatalf("child %s has %d transactions, child %s %d", c.name, len(h), children[0].name, len(first))
		}
		for i := range h {
			if h[i] != first[i] {
				t.Fatalf("transaction %d differs:\nchild %s: %s\nchild %s: %s", i, children[0].name, first[i], c.name, h[i])
			}
		}
	}
	return first
}

// copiedByRecovery returns the "copied" count of the last "recovery
// finished" line in the zeoraid log.
func copiedByRecovery(t *testing.T, srv *server) int {
	t.Helper()
	b, err := os.ReadFile(srv.log)
	if err != nil {
		t.Fatal(err)
	}
	ms := regexp.MustCompile(`recovery finished.*copied=(\d+)`).FindAllStringSubmatch(string(b), -1)
	if len(ms) == 0 {
		t.Fatalf("no \"recovery finished\" line in the server log:\n%s", tail(b, 3000))
	}
	n, _ := strconv.Atoi(ms[len(ms)-1][1])
	return n
}

// waitFile waits until path exists.
func waitFile(t *testing.T, path string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %s", path, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// async sends cmd to a from another goroutine; the answer arrives on the
// channel.
func (a *agent) async(cmd map[string]any) <-chan map[string]any {
	ch := make(chan map[string]any, 1)
	go func() { ch <- a.try(cmd) }()
	return ch
}

// waitConnected waits until zeoraid's log shows the n-th connection of a
// zeoclient to addr.
func waitConnected(t *testing.T, srv *server, addr string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(srv.log)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(string(b), "connected to the ZEO server addr="+addr) >= n {
			time.Sleep(200 * time.Millisecond) // the events it published
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("zeoraid did not connect to %s %d times:\n%s", addr, n, tail(b, 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mkdir(t *testing.T, parts ...string) string {
	t.Helper()
	d := filepath.Join(parts...)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

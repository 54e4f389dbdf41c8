//go:build interop

package interop

// Process-level tests of the RAID (docs/raid.md §11): zeoraid serves a
// <raidstorage> whose children are real Python runzeo processes, killed
// with SIGKILL and replaced, while Python applications (ZODB.DB over
// ClientStorage, interop/python/raid_agent.py) use zeoraid's port.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/builtin/filestorage"
	"github.com/zeoraid/zeoraid/interop/pyenv"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// raidSetup is a zeoraid serving a RAID over runzeo children.
type raidSetup struct {
	t        *testing.T
	py       string
	dir      string
	children []*zeoChild
	srv      *server
	conf     string
}

func newRAIDSetup(t *testing.T, n int, o raidOptions) *raidSetup {
	t.Helper()
	py := pyenv.Python(t)
	rs := &raidSetup{t: t, py: py, dir: t.TempDir()}
	for i := 1; i <= n; i++ {
		rs.children = append(rs.children, startChild(t, fmt.Sprint(i)))
	}
	rs.conf = raidConf(rs.dir, o, rs.children...)
	rs.srv = startServer(t, rs.dir, rs.conf, "127.0.0.1:0", Z5)
	return rs
}

func (rs *raidSetup) addr() string { return rs.srv.addr }

// child returns child name ("1", "2", …).
func (rs *raidSetup) child(name string) *zeoChild {
	for _, c := range rs.children {
		if c.name == name {
			return c
		}
	}
	rs.t.Fatalf("no child %s", name)
	return nil
}

// restart stops zeoraid and starts it again on the same address.
func (rs *raidSetup) restart() {
	addr := rs.srv.addr
	rs.srv.stop()
	rs.srv = startServer(rs.t, rs.dir, rs.conf, addr, Z5)
}

func wantStatus(t *testing.T, addr, want string, code int) {
	t.Helper()
	out, got := ctl(t, addr, "status")
	if strings.TrimSpace(out) != want || got != code {
		t.Fatalf("ctl status = %q, exit %d; want %q, exit %d", strings.TrimSpace(out), got, want, code)
	}
}

// TestRAIDMirror: commits, resolved and unresolvable conflicts, blobs,
// undo and pack through zeoraid reach both runzeo children identically
// (read from each runzeo directly); the management calls and `zeoraid
// ctl` answer with their outputs and exit codes.
func TestRAIDMirror(t *testing.T) {
	t.Parallel()
	rs := newRAIDSetup(t, 2, raidOptions{})
	a := startRaidAgent(t, rs.py, "A", rs.addr())
	a.do(map[string]any{"op": "init"})
	b := startRaidAgent(t, rs.py, "B", rs.addr())

	for i := range 5 {
		a.do(map[string]any{"op": "set", "key": fmt.Sprint("k", i), "value": i})
	}
	if got := b.do(map[string]any{"op": "get", "key": "k4"})["value"]; got != float64(4) {
		t.Fatalf("B reads k4 = %v, want 4", got)
	}

	// A BTree conflict: every child reports it, the client resolves it.
	before := b.do(map[string]any{"op": "resolved"})["resolved"].(float64)
	a.do(map[string]any{"op": "prepare_insert", "keys": []string{"a1", "a2"}})
	b.do(map[string]any{"op": "prepare_insert", "keys": []string{"b1", "b2"}})
	a.do(map[string]any{"op": "commit"})
	b.do(map[string]any{"op": "commit"})
	if after := b.do(map[string]any{"op": "resolved"})["resolved"].(float64); after <= before {
		t.Errorf("B resolved no conflict (%v → %v): the test did not provoke one", before, after)
	}
	if keys := a.do(map[string]any{"op": "tree_keys"})["keys"]; fmt.Sprint(keys) != "[a1 a2 b1 b2]" {
		t.Errorf("tree keys %v, want [a1 a2 b1 b2]", keys)
	}
	// An unresolvable conflict (a PersistentMapping): both children give
	// the same ConflictError, the client gets it, nobody is degraded.
	a.do(map[string]any{"op": "prepare_set", "key": "x", "value": "from A"})
	b.do(map[string]any{"op": "prepare_set", "key": "x", "value": "from B"})
	a.do(map[string]any{"op": "commit"})
	r := b.try(map[string]any{"op": "commit"})
	if r["ok"] == true || !strings.HasPrefix(fmt.Sprint(r["error"]), "ConflictError") {
		t.Fatalf("B's conflicting commit: %v, want a ConflictError", r)
	}
	wantStatus(t, rs.addr(), "optimal", 0)

	// Blobs are stored on every child with their bytes.
	sum := a.do(map[string]any{"op": "blob_set", "key": "b", "size": 300_000, "seed": 7})["sha256"]
	if got := b.do(map[string]any{"op": "blob_get", "key": "b"}); got["sha256"] != sum {
		t.Fatalf("B reads the blob as %v, want sha256 %v", got, sum)
	}

	// Undo is a write like any other: the same undo on every child.
	a.do(map[string]any{"op": "set", "key": "u", "value": "before"})
	a.do(map[string]any{"op": "set", "key": "u", "value": "after", "note": "to undo"})
	a.do(map[string]any{"op": "undo", "description": "to undo"})
	if got := b.do(map[string]any{"op": "get", "key": "u"})["value"]; got != "before" {
		t.Fatalf("after the undo B reads u = %v, want before", got)
	}
	// Undoing it again cannot work: every child refuses alike, nobody
	// is degraded.
	r = a.try(map[string]any{"op": "undo", "description": "to undo"})
	if r["ok"] == true || !strings.Contains(fmt.Sprint(r["error"]), "UndoError") {
		t.Fatalf("undoing an undone transaction: %v, want an UndoError", r)
	}
	wantStatus(t, rs.addr(), "optimal", 0)
	h := sameHistories(t, true, 12, rs.children...)

	// Pack on every child: both lose the same old revisions.
	time.Sleep(1100 * time.Millisecond) // pack time must pass the last commit
	a.do(map[string]any{"op": "set", "key": "u", "value": "packed"})
	a.do(map[string]any{"op": "pack"})
	packed := sameHistories(t, true, 1, rs.children...)
	if recs := func(h []string) int { return strings.Count(strings.Join(h, "\n"), ":") }; recs(packed) >= recs(h) {
		t.Errorf("the pack removed no record: %d records before, %d after", recs(h), recs(packed))
	}
	if got := b.do(map[string]any{"op": "blob_get", "key": "b"}); got["sha256"] != sum {
		t.Fatalf("after the pack B reads the blob as %v, want sha256 %v", got, sum)
	}

	// Management calls through `zeoraid ctl`, with Nagios exit codes.
	out, code := ctl(t, rs.addr(), "details")
	if code != 0 || !strings.Contains(out, "CHILD") || strings.Count(out, "optimal") != 2 {
		t.Fatalf("ctl details = exit %d:\n%s", code, out)
	}
	if out, code := runZeoraid(t, "check", "-t", "2m", "-a", rs.addr()); code != 0 || !strings.Contains(out, "identical") {
		t.Fatalf("zeoraid check = exit %d: %s", code, out)
	}
	if out, code := ctl(t, rs.addr(), "disable", "2"); code != 2 || !strings.Contains(out, "disabled '2'") {
		t.Fatalf("ctl disable 2 = exit %d: %s", code, out)
	}
	wantStatus(t, rs.addr(), "degraded", 2)
	if d := details(t, rs.addr()); d["2"] != "degraded: disabled by controller" || d["1"] != "optimal" {
		t.Fatalf("details after disable: %v", d)
	}
	if _, code := ctl(t, rs.addr(), "disable", "1"); code != exitUnknown {
		t.Fatalf("disabling the last optimal child: exit %d, want %d (refused)", code, exitUnknown)
	}
	a.do(map[string]any{"op": "set", "key": "while disabled", "value": 1})
	if out, code := ctl(t, rs.addr(), "recover", "2"); code != 0 || !strings.Contains(out, "'2' is optimal") {
		t.Fatalf("ctl recover 2 = exit %d: %s", code, out)
	}
	if n := copiedByRecovery(t, rs.srv); n != 1 {
		t.Errorf("the recovery of the disabled child copied %d transactions, want 1 (it resumes)", n)
	}
	if out, code := ctl(t, rs.addr(), "verify", "1", "2"); code != 0 {
		t.Fatalf("ctl verify 1 2 = exit %d: %s", code, out)
	}
	if _, code := ctl(t, rs.addr(), "recover", "2"); code != exitUnknown {
		t.Fatalf("recovering an optimal child: exit %d, want %d", code, exitUnknown)
	}
	if _, code := ctl(t, freeAddr(t), "status"); code != exitUnknown {
		t.Fatalf("ctl status without a server: exit %d, want %d", code, exitUnknown)
	}
	sameHistories(t, true, 1, rs.children...)
}

// TestRAIDKillChild kills a child at three points of a client's commit:
// after its stores reached zeoraid (zeoraid begins on the children at
// vote), during the vote (the child hangs in it, then dies), and between
// vote and finish. Each time the client's transaction succeeds, the child
// is degraded with the failing call in its reason, and the others hold
// the commit.
func TestRAIDKillChild(t *testing.T) {
	t.Parallel()
	rs := newRAIDSetup(t, 4, raidOptions{})
	a := startRaidAgent(t, rs.py, "A", rs.addr())
	a.do(map[string]any{"op": "init"})
	a.do(map[string]any{"op": "set", "key": "warm", "value": 0})
	sync := t.TempDir()
	for i, tc := range []struct {
		at, child, reason string
	}{
		{"stores", "2", "tpc_begin failed: "},
		{"vote", "3", "tpc_vote failed: "},
		{"finish", "4", "tpc_finish failed: "},
	} {
		marker := filepath.Join(sync, tc.at+".paused")
		release := filepath.Join(sync, tc.at+".go")
		pause := tc.at
		if pause == "vote" {
			pause = "stores"
		}
		answer := a.async(map[string]any{"op": "paused", "key": tc.at, "value": i,
			"at": pause, "marker": marker, "release": release})
		waitFile(t, marker, 30*time.Second)
		c := rs.child(tc.child)
		if tc.at == "vote" {
			// Stopped, the child takes the stores and hangs in vote;
			// then it dies while zeoraid waits for its vote.
			c.signal(syscall.SIGSTOP)
			writeFile(t, release)
			time.Sleep(time.Second)
			c.kill()
		} else {
			c.kill()
			time.Sleep(300 * time.Millisecond)
			writeFile(t, release)
		}
		var r map[string]any
		select {
		case r = <-answer:
		case <-time.After(60 * time.Second):
			t.Fatalf("%s: the commit did not end", tc.at)
		}
		if r["ok"] != true {
			t.Fatalf("%s: the client's commit failed: %v", tc.at, r["error"])
		}
		state := waitState(t, rs.addr(), tc.child, "degraded", 10*time.Second)
		if !strings.HasPrefix(state, "degraded: "+tc.reason) {
			t.Errorf("%s: child %s is %q, want the reason %q…", tc.at, tc.child, state, tc.reason)
		}
		if got := a.do(map[string]any{"op": "get", "key": tc.at})["value"]; got != float64(i) {
			t.Errorf("%s: the committed value reads %v, want %d", tc.at, got, i)
		}
	}
	if d := details(t, rs.addr()); d["1"] != "optimal" {
		t.Fatalf("details: %v", d)
	}
	wantStatus(t, rs.addr(), "degraded", 2)
	// The survivor holds every commit.
	h := childHistory(t, rs.child("1"), false)
	if len(h) != 6 { // the root, init, warm and the three commits
		t.Errorf("child 1 has %d transactions, want 6", len(h))
	}
}

// TestRAIDReadFailover: reads go on while children die one by one; with
// the last one gone the RAID has failed and reads fail with a clear error.
func TestRAIDReadFailover(t *testing.T) {
	t.Parallel()
	rs := newRAIDSetup(t, 3, raidOptions{reads: "first"})
	a := startRaidAgent(t, rs.py, "A", rs.addr())
	a.do(map[string]any{"op": "init"})
	a.do(map[string]any{"op": "set", "key": "k", "value": "v"})
	for _, name := range []string{"1", "2"} {
		rs.child(name).kill()
		time.Sleep(200 * time.Millisecond)
		// read-distribution first: the read goes to the dead child
		// first and fails over.
		if r := a.try(map[string]any{"op": "raw_load"}); r["ok"] != true {
			t.Fatalf("after killing child %s the read failed: %v", name, r["error"])
		}
		if s := waitState(t, rs.addr(), name, "degraded", 5*time.Second); !strings.Contains(s, "loadSerial failed: ") {
			t.Errorf("child %s is %q, want degraded by the failed loadSerial", name, s)
		}
	}
	wantStatus(t, rs.addr(), "degraded", 2)
	rs.child("3").kill()
	time.Sleep(200 * time.Millisecond)
	r := a.try(map[string]any{"op": "raw_load"})
	if r["ok"] == true || !strings.Contains(fmt.Sprint(r["error"]), "no optimal child left") {
		t.Fatalf("read with every child dead: %v, want the error naming that no optimal child is left", r)
	}
	wantStatus(t, rs.addr(), "failed", 2)
}

func writeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRAIDRecovery recovers child 2 of two, with blobs in the history:
// back after a brief absence (only the missed transactions are copied),
// diverged by a foreign commit (refused), replaced by an empty server
// (everything copied, blobs through zeoclient's RestoreBlob), and once
// more while it hangs at the start of its recovery (a pack is refused, the
// status is recovering, exit 1).
func TestRAIDRecovery(t *testing.T) {
	t.Parallel()
	rs := newRAIDSetup(t, 2, raidOptions{})
	a := startRaidAgent(t, rs.py, "A", rs.addr())
	a.do(map[string]any{"op": "init"})
	a.do(map[string]any{"op": "blob_set", "key": "b1", "size": 100_000, "seed": 1})
	a.do(map[string]any{"op": "set", "key": "k", "value": 0})
	c2 := rs.child("2")

	// Briefly absent: the same server comes back; 3 commits were missed.
	c2.kill()
	for i := 1; i <= 3; i++ {
		a.do(map[string]any{"op": "set", "key": "k", "value": i})
	}
	if s := details(t, rs.addr())["2"]; !strings.HasPrefix(s, "degraded: tpc_begin failed: ") {
		t.Fatalf("child 2 is %q after its server died", s)
	}
	c2.start(false)
	if out, code := ctl(t, rs.addr(), "recover", "2"); code != 0 || !strings.Contains(out, "'2' is optimal") {
		t.Fatalf("ctl recover 2 = exit %d: %s", code, out)
	}
	if n := copiedByRecovery(t, rs.srv); n != 3 {
		t.Errorf("the recovery copied %d transactions, want the 3 missed ones", n)
	}
	sameHistories(t, true, 6, rs.children...)

	// Diverged: while degraded, child 2 takes a commit from someone else.
	c2.kill()
	a.do(map[string]any{"op": "set", "key": "k", "value": 10})
	c2.start(false)
	direct := startRaidAgent(t, rs.py, "direct", c2.addr)
	direct.do(map[string]any{"op": "set", "key": "foreign", "value": 1})
	a.do(map[string]any{"op": "set", "key": "k", "value": 11})
	// Once zeoraid's zeoclient is back on the server, the foreign commit
	// has been seen while the child was degraded; the recovery finds it.
	waitConnected(t, rs.srv, c2.addr, 3)
	out, code := ctl(t, rs.addr(), "recover", "2")
	if code != 2 || !strings.Contains(out, "'2' is degraded: recovery failed: diverged at 0x") {
		t.Fatalf("recovering a diverged child: exit %d: %s", code, out)
	}

	// Replaced: an empty server in its place gets the whole history.
	c2.kill()
	c2.start(true)
	a.do(map[string]any{"op": "blob_set", "key": "b2", "size": 150_000, "seed": 2})
	if out, code := ctl(t, rs.addr(), "recover", "2"); code != 0 || !strings.Contains(out, "'2' is optimal") {
		t.Fatalf("recovering an empty replacement: exit %d: %s", code, out)
	}
	h := sameHistories(t, true, 10, rs.children...)
	if n := copiedByRecovery(t, rs.srv); n != len(h) {
		t.Errorf("the recovery into an empty server copied %d transactions, want all %d", n, len(h))
	}
	if !strings.Contains(strings.Join(h, "\n"), "+blob:") {
		t.Error("the copied history has no blob")
	}

	// Replaced again, and hanging while its recovery starts.
	c2.kill()
	a.do(map[string]any{"op": "set", "key": "k", "value": 12})
	c2.start(true)
	c2.signal(syscall.SIGSTOP)
	if out, code := ctl(t, rs.addr(), "recover", "2", "--no-wait"); code != 1 || !strings.Contains(out, "recovering '2'") {
		t.Fatalf("ctl recover 2 --no-wait = exit %d: %s", code, out)
	}
	wantStatus(t, rs.addr(), "recovering", 1)
	r := a.try(map[string]any{"op": "pack"})
	if r["ok"] == true || !strings.Contains(fmt.Sprint(r["error"]), "pack refused: the recovery of \"2\" is running") {
		t.Fatalf("pack during a recovery: %v, want it refused", r)
	}
	c2.signal(syscall.SIGCONT)
	waitState(t, rs.addr(), "2", "optimal", 60*time.Second)
	wantStatus(t, rs.addr(), "optimal", 0)
	a.do(map[string]any{"op": "pack"})
	sameHistories(t, true, 1, rs.children...)
	if got := a.do(map[string]any{"op": "blob_get", "key": "b1"}); got["size"] != float64(100_000) {
		t.Fatalf("blob b1 after everything: %v", got)
	}
}

// runClients starts n agents that commit into their own trees for the
// given time, pausing between commits; wait returns every acknowledged [key, value, tid] by tree
// and fails t on any client error.
func runClients(t *testing.T, rs *raidSetup, n int, seconds, pause float64) (wait func() map[string][][]any) {
	t.Helper()
	_, wait = startClients(t, rs, n, map[string]any{"seconds": seconds, "pause": pause})
	return wait
}

// startClients is runClients with the agents' run command given (the
// keys of raid_agent.py's run besides tree and prefix); it returns the
// agents as well.
func startClients(t *testing.T, rs *raidSetup, n int, run map[string]any) ([]*agent, func() map[string][][]any) {
	t.Helper()
	seconds, _ := run["seconds"].(float64)
	var trees []string
	for i := range n {
		trees = append(trees, fmt.Sprint("c", i))
	}
	first := startRaidAgent(t, rs.py, "c0", rs.addr())
	first.do(map[string]any{"op": "init", "trees": trees})
	agents := []*agent{first}
	for _, name := range trees[1:] {
		agents = append(agents, startRaidAgent(t, rs.py, name, rs.addr()))
	}
	answers := make([]<-chan map[string]any, n)
	for i, ag := range agents {
		cmd := map[string]any{"op": "run", "tree": trees[i], "prefix": trees[i]}
		for k, v := range run {
			cmd[k] = v
		}
		answers[i] = ag.async(cmd)
	}
	return agents, func() map[string][][]any {
		t.Helper()
		out := map[string][][]any{}
		for i, ch := range answers {
			var r map[string]any
			select {
			case r = <-ch:
			case <-time.After(time.Duration(seconds)*time.Second + 2*time.Minute):
				t.Fatalf("client %s did not finish", trees[i])
			}
			if r["ok"] != true {
				t.Fatalf("client %s: %v", trees[i], r["error"])
			}
			if errs, _ := r["errors"].([]any); len(errs) > 0 {
				t.Errorf("client %s saw %d errors while a child was up, first: %v", trees[i], len(errs), errs[0])
			}
			acked, _ := r["acked"].([]any)
			for _, e := range acked {
				out[trees[i]] = append(out[trees[i]], e.([]any))
			}
		}
		return out
	}
}

// checkAcked reads every acknowledged commit back through zeoraid.
func checkAcked(t *testing.T, rs *raidSetup, acked map[string][][]any) int {
	t.Helper()
	reader := startRaidAgent(t, rs.py, "reader", rs.addr())
	total := 0
	for tree, entries := range acked {
		pairs := make([][]any, len(entries))
		for i, e := range entries {
			pairs[i] = []any{e[0], e[1]}
		}
		r := reader.do(map[string]any{"op": "check", "tree": tree, "entries": pairs})
		if bad, _ := r["bad"].([]any); len(bad) > 0 {
			t.Errorf("tree %s: %d acknowledged commits not readable, first: %v", tree, len(bad), bad[0])
		}
		if r["size"] != float64(len(entries)) {
			t.Errorf("tree %s has %v entries, %d were acknowledged", tree, r["size"], len(entries))
		}
		total += len(entries)
	}
	return total
}

// TestRAIDRecoveryUnderLoad: an empty replacement of child 3 is recovered
// while 5 clients commit, and converges; then the source of the next
// recovery dies during it: the target goes back to degraded with the
// reason, the source is degraded, clients go on with child 2.
func TestRAIDRecoveryUnderLoad(t *testing.T) {
	t.Parallel()
	rs := newRAIDSetup(t, 3, raidOptions{})
	c3 := rs.child("3")
	c3.kill()
	wait := runClients(t, rs, 5, 12, 0)
	time.Sleep(3 * time.Second)
	c3.start(true)
	if out, code := ctl(t, rs.addr(), "recover", "3"); code != 0 || !strings.Contains(out, "'3' is optimal") {
		t.Fatalf("recovery under load: exit %d: %s", code, out)
	}
	acked := wait()
	n := checkAcked(t, rs, acked)
	h := sameHistories(t, false, n, rs.children...)
	t.Logf("%d commits acknowledged by 5 clients; %d transactions on every child; the recovery copied %d", n, len(h), copiedByRecovery(t, rs.srv))

	// The source dies during the next recovery.
	c3.kill()
	a := startRaidAgent(t, rs.py, "A", rs.addr())
	a.do(map[string]any{"op": "set", "key": "k", "value": 1})
	c3.start(true)
	c3.signal(syscall.SIGSTOP) // the recovery waits for it
	if _, code := ctl(t, rs.addr(), "recover", "3", "--no-wait"); code != 1 {
		t.Fatalf("ctl recover 3 --no-wait: exit %d, want 1", code)
	}
	rs.child("1").kill() // the source: the first optimal child
	c3.signal(syscall.SIGCONT)
	state := waitState(t, rs.addr(), "3", "degraded", 60*time.Second)
	if !strings.HasPrefix(state, "degraded: recovery failed: ") || !strings.Contains(state, "source \"1\"") {
		t.Errorf("target after its source died: %q, want \"recovery failed: source \\\"1\\\": …\"", state)
	}
	if s := details(t, rs.addr())["1"]; !strings.HasPrefix(s, "degraded: ") {
		t.Errorf("the dead source is %q, want degraded", s)
	}
	if r := a.try(map[string]any{"op": "set", "key": "k", "value": 2}); r["ok"] != true {
		t.Fatalf("commit with child 2 left: %v", r["error"])
	}
	wantStatus(t, rs.addr(), "degraded", 2)
}

// TestRAIDRestart restarts zeoraid with children in mixed states (the
// start-up rule of docs/raid.md §4): child 1 (runzeo) up to date, child 2 (runzeo) down,
// child fs (a filestorage) behind. They start optimal, "could not open:
// …" and "missing transactions"; the client reconnects and reads on, and
// both laggards are recovered.
func TestRAIDRestart(t *testing.T) {
	t.Parallel()
	py := pyenv.Python(t)
	rs := &raidSetup{t: t, py: py, dir: t.TempDir()}
	rs.children = []*zeoChild{startChild(t, "1"), startChild(t, "2")}
	fsDir := filepath.Join(rs.dir, "fs")
	if err := os.MkdirAll(fsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := raidConf(rs.dir, raidOptions{callTimeout: "3s"}, rs.children...)
	rs.conf = strings.Replace(conf, "</raidstorage>", fmt.Sprintf(
		"  <filestorage fs>\n    path %s\n    blob-dir %s\n  </filestorage>\n</raidstorage>",
		filepath.Join(fsDir, "Data.fs"), filepath.Join(fsDir, "blobs")), 1)
	rs.srv = startServer(t, rs.dir, rs.conf, "127.0.0.1:0", Z5)
	a := startRaidAgent(t, py, "A", rs.addr())
	a.do(map[string]any{"op": "init"})
	a.do(map[string]any{"op": "set", "key": "k", "value": 1})
	if _, code := ctl(t, rs.addr(), "disable", "fs"); code != 2 {
		t.Fatalf("ctl disable fs: exit %d", code)
	}
	a.do(map[string]any{"op": "set", "key": "k", "value": 2})
	rs.child("2").kill()
	a.do(map[string]any{"op": "set", "key": "k", "value": 3})

	rs.restart()
	want := map[string]string{"1": "optimal", "fs": "degraded: missing transactions"}
	d := details(t, rs.addr())
	for name, state := range want {
		if d[name] != state {
			t.Errorf("after the restart child %s is %q, want %q", name, d[name], state)
		}
	}
	if !strings.HasPrefix(d["2"], "degraded: could not open: ") {
		t.Errorf("after the restart child 2 is %q, want \"degraded: could not open: …\"", d["2"])
	}
	wantStatus(t, rs.addr(), "degraded", 2)
	if r := a.do(map[string]any{"op": "connected", "timeout": 30}); r["connected"] != true {
		t.Fatal("the client did not reconnect after the restart")
	}
	if got := a.do(map[string]any{"op": "get", "key": "k"})["value"]; got != float64(3) {
		t.Fatalf("after the restart the client reads k = %v, want 3", got)
	}
	if out, code := ctl(t, rs.addr(), "recover", "fs"); code != 2 || !strings.Contains(out, "'fs' is optimal") {
		t.Fatalf("ctl recover fs = exit %d (2: child 2 is still degraded): %s", code, out)
	}
	rs.child("2").start(false)
	if out, code := ctl(t, rs.addr(), "recover", "2"); code != 0 || !strings.Contains(out, "'2' is optimal") {
		b, _ := os.ReadFile(rs.srv.log)
		t.Fatalf("ctl recover 2 = exit %d: %s\n%s", code, out, tail(b, 3000))
	}
	a.do(map[string]any{"op": "set", "key": "k", "value": 4})
	sameHistories(t, false, 5, rs.children...)
	if out, code := runZeoraid(t, "check", "-t", "2m", "-a", rs.addr()); code != 0 {
		t.Fatalf("zeoraid check = exit %d: %s", code, out)
	}
}

// writeHistory writes a Data.fs at path whose transactions have the given
// tids, each storing data[i] for oid 0 (the root), through the restore
// path.
func writeHistory(t *testing.T, path string, tids []stack.Tid, data []string) {
	t.Helper()
	s, err := filestorage.Open(path, filestorage.Options{Path: zconfig.ExistingDirPath(path)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for i, tid := range tids {
		txn, err := s.Begin(ctx, stack.TxnMeta{Tid: tid, Status: ' ', Description: []byte("written by the test")})
		if err != nil {
			t.Fatal(err)
		}
		if err := txn.(stack.RestoreTxn).Restore(ctx, 0, []byte(data[i]), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := txn.Vote(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := txn.Finish(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRAIDStartDiverged starts zeoraid on three filestorage children
// written beforehand: two with the same history, one whose last
// transaction has the same tid but other data, one behind. They start
// optimal, "diverged at <tid>" and "missing transactions"; the diverged
// one cannot be recovered, the one behind can.
func TestRAIDStartDiverged(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	t1 := stack.NewTid(0, time.Now().Add(-time.Hour))
	t2 := stack.NewTid(t1, time.Now().Add(-time.Minute))
	paths := map[string]string{}
	for _, name := range []string{"a", "b", "c", "d"} {
		paths[name] = filepath.Join(mkdir(t, dir, name), "Data.fs")
	}
	// Root objects Python can load: an empty PersistentMapping, and one
	// holding x=1.
	root := "\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01X\x04\x00\x00\x00dataq\x02}q\x03s."
	other := "\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01X\x04\x00\x00\x00dataq\x02}q\x03X\x01\x00\x00\x00xq\x04K\x01ss."
	writeHistory(t, paths["a"], []stack.Tid{t1, t2}, []string{root, root})
	writeHistory(t, paths["b"], []stack.Tid{t1, t2}, []string{root, other})
	writeHistory(t, paths["c"], []stack.Tid{t1, t2}, []string{root, root})
	writeHistory(t, paths["d"], []stack.Tid{t1}, []string{root})
	var conf strings.Builder
	conf.WriteString("<raidstorage 1>\n")
	for _, name := range []string{"a", "b", "c", "d"} {
		fmt.Fprintf(&conf, "  <filestorage %s>\n    path %s\n  </filestorage>\n", name, paths[name])
	}
	conf.WriteString("</raidstorage>")
	srv := startServer(t, dir, conf.String(), "127.0.0.1:0", Z5)
	want := map[string]string{"a": "optimal", "b": "degraded: diverged at " + t2.String(), "c": "optimal", "d": "degraded: missing transactions"}
	if d := details(t, srv.addr); fmt.Sprint(d) != fmt.Sprint(want) {
		t.Fatalf("start-up states %v, want %v", d, want)
	}
	if out, code := ctl(t, srv.addr, "recover", "b"); code != 2 || !strings.Contains(out, "'b' is degraded: recovery failed: diverged at "+t2.String()) {
		t.Fatalf("recovering the diverged child: exit %d: %s", code, out)
	}
	if out, code := ctl(t, srv.addr, "recover", "d"); code != 2 || !strings.Contains(out, "'d' is optimal") {
		t.Fatalf("recovering the child behind: exit %d: %s", code, out)
	}
	py := pyenv.Python(t)
	a := startRaidAgent(t, py, "A", srv.addr)
	a.do(map[string]any{"op": "init"})
	a.do(map[string]any{"op": "set", "key": "k", "value": 1})
	if out, code := runZeoraid(t, "check", "-a", srv.addr, "a", "d"); code != 0 {
		t.Fatalf("zeoraid check a d = exit %d: %s", code, out)
	}
}

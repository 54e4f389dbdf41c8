//go:build interop

package interop

// Configuration reloads of a running zeoraid serve (docs/reload.md) while
// Python applications commit and read through it.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/interop/pyenv"
)

// reloadConf is the storage part of the zeo.conf a reload test edits.
type reloadConf struct {
	dir      string
	servers  map[string]string // zeoclient child name -> address
	children []string          // RAID children in order: zeoclient names, "b" (badger), "sq" (plugin)
	reads    string
	timeout  string
	auto     bool
	logLevel string // "" for no <eventlog>
	extra    bool   // a storage "extra"
	second   string // the Data.fs of storage "2nd"
	noPackGC bool   // pack-gc false on "2nd"
	cache1   string // cache-size of zeoclient 1, "" for the default
	label3   string // client-label of zeoclient 3
	broken   string // appended as it is, to break the file
}

// header is the <zeo> section as startServer writes it.
const reloadHeader = "<zeo>\naddress 127.0.0.1:0\n</zeo>\n\n"

func (c reloadConf) storages() string {
	var b strings.Builder
	b.WriteString("%import sqlite\n")
	if c.logLevel != "" {
		fmt.Fprintf(&b, "<eventlog>\n  level %s\n</eventlog>\n", c.logLevel)
	}
	fmt.Fprintf(&b, "<raidstorage 1>\n  read-distribution %s\n  call-timeout %s\n", c.reads, c.timeout)
	if c.auto {
		b.WriteString("  auto-recover true\n")
	}
	for _, name := range c.children {
		switch name {
		case "b":
			fmt.Fprintf(&b, "  <badgerstorage b>\n    path %s\n  </badgerstorage>\n", filepath.Join(c.dir, "data", "badger"))
		case "sq":
			fmt.Fprintf(&b, "  <sqlitestorage sq>\n    path %s\n  </sqlitestorage>\n", filepath.Join(c.dir, "data", "sq.sqlite"))
		default:
			fmt.Fprintf(&b, "  <zeoclient %s>\n    server %s\n    storage 1\n    wait false\n", name, c.servers[name])
			if name == "1" && c.cache1 != "" {
				fmt.Fprintf(&b, "    cache-size %s\n", c.cache1)
			}
			if name == "3" && c.label3 != "" {
				fmt.Fprintf(&b, "    client-label %s\n", c.label3)
			}
			b.WriteString("  </zeoclient>\n")
		}
	}
	b.WriteString("</raidstorage>\n")
	fmt.Fprintf(&b, "<filestorage 2nd>\n  path %s\n", filepath.Join(c.dir, "data", c.second))
	if c.noPackGC {
		b.WriteString("  pack-gc false\n")
	}
	b.WriteString("</filestorage>\n")
	if c.extra {
		b.WriteString("<mappingstorage extra/>\n")
	}
	b.WriteString(c.broken)
	return b.String()
}

// without returns names without name.
func without(names []string, name string) []string {
	var out []string
	for _, n := range names {
		if n != name {
			out = append(out, n)
		}
	}
	return out
}

// reloadLog follows the reload lines of a zeoraid log.
type reloadLog struct {
	t    *testing.T
	path string
	seen int // bytes of the log already looked at
}

var reloadLine = regexp.MustCompile(`(?m)^.*zeoraid (configuration reloaded: |reload refused).*$`)

// next waits until the reload lines logged since the last call contain
// every one of want, and returns them.
func (l *reloadLog) next(want ...string) []string {
	l.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(l.path)
		if err != nil {
			l.t.Fatal(err)
		}
		lines := reloadLine.FindAllString(string(b[l.seen:]), -1)
		text := strings.Join(lines, "\n")
		missing := ""
		for _, w := range want {
			if !strings.Contains(text, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			l.seen = len(b)
			return lines
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("no reload line with %q; reload lines since the step began:\n%s\nlog:\n%s", missing, text, tail(b, 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReloadUnderLoad edits the zeo.conf of a running zeoraid 22 times, as
// editors save (written in place, or a new file renamed over it), and
// reloads it by the file watcher, SIGHUP and `zeoraid ctl reload`, while
// four Python clients commit and read through the RAID: a third mirror
// added and recovered, one removed and added back, read-distribution,
// call-timeout and auto-recover changed, the <eventlog> level changed and
// reverted, a storage added and removed, the file broken twice and
// mended, a <filestorage> and a <zeoclient> child reconfigured in place,
// and the Data.fs of another storage replaced. The RAID's children are
// three runzeo servers (through <zeoclient>), a <badgerstorage> and a
// <sqlitestorage> plugin. Every acknowledged commit is readable at the
// end, zeoraid check finds the children identical, the clients of the
// RAID were never disconnected (counted by their ClientStorage), only
// those of the storages removed or replaced were, and the plugin process
// and the RAID itself were opened once.
func TestReloadUnderLoad(t *testing.T) {
	t.Parallel()
	started := time.Now()
	py := pyenv.Python(t)
	dir := t.TempDir()
	mkdir(t, dir, "data")
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "zeoraid-plugin-sqlite"), "./examples/plugins/sqlitestorage/cmd/zeoraid-plugin-sqlite")
	build.Dir = pyenv.Top()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the sqlite plugin: %v\n%s", err, out)
	}
	zc := map[string]*zeoChild{}
	servers := map[string]string{}
	for _, name := range []string{"1", "2", "3"} {
		zc[name] = startChild(t, name)
		servers[name] = zc[name].addr
	}
	conf := reloadConf{dir: dir, servers: servers, children: []string{"1", "2", "b", "sq"},
		reads: "first", timeout: "30s", second: "2nd-a.fs"}
	rs := &raidSetup{t: t, py: py, dir: dir, children: []*zeoChild{zc["1"], zc["2"], zc["3"]}}
	rs.srv = startServer(t, dir, conf.storages(), "127.0.0.1:0", Z5)
	confPath := filepath.Join(dir, "zeo.conf")
	log := &reloadLog{t: t, path: rs.srv.log}

	// A client of storage 2nd, whose data the test replaces on purpose.
	second := launchAgent(t, "2nd", Z5, py, pyenv.Script("raid_agent.py"), rs.addr(), t.TempDir(), "2nd")
	second.do(map[string]any{"op": "init"})
	stop := filepath.Join(dir, "stop")
	agents, wait := startClients(t, rs, 4, map[string]any{"seconds": 300.0, "pause": 0.05, "stop": stop, "read": true})
	// A failing step ends the clients' runs too (cleanups run last first).
	t.Cleanup(func() { _ = os.WriteFile(stop, nil, 0o644) })

	write := func(style string) {
		t.Helper()
		text := []byte(reloadHeader + conf.storages() + "\n")
		var err error
		switch style {
		case "in place":
			err = os.WriteFile(confPath, text, 0o644)
		case "rename":
			tmp := confPath + ".new"
			if err = os.WriteFile(tmp, text, 0o644); err == nil {
				err = os.Rename(tmp, confPath)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	ctlReload := func(want string) {
		t.Helper()
		out, code := ctl(t, rs.addr(), "reload")
		if code == exitUnknown || !strings.Contains(out, want) {
			t.Fatalf("ctl reload = exit %d: %s, want %q", code, out, want)
		}
	}
	sighup := func() {
		t.Helper()
		if err := rs.srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	recoverChild := func(name string) {
		t.Helper()
		if out, code := ctl(t, rs.addr(), "recover", name); code == exitUnknown || !strings.Contains(out, "'"+name+"' is optimal") {
			t.Fatalf("ctl recover %s = exit %d: %s", name, code, out)
		}
	}
	disconnected := func(a *agent) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for a.do(map[string]any{"op": "connections"})["disconnects"].(float64) < 1 {
			if time.Now().After(deadline) {
				t.Fatalf("the client of %s was not disconnected", a.name)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	var extra *agent
	steps := []struct {
		name  string
		edit  func()
		style string   // "in place" or "rename"; "" for no edit
		then  func()   // the trigger after the edit (nil: the file watcher)
		want  []string // in the reload lines
		after func()
	}{
		{"add child 3", func() { conf.children = []string{"1", "2", "b", "sq", "3"} }, "rename", nil,
			[]string{"child 3 added (degraded: added by reload)"}, func() { recoverChild("3") }},
		{"read-distribution", func() { conf.reads = "random" }, "in place", nil,
			[]string{"read-distribution first -> random"}, nil},
		{"call-timeout", func() { conf.timeout = "20s" }, "rename", nil,
			[]string{"call-timeout 30s -> 20s"}, nil},
		{"log level debug", func() { conf.logLevel = "debug" }, "in place", nil,
			[]string{"<eventlog> replaced"}, nil},
		{"log level back", func() { conf.logLevel = "" }, "rename", nil,
			[]string{"<eventlog> replaced"}, nil},
		{"remove child 2", func() { conf.children = without(conf.children, "2") }, "in place", nil,
			[]string{"child 2 removed (was optimal)"}, nil},
		{"add a storage", func() { conf.extra = true }, "rename", nil,
			[]string{"storage extra added (<mappingstorage>)"}, func() {
				extra = launchAgent(t, "extra", Z5, py, pyenv.Script("raid_agent.py"), rs.addr(), t.TempDir(), "extra")
				extra.do(map[string]any{"op": "init"})
				extra.do(map[string]any{"op": "set", "key": "k", "value": 1})
			}},
		{"remove it", func() { conf.extra = false }, "in place", nil,
			[]string{"storage extra removed (its clients disconnected)"}, func() { disconnected(extra) }},
		{"break a value", func() { conf.reads = "sideways" }, "in place", nil,
			[]string{"reload refused", `zeo.conf:`, `read-distribution "sideways"`}, nil},
		{"mend it", func() { conf.reads = "random" }, "rename", nil,
			[]string{"configuration reloaded: no change"}, nil},
		{"break the syntax", func() { conf.broken = "<mappingstorage broken>\n" }, "in place", nil,
			[]string{"reload refused: ", "zeo.conf:", "is not closed before the end of the file"}, nil},
		{"mend it", func() { conf.broken = "" }, "rename", nil,
			[]string{"configuration reloaded: no change"}, nil},
		{"SIGHUP", nil, "", sighup, []string{"no change changes=1 trigger=SIGHUP"}, nil},
		{"ctl reload", nil, "", func() { ctlReload("no change") }, []string{"no change changes=1 trigger=raid_reload"}, nil},
		{"child 2 back, SIGHUP", func() { conf.children = append(conf.children, "2") }, "in place", sighup,
			[]string{"child 2 added (degraded: added by reload)", "trigger=SIGHUP"}, func() { recoverChild("2") }},
		{"read-distribution, ctl reload", func() { conf.reads = "latency" }, "rename", func() { ctlReload("") },
			[]string{"read-distribution random -> latency", "trigger=raid_reload"}, nil},
		{"replace the data of 2nd", func() { conf.second = "2nd-b.fs" }, "in place", nil,
			[]string{"storage 2nd replaced by a new <filestorage>"}, func() { disconnected(second) }},
		{"filestorage in place", func() { conf.noPackGC = true }, "rename", nil,
			[]string{"2nd: pack-gc true -> false"}, nil},
		{"zeoclient in place", func() { conf.cache1 = "1MB" }, "in place", nil,
			[]string{"cache-size 20971520 -> 1048576"}, nil},
		{"auto-recover", func() { conf.auto = true }, "rename", nil,
			[]string{"auto-recover false -> true"}, nil},
		{"client-label", func() { conf.label3 = "reloaded" }, "in place", nil,
			[]string{`client-label "" -> "reloaded"`}, nil},
		{"SIGHUP again", nil, "", sighup, []string{"no change changes=1 trigger=SIGHUP"}, nil},
	}
	reloads := 0
	for i, st := range steps {
		if st.edit != nil {
			st.edit()
			write(st.style)
		}
		if st.then != nil {
			st.then()
		}
		lines := log.next(st.want...)
		reloads += len(lines)
		t.Logf("step %d, %s (%s): %s", i+1, st.name, st.style, strings.Join(lines, " | "))
		if st.after != nil {
			st.after()
		}
		if d := details(t, rs.addr()); len(d) != len(conf.children) {
			t.Fatalf("after %s the RAID has children %v, the file %v", st.name, d, conf.children)
		}
	}
	if reloads < 20 {
		t.Errorf("%d reloads, want at least 20", reloads)
	}

	writeFile(t, stop)
	acked := wait()
	for _, a := range agents {
		c := a.do(map[string]any{"op": "connections"})
		if c["connects"] != float64(1) || c["disconnects"] != float64(0) {
			t.Errorf("client %s of the RAID: %v connections and %v disconnections, want 1 and 0", a.name, c["connects"], c["disconnects"])
		}
	}
	n := checkAcked(t, rs, acked)
	wantStatus(t, rs.addr(), "optimal", 0)
	if out, code := runZeoraid(t, "check", "-t", "2m", "-a", rs.addr()); code != 0 || !strings.Contains(out, "identical") {
		t.Fatalf("zeoraid check = exit %d: %s", code, out)
	}
	b, err := os.ReadFile(rs.srv.log)
	if err != nil {
		t.Fatal(err)
	}
	for what, line := range map[string]string{"the plugin process": "plugin storage open", "the RAID": "RAID opened"} {
		if k := strings.Count(string(b), line); k != 1 {
			t.Errorf("%s was opened %d times, want once", what, k)
		}
	}
	t.Logf("%d reloads in %d steps; %d commits acknowledged by 4 clients, all readable; %s in all",
		reloads, len(steps), n, time.Since(started).Round(time.Second))
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// Nagios exit codes of `zeoraid ctl` and `zeoraid check`.
const (
	exitOK       = 0 // optimal
	exitWarning  = 1 // recovering
	exitCritical = 2 // degraded or failed
	exitUnknown  = 3 // could not connect, or an error
)

const ctlUsage = `usage: zeoraid ctl [-H host] [-p port] [-a host:port|/unix/socket] [-S storage] [-t timeout] COMMAND [ARGS]
Manages a RAID storage of a running zeoraid server over ZEO (read-only registration).
commands:
  status                 print optimal, degraded, recovering or failed
  details                print every child's state as a table
  recover NAME [rebuild] start recovering NAME and show its progress until it ends
                         (--no-wait: return at once)
  disable NAME           degrade NAME ("disabled by controller")
  verify A B             compare the histories of children A and B
  info [--json]          state, lag, latency and recovery progress of every child, and the
                         server's counters (any storage: a RAID or not)
  reload                 ask the server to re-read its configuration; prints what changed
exit status (Nagios): 0 optimal, 1 recovering, 2 degraded or failed, 3 error`

// ctlTarget is where ctl and check connect.
type ctlTarget struct {
	host, addr, storage string
	port                int
	timeout             time.Duration
}

func (c *ctlTarget) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.host, "H", "127.0.0.1", "server host")
	fs.IntVar(&c.port, "p", 8100, "server port")
	fs.StringVar(&c.addr, "a", "", "server address: host:port or a unix socket path (overrides -H and -p)")
	fs.StringVar(&c.storage, "S", "1", "storage name")
	fs.DurationVar(&c.timeout, "t", 10*time.Second, "connection and call timeout")
}

func (c *ctlTarget) address() (network, address string) {
	if c.addr != "" {
		return zeoproto.SplitAddress(c.addr)
	}
	return "tcp", net.JoinHostPort(c.host, strconv.Itoa(c.port))
}

// raidConn is a read-only registration on the RAID storage.
type raidConn struct {
	c       *zeoproto.Client
	timeout time.Duration
	methods zeoproto.Dict
	info    zeoproto.Dict // get_info of the storage
	last    stack.Tid     // register's answer: the last transaction
	storage string
}

// dial connects, registers read-only and reads the offered extension calls.
func (c *ctlTarget) dial() (*raidConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	network, address := c.address()
	cl, err := zeoproto.Dial(ctx, network, address, zeoproto.ClientOptions{Heartbeat: -1})
	if err != nil {
		return nil, err
	}
	last, err := cl.Register(ctx, c.storage, true)
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("register storage %q: %w", c.storage, err)
	}
	info, err := cl.Call(ctx, "get_info")
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("get_info: %w", err)
	}
	rc := &raidConn{c: cl, timeout: c.timeout, last: last, storage: c.storage}
	if d, ok := info.(zeoproto.Dict); ok {
		rc.info = d
		if m, ok := d.Get("extensionMethods"); ok {
			rc.methods, _ = m.(zeoproto.Dict)
		}
	}
	return rc, nil
}

// call makes a management call the server offers; one it does not offer
// is an error without calling (a Python ZEO server would drop us).
func (rc *raidConn) call(name string, args ...any) (any, error) {
	if _, ok := rc.methods.Get(name); !ok {
		return nil, fmt.Errorf("the server does not offer %s on this storage (not a RAID storage, or an older server)", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), rc.timeout)
	defer cancel()
	return rc.c.Call(ctx, name, args...)
}

func (rc *raidConn) Close() error { return rc.c.Close() }

// statusExit maps a RAID status to the Nagios exit code.
func statusExit(status string) int {
	switch status {
	case "optimal":
		return exitOK
	case "recovering":
		return exitWarning
	case "degraded", "failed":
		return exitCritical
	}
	return exitUnknown
}

func runCtl(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, ctlUsage) }
	var target ctlTarget
	target.flags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUnknown
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return exitUnknown
	}
	cmd, opts, pos := rest[0], map[string]bool{}, []string(nil)
	for _, a := range rest[1:] {
		if strings.HasPrefix(a, "-") {
			opts[strings.TrimLeft(a, "-")] = true
		} else {
			pos = append(pos, a)
		}
	}
	want := map[string][2]int{"status": {0, 0}, "details": {0, 0}, "recover": {1, 2}, "disable": {1, 1}, "verify": {2, 2}, "info": {0, 0}, "reload": {0, 0}}
	n, ok := want[cmd]
	if !ok {
		fmt.Fprintf(stderr, "zeoraid ctl: unknown command %q\n", cmd)
		fs.Usage()
		return exitUnknown
	}
	if len(pos) < n[0] || len(pos) > n[1] {
		fmt.Fprintf(stderr, "zeoraid ctl %s: wrong number of arguments\n", cmd)
		fs.Usage()
		return exitUnknown
	}
	for o := range opts {
		if !(o == "no-wait" && cmd == "recover") && !(o == "json" && cmd == "info") {
			fmt.Fprintf(stderr, "zeoraid ctl %s: unknown option -%s\n", cmd, o)
			return exitUnknown
		}
	}
	rc, err := target.dial()
	if err != nil {
		fmt.Fprintf(stderr, "zeoraid ctl: %v\n", err)
		return exitUnknown
	}
	defer rc.Close()
	code, err := ctlCommand(rc, cmd, pos, opts, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "zeoraid ctl %s: %v\n", cmd, err)
		return exitUnknown
	}
	return code
}

// ctlCommand runs one command on a connection and returns the exit code.
func ctlCommand(rc *raidConn, cmd string, pos []string, opts map[string]bool, stdout, stderr io.Writer) (int, error) {
	status := func() (int, error) {
		s, err := rc.call("raid_status")
		if err != nil {
			return exitUnknown, err
		}
		return statusExit(asString(s)), nil
	}
	switch cmd {
	case "status":
		if _, isRAID := rc.methods.Get("raid_status"); !isRAID {
			// A plain ZEO server (runzeo, or zeoraid without a RAID):
			// reachable is all there is to say, with what it told us.
			length, _ := rc.info.Get("length")
			size, _ := rc.info.Get("size")
			name, _ := rc.info.Get("name")
			fmt.Fprintf(stdout, "reachable (not a RAID): storage %q, last transaction %s, %v objects, %v bytes\n", fmt.Sprint(name), rc.last.String(), length, size)
			return exitOK, nil
		}
		s, err := rc.call("raid_status")
		if err != nil {
			return exitUnknown, err
		}
		fmt.Fprintln(stdout, asString(s))
		return statusExit(asString(s)), nil
	case "details":
		d, err := rc.call("raid_details")
		if err != nil {
			return exitUnknown, err
		}
		printDetails(stdout, toPlain(d))
		return status()
	case "disable":
		r, err := rc.call("raid_disable", pos[0])
		if err != nil {
			return exitUnknown, err
		}
		fmt.Fprintln(stdout, asString(r))
		return status()
	case "reload":
		r, err := rc.call("raid_reload")
		if err != nil {
			return exitUnknown, err
		}
		fmt.Fprintln(stdout, asString(r))
		if _, isRAID := rc.methods.Get("raid_status"); !isRAID {
			return exitOK, nil
		}
		return status()
	case "verify":
		r, err := rc.call("raid_verify", pos[0], pos[1])
		if err != nil {
			return exitUnknown, err
		}
		m, _ := toPlain(r).(map[string]any)
		fmt.Fprintln(stdout, m["message"])
		if m["identical"] == true {
			return exitOK, nil
		}
		return exitCritical, nil
	case "info":
		// The document of docs/operations.md, as the admin endpoint's
		// /status shows it: raid_info for a RAID, with the storage's
		// name, its server_status and the last reload.
		m := map[string]any{}
		_, isRAID := rc.methods.Get("raid_info")
		if isRAID {
			r, err := rc.call("raid_info")
			if err != nil {
				return exitUnknown, err
			}
			m, _ = toPlain(r).(map[string]any)
		}
		m["storage"] = rc.storage
		ctx, cancel := context.WithTimeout(context.Background(), rc.timeout)
		ss, err := rc.c.Call(ctx, "server_status")
		cancel()
		if err != nil {
			return exitUnknown, fmt.Errorf("server_status: %w", err)
		}
		m["server"] = toPlain(ss)
		if _, ok := rc.methods.Get("reload_status"); ok {
			if lr, err := rc.call("reload_status"); err == nil {
				m["last_reload"] = toPlain(lr)
			}
		}
		if opts["json"] {
			b, err := json.MarshalIndent(m, "", "  ")
			if err != nil {
				return exitUnknown, err
			}
			fmt.Fprintln(stdout, string(b))
		} else if isRAID {
			printInfo(stdout, m)
		} else {
			printServerInfo(stdout, m)
		}
		if !isRAID {
			return exitOK, nil
		}
		return statusExit(fmt.Sprint(m["status"])), nil
	case "recover":
		args := []any{pos[0]}
		if len(pos) == 2 {
			args = append(args, pos[1])
		}
		r, err := rc.call("raid_recover", args...)
		if err != nil {
			return exitUnknown, err
		}
		fmt.Fprintln(stdout, asString(r))
		if opts["no-wait"] {
			return status()
		}
		return waitRecovery(rc, pos[0], stdout, stderr)
	}
	return exitUnknown, fmt.Errorf("unknown command %q", cmd)
}

// pollEvery is how often `ctl recover` asks for the progress.
var pollEvery = 250 * time.Millisecond

// waitRecovery shows the recovery of name as a progress bar on stderr
// until the child is optimal (exit 0) or degraded again (exit 2).
func waitRecovery(rc *raidConn, name string, stdout, stderr io.Writer) (int, error) {
	bar := progressbar.NewOptions(100,
		progressbar.OptionSetWriter(stderr),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSetDescription("recovering '"+name+"'"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(stderr) }),
	)
	for {
		r, err := rc.call("raid_info")
		if err != nil {
			return exitUnknown, err
		}
		m, _ := toPlain(r).(map[string]any)
		children, _ := m["children"].(map[string]any)
		ch, ok := children[name].(map[string]any)
		if !ok {
			return exitUnknown, fmt.Errorf("raid_info has no child %q", name)
		}
		switch ch["state"] {
		case "optimal":
			bar.Describe("done")
			_ = bar.Finish()
			fmt.Fprintf(stdout, "'%s' is optimal\n", name)
			return statusExit(fmt.Sprint(m["status"])), nil
		case "degraded":
			_ = bar.Exit()
			fmt.Fprintln(stderr)
			fmt.Fprintf(stdout, "'%s' is degraded: %s\n", name, ch["reason"])
			return exitCritical, nil
		}
		if rec, ok := ch["recovery"].(map[string]any); ok {
			pct, _ := rec["percent"].(float64)
			bar.Describe(describeRecovery(rec))
			_ = bar.Set(int(min(max(pct, 0), 99)))
		}
		time.Sleep(pollEvery)
	}
}

// describeRecovery is the text next to the bar: phase, tid, copied, rate, ETA.
func describeRecovery(rec map[string]any) string {
	s := fmt.Sprintf("%v %v  %v txns %s", rec["phase"], rec["tid"], rec["copied_transactions"], byteSize(rec["copied_bytes"]))
	if rate, _ := rec["rate"].(float64); rate > 0 {
		s += fmt.Sprintf("  %.0f txn/s", rate)
	}
	if eta, _ := rec["eta_seconds"].(float64); eta > 0 {
		s += "  ETA " + (time.Duration(eta) * time.Second).String()
	}
	return s
}

func byteSize(v any) string {
	n, _ := v.(int64)
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func printDetails(w io.Writer, d any) {
	m, _ := d.(map[string]any)
	names := make([]string, 0, len(m))
	width := len("CHILD")
	for k := range m {
		names = append(names, k)
		width = max(width, len(k))
	}
	sort.Strings(names)
	fmt.Fprintf(w, "%-*s  %s\n", width, "CHILD", "STATE")
	for _, k := range names {
		fmt.Fprintf(w, "%-*s  %v\n", width, k, m[k])
	}
}

func printInfo(w io.Writer, m map[string]any) {
	fmt.Fprintf(w, "status %v, last transaction %v, writable %v (write-quorum %v, fail-mode %v, reads %v)\n",
		m["status"], m["last_tid"], m["writable"], m["write_quorum"], m["fail_mode"], m["read_distribution"])
	children, _ := m["children"].(map[string]any)
	names := make([]string, 0, len(children))
	for k := range children {
		names = append(names, k)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "%-8s %-11s %-20s %6s %8s %10s  %s\n", "CHILD", "STATE", "LAST TID", "LAG", "READS", "LATENCY", "REASON")
	for _, k := range names {
		c, _ := children[k].(map[string]any)
		lat, _ := c["latency_ms"].(float64)
		fmt.Fprintf(w, "%-8s %-11v %-20v %6v %8v %8.2fms  %v\n", k, c["state"], c["last_tid"], c["lag"], c["reads"], lat, c["reason"])
		if rec, ok := c["recovery"].(map[string]any); ok {
			pct, _ := rec["percent"].(float64)
			fmt.Fprintf(w, "         recovery from %v: %.0f%% %s\n", rec["source"], pct, describeRecovery(rec))
		}
	}
	if lr, ok := m["last_reload"].(map[string]any); ok {
		fmt.Fprintln(w, describeReload(lr))
	}
}

// printServerInfo is ctl info of a storage that is not a RAID: what the
// server counts for it.
func printServerInfo(w io.Writer, m map[string]any) {
	s, _ := m["server"].(map[string]any)
	fmt.Fprintf(w, "storage %v (not a RAID): last transaction %v, %v connections, %v loads, %v stores, %v commits, %v aborts, %v conflicts\n",
		m["storage"], s["last-transaction"], s["connections"], s["loads"], s["stores"], s["commits"], s["aborts"], s["conflicts"])
	if lr, ok := m["last_reload"].(map[string]any); ok {
		fmt.Fprintln(w, describeReload(lr))
	}
}

// describeReload is the "last reload" line of ctl info: when, what asked
// for it, and its result or error.
func describeReload(lr map[string]any) string {
	when, ok := lr["when"].(float64)
	if !ok {
		return "last reload: none"
	}
	at := time.Unix(0, int64(when*1e9)).Format(time.RFC3339)
	if lr["ok"] != true {
		return fmt.Sprintf("last reload: %s (%v) refused: %v", at, lr["trigger"], lr["error"])
	}
	var changes []string
	if s, ok := lr["summary"].([]any); ok {
		for _, x := range s {
			changes = append(changes, fmt.Sprint(x))
		}
	}
	return fmt.Sprintf("last reload: %s (%v) ok: %s", at, lr["trigger"], strings.Join(changes, "; "))
}

// asString returns a str or bytes reply as a string.
func asString(v any) string {
	if s, ok := zeoproto.AsString(v); ok {
		return s
	}
	return fmt.Sprint(v)
}

// toPlain turns decoded ZEO values into JSON-friendly Go values: dicts
// into maps with string keys, tuples into slices, bytes into strings.
func toPlain(v any) any { return zeoproto.Plain(v) }

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// adminClient talks HTTP to an admin endpoint on a unix socket.
func adminClient(sock string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
}

func httpGet(t *testing.T, c *http.Client, path string) (int, []byte) {
	t.Helper()
	resp, err := c.Get("http://admin" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// notifications listens where $NOTIFY_SOCKET points, as systemd does for
// a Type=notify service, and delivers each datagram.
func notifications(t *testing.T, dir string) <-chan string {
	t.Helper()
	path := filepath.Join(dir, "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	ch := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := l.Read(buf)
			if err != nil {
				close(ch)
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return ch
}

func wantNotification(t *testing.T, ch <-chan string, want string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("systemd got %q, want %q", got, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("systemd was not told %q", want)
	}
}

// serve --admin: /healthz and /readyz answer, /status is every storage's
// `ctl info --json`, /metrics parses and shows the RAID's children;
// systemd hears READY=1 once the port is open and STOPPING=1 at SIGTERM.
func TestServeAdminEndpointAndSystemd(t *testing.T) {
	exe := buildBinary(t)
	dir := t.TempDir()
	notified := notifications(t, dir)
	sock := filepath.Join(dir, "admin.sock")
	conf := filepath.Join(dir, "zeo.conf")
	must(t, os.WriteFile(conf, []byte("<zeo>\n  address 127.0.0.1:0\n</zeo>\n<raidstorage 1>\n  <mappingstorage a/>\n  <mappingstorage b/>\n</raidstorage>\n<mappingstorage plain/>\n"), 0o644))
	cmd, addr := startServe(t, exe, dir, "-C", conf, "--admin", sock, "--no-watch")
	wantNotification(t, notified, "READY=1")
	hc := adminClient(sock)
	if code, body := httpGet(t, hc, "/healthz"); code != 200 || string(body) != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, body := httpGet(t, hc, "/readyz"); code != 200 || string(body) != "ready\n" {
		t.Fatalf("/readyz: %d %q", code, body)
	}
	if code, _ := httpGet(t, hc, "/debug/pprof/cmdline"); code != 404 {
		t.Fatalf("pprof without --admin-pprof: %d", code)
	}

	_, body := httpGet(t, hc, "/status")
	var status map[string]map[string]any
	if err := json.Unmarshal(body, &status); err != nil {
		t.Fatalf("/status: %v\n%s", err, body)
	}
	for _, name := range []string{"1", "plain"} {
		out, code := ctlOut(t, addr, "-S", name, "info", "--json")
		if code != 0 {
			t.Fatalf("ctl -S %s info --json: exit %d\n%s", name, code, out)
		}
		var info map[string]any
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			t.Fatalf("ctl info --json: %v\n%s", err, out)
		}
		// ctl's own connection is counted while it asks, and its
		// registration reads from a child.
		for _, m := range []map[string]any{info, status[name]} {
			delete(m["server"].(map[string]any), "connections")
			children, _ := m["children"].(map[string]any)
			for _, c := range children {
				delete(c.(map[string]any), "reads")
				delete(c.(map[string]any), "latency_ms")
			}
		}
		if !reflect.DeepEqual(info, status[name]) {
			t.Errorf("storage %s: ctl info --json\n%v\n/status\n%v", name, info, status[name])
		}
	}
	if status["1"]["status"] != "optimal" || status["plain"]["status"] != nil || status["plain"]["storage"] != "plain" {
		t.Fatalf("/status: %s", body)
	}

	// Management over loopback is trusted by default.
	if out, code := ctlOut(t, addr, "disable", "b"); code != 2 || !strings.Contains(out, "disabled 'b'") {
		t.Fatalf("ctl disable b: exit %d\n%s", code, out)
	}
	_, body = httpGet(t, hc, "/metrics")
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	states := map[string]float64{}
	for _, m := range mfs["zeoraid_raid_child_state"].GetMetric() {
		l := map[string]string{}
		for _, lp := range m.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		states[l["child"]+" "+l["state"]] = m.GetGauge().GetValue()
	}
	if states["a optimal"] != 1 || states["b degraded"] != 1 || states["b optimal"] != 0 {
		t.Fatalf("child states %v", states)
	}
	if _, ok := mfs["zeoraid_loads_total"]; !ok {
		t.Fatal("no zeoraid_loads_total")
	}

	must(t, cmd.Process.Signal(syscall.SIGTERM))
	wantNotification(t, notified, "STOPPING=1")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("admin socket left behind: %v", err)
	}
}

// With management-trust unix, a TCP client may read but not manage; the
// refusal names the rule.
func TestServeManagementTrust(t *testing.T) {
	exe := buildBinary(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "zeo.conf")
	must(t, os.WriteFile(conf, []byte("<zeo>\n  address 127.0.0.1:0\n  management-trust unix\n</zeo>\n<raidstorage 1>\n  <mappingstorage a/>\n  <mappingstorage b/>\n</raidstorage>\n"), 0o644))
	_, addr := startServe(t, exe, dir, "-C", conf, "--no-watch")
	out, code := ctlOut(t, addr, "disable", "b")
	if code != 3 || !strings.Contains(out, "raid_disable refused") || !strings.Contains(out, "management-trust (unix)") {
		t.Fatalf("untrusted disable: exit %d\n%s", code, out)
	}
	if out, code := ctlOut(t, addr, "reload"); code != 3 || !strings.Contains(out, "raid_reload refused") {
		t.Fatalf("untrusted reload: exit %d\n%s", code, out)
	}
	if out, code := ctlOut(t, addr, "details"); code != 0 || !strings.Contains(out, "optimal") {
		t.Fatalf("details stay open: exit %d\n%s", code, out)
	}
	if out, code := ctlOut(t, addr, "info"); code != 0 || !strings.Contains(out, "last reload: none") {
		t.Fatalf("info (with reload_status) stays open: exit %d\n%s", code, out)
	}
}

// A bad management-trust is refused at start with its position.
func TestServeBadManagementTrust(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "zeo.conf")
	must(t, os.WriteFile(conf, []byte("<zeo>\n  address 127.0.0.1:0\n  management-trust loopback cert:XX=1\n</zeo>\n<mappingstorage/>\n"), 0o644))
	var stdout, stderr bytes.Buffer
	if code := run([]string{"serve", "-C", conf}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "zeo.conf:3:20:") {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
}

func ctlOut(t *testing.T, addr string, args ...string) (string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"ctl", "-a", addr}, args...), &stdout, &stderr)
	return stdout.String() + stderr.String(), code
}

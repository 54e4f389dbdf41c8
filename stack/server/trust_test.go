package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/stack/tlstest"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// trustServer serves a RAID of two mappingstorages (children a and b) as
// storage "1" on a listener of network, with management-trust rules and
// the server extensions raid_reload (privileged) and reload_status (read
// only). It returns the address to dial.
func trustServer(t *testing.T, rules string, network string, tlsConf *tls.Config) string {
	t.Helper()
	trust, err := stack.ParseManagementTrust(rules)
	if err != nil {
		t.Fatal(err)
	}
	log, _ := test.NewNullLogger()
	a, b := mappingstorage.New("a", log), mappingstorage.New("b", log)
	o := raidstorage.DefaultOptions()
	r, err := raidstorage.Open(context.Background(), raidstorage.Config{Path: "1", Names: []string{"a", "b"}, Children: []stack.Storage{a, b}, Options: o, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	called := func(ctx context.Context, args []any) (any, error) { return "called", nil }
	srv := server.New([]*stack.Mount{stack.NewMount("1", r)}, server.Options{
		Log: log, Trust: trust, TLS: tlsConf,
		Extensions:         map[string]stack.Extension{"raid_reload": called, "reload_status": called},
		ReadOnlyExtensions: []string{"reload_status"},
	})
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "zeo.sock")
	}
	l, err := server.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
		r.Close()
		a.Close()
		b.Close()
	})
	return l.Addr().String()
}

func dialTrust(t *testing.T, network, addr string, tlsConf *tls.Config) *zeoproto.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := zeoproto.Dial(ctx, network, addr, zeoproto.ClientOptions{TLS: tlsConf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Register(ctx, "1", true); err != nil {
		t.Fatal(err)
	}
	return c
}

func call(c *zeoproto.Client, name string, args ...any) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Call(ctx, name, args...)
}

// wantManagement checks that the state-changing calls are accepted (ok)
// or refused with an error naming the rules and the peer, and that the
// read-only ones and a plain pack are always accepted.
func wantManagement(t *testing.T, c *zeoproto.Client, ok bool, rules, peer string) {
	t.Helper()
	if _, err := call(c, "pack", float64(time.Now().Unix()), true); err != nil {
		t.Errorf("plain pack, as ZODB's db.pack() sends it: %v", err)
	}
	for _, m := range []struct {
		name string
		args []any
	}{{"raid_disable", []any{"b"}}, {"raid_recover", []any{"b"}}, {"raid_reload", nil}} {
		_, err := call(c, m.name, m.args...)
		switch {
		case ok && err != nil && strings.Contains(err.Error(), "management-trust"):
			t.Errorf("%s refused on a trusted connection: %v", m.name, err)
		case !ok && err == nil:
			t.Errorf("%s accepted on an untrusted connection", m.name)
		case !ok && !(strings.Contains(err.Error(), m.name+" refused") && strings.Contains(err.Error(), "management-trust ("+rules+")") && strings.Contains(err.Error(), peer)):
			t.Errorf("%s: refusal does not name the call, the rules (%s) and the peer (%s): %v", m.name, rules, peer, err)
		}
	}
	for _, name := range []string{"raid_status", "raid_details", "raid_info", "reload_status"} {
		if _, err := call(c, name); err != nil {
			t.Errorf("read-only %s: %v", name, err)
		}
	}
	if _, err := call(c, "raid_verify", "a", "b"); err != nil {
		t.Errorf("read-only raid_verify: %v", err)
	}
}

func TestManagementTrustTCP(t *testing.T) {
	for _, tc := range []struct {
		rules string
		ok    bool
	}{
		{stack.DefaultManagementTrust, true},
		{"loopback", true},
		{"127.0.0.0/8", true},
		{"127.0.0.1", true},
		{"any", true},
		{"10.0.0.0/8", false},
		{"unix", false},
		{"none", false},
		{"cert:CN=ops", false},
	} {
		t.Run(tc.rules, func(t *testing.T) {
			addr := trustServer(t, tc.rules, "tcp", nil)
			wantManagement(t, dialTrust(t, "tcp", addr, nil), tc.ok, tc.rules, "from 127.0.0.1:")
		})
	}
}

func TestManagementTrustUnix(t *testing.T) {
	for _, tc := range []struct {
		rules string
		ok    bool
	}{
		{stack.DefaultManagementTrust, true},
		{"unix", true},
		{"loopback", false},
		{"0.0.0.0/0", false},
	} {
		t.Run(tc.rules, func(t *testing.T) {
			addr := trustServer(t, tc.rules, "unix", nil)
			wantManagement(t, dialTrust(t, "unix", addr, nil), tc.ok, tc.rules, "unix socket")
		})
	}
}

// A TLS client is trusted by its verified certificate's subject.
func TestManagementTrustCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, _, _ := tlstest.Issue(t, dir, "ca", nil, nil)
	_, _, srvCert, srvKey := tlstest.Issue(t, dir, "server", ca, caKey)
	_, _, opsCert, opsKey := tlstest.Issue(t, dir, "ops", ca, caKey)
	_, _, otherCert, otherKey := tlstest.Issue(t, dir, "stranger", ca, caKey)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	sc, err := tls.LoadX509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	serverTLS := &tls.Config{Certificates: []tls.Certificate{sc}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12}
	client := func(cert, key string) *tls.Config {
		cc, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cc}, RootCAs: pool, ServerName: "zeo.example"}
	}
	const rules = "cert:CN=ops unix"
	addr := trustServer(t, rules, "tcp", serverTLS)
	t.Run("ops", func(t *testing.T) {
		wantManagement(t, dialTrust(t, "tcp", addr, client(opsCert, opsKey)), true, rules, "")
	})
	t.Run("stranger", func(t *testing.T) {
		wantManagement(t, dialTrust(t, "tcp", addr, client(otherCert, otherKey)), false, rules, "certificate CN=stranger")
	})
}

func TestParseManagementTrust(t *testing.T) {
	for _, bad := range []string{"", "loopbak", "10.0.0.0/33", "cert:", "cert:XX=1", "cert:CN", "any unix", "none loopback", "300.1.1.1"} {
		if _, err := stack.ParseManagementTrust(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	tr, err := stack.ParseManagementTrust("loopback unix 10.0.0.0/8 192.0.2.7 cert:CN=ops,O=Example")
	if err != nil {
		t.Fatal(err)
	}
	if tr.String() != "loopback unix 10.0.0.0/8 192.0.2.7 cert:CN=ops,O=Example" || len(tr) != 5 {
		t.Fatalf("parsed %v", tr)
	}
	if !tr[3].Network.Contains(net.ParseIP("192.0.2.7")) || tr[3].Network.Contains(net.ParseIP("192.0.2.8")) {
		t.Fatal("a single address is a /32")
	}
	if none, _ := stack.ParseManagementTrust("none"); none == nil || len(none) != 0 || none.String() != "none" {
		t.Fatalf("none parsed as %#v", none)
	}
}

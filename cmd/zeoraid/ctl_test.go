package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/builtin/raidstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/server"
)

// raidServer serves a RAID of two mappingstorage children as storage "1"
// on a loopback port and returns its address.
func raidServer(t *testing.T) (string, *raidstorage.Storage) {
	t.Helper()
	log := logrus.New()
	log.SetLevel(logrus.PanicLevel)
	a, b := mappingstorage.New("a", nil), mappingstorage.New("b", nil)
	r, err := raidstorage.Open(context.Background(), raidstorage.Config{Path: "1", Names: []string{"1", "2"},
		Children: []stack.Storage{a, b}, Options: raidstorage.DefaultOptions(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New([]*stack.Mount{stack.NewMount("1", r)}, server.Options{Log: log})
	l, err := server.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
		r.Close()
		a.Close()
		b.Close()
	})
	// One commit, so that verify has something to compare.
	ctx := context.Background()
	txn, err := r.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Store(ctx, 0, 0, []byte("root")); err != nil {
		t.Fatal(err)
	}
	if _, err := txn.Vote(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := txn.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	return l.Addr().String(), r
}

func ctl(t *testing.T, addr string, args ...string) (string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"ctl", "-a", addr}, args...), &stdout, &stderr)
	return stdout.String() + stderr.String(), code
}

func TestCtl(t *testing.T) {
	addr, r := raidServer(t)
	expect := func(wantCode int, wantOut string, args ...string) string {
		t.Helper()
		out, code := ctl(t, addr, args...)
		if code != wantCode || !strings.Contains(out, wantOut) {
			t.Fatalf("ctl %v: exit %d, output:\n%s\nwant exit %d and %q", args, code, out, wantCode, wantOut)
		}
		return out
	}
	expect(0, "optimal\n", "status")
	expect(0, "CHILD  STATE\n1      optimal\n2      optimal\n", "details")
	expect(2, "disabled '2'", "disable", "2")
	expect(2, "degraded\n", "status")
	expect(2, "2      failed: disabled by controller\n", "details")
	expect(3, "last optimal child", "disable", "1")
	out := expect(2, `"status": "degraded"`, "info", "--json")
	var info map[string]any
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("info --json is no JSON: %v\n%s", err, out)
	}
	if c := info["children"].(map[string]any)["2"].(map[string]any); c["reason"] != "disabled by controller" {
		t.Fatalf("info child 2 = %v", c)
	}
	expect(2, "LAST TID", "info")
	expect(0, "'2' is optimal", "recover", "2")
	expect(0, "optimal\n", "status")
	expect(0, "'1' and '2' are identical: 1 transactions", "verify", "1", "2")
	expect(3, "not degraded", "recover", "2")
	expect(3, "does not offer raid_reload", "reload")
	expect(3, "unknown command", "frobnicate")

	// --no-wait returns once the recovery started.
	expect(2, "disabled '2'", "disable", "2")
	out, code := ctl(t, addr, "recover", "2", "--no-wait")
	if !strings.Contains(out, "recovering '2'") || (code != 0 && code != 1) {
		t.Fatalf("recover --no-wait: exit %d\n%s", code, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.Status() != raidstorage.StatusOptimal && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}

	var stdout, stderr bytes.Buffer
	if code := run([]string{"check", "-a", addr}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "identical") {
		t.Fatalf("check: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
}

func TestCtlCannotConnect(t *testing.T) {
	out, code := ctl(t, "127.0.0.1:1", "status")
	if code != 3 || !strings.Contains(out, "zeoraid ctl:") {
		t.Fatalf("exit %d, output %q; want 3 and an error", code, out)
	}
}

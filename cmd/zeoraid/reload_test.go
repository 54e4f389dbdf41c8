package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// waitReload polls ctl info until the last reload was asked for by
// trigger, and returns the info's output.
func waitReload(t *testing.T, addr, addrDir, trigger string) string {
	t.Helper()
	for i := 0; i < 500; i++ {
		out, _ := ctl(t, addr, "info")
		if strings.Contains(out, "("+trigger+")") {
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, _ := ctl(t, addr, "info")
	log, _ := os.ReadFile(filepath.Join(filepath.Dir(addrDir), "server.log"))
	t.Fatalf("no reload by %s:\n%s\n%s", trigger, out, log)
	return ""
}

// The reload triggers of a running `zeoraid serve`: the file watcher,
// ctl reload, SIGHUP; a broken file is refused and shown by ctl info;
// clients of storages that stay are never disconnected.
func TestServeReloads(t *testing.T) {
	exe := buildBinary(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "zeo.conf")
	raid := func(children ...string) string {
		s := "<zeo>\n  address 127.0.0.1:0\n</zeo>\n<raidstorage 1>\n  read-distribution first\n"
		for _, c := range children {
			s += "  <filestorage " + c + ">\n    path " + filepath.Join(dir, c+".fs") + "\n  </filestorage>\n"
		}
		return s + "</raidstorage>\n"
	}
	write := func(s string) { must(t, os.WriteFile(conf, []byte(s), 0o644)) }
	write(raid("a", "b") + "<mappingstorage other/>\n")
	cmd, addr := startServe(t, exe, dir, "-C", conf)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c1, err := zeoproto.Dial(ctx, "tcp", addr, zeoproto.ClientOptions{})
	must(t, err)
	defer c1.Close()
	_, err = c1.Register(ctx, "1", false)
	must(t, err)
	c2, err := zeoproto.Dial(ctx, "tcp", addr, zeoproto.ClientOptions{})
	must(t, err)
	defer c2.Close()
	_, err = c2.Register(ctx, "other", false)
	must(t, err)

	out, code := ctl(t, addr, "reload")
	if code != exitOK || !strings.Contains(out, "no change") {
		t.Fatalf("reload of an unchanged file: %d %s", code, out)
	}

	// The watcher: a child added, read by ctl info.
	write(raid("a", "b", "c") + "<mappingstorage other/>\n")
	out = waitReload(t, addr, dir+"/x", "file change")
	if !strings.Contains(out, "child c added") || !strings.Contains(out, "added by reload") {
		t.Fatalf("info after adding a child:\n%s", out)
	}
	if out, code := ctl(t, addr, "recover", "c"); code != exitOK {
		t.Fatalf("recover c: %d %s", code, out)
	}

	// A broken file: refused, positioned, the tree untouched.
	write(raid("a", "b", "c") + "<mappingstorage other>\n")
	out, code = ctl(t, addr, "reload")
	if code != exitUnknown || !strings.Contains(out, "zeo.conf:") {
		t.Fatalf("reload of a broken file: %d %s", code, out)
	}
	if out, _ := ctl(t, addr, "info"); !strings.Contains(out, "refused") || !strings.Contains(out, "zeo.conf:") {
		t.Fatalf("info after a refused reload:\n%s", out)
	}

	// Mended by SIGHUP, with a child and a storage removed.
	write(raid("b", "c"))
	must(t, cmd.Process.Signal(syscall.SIGHUP))
	out = waitReload(t, addr, dir+"/x", "SIGHUP")
	if !strings.Contains(out, "child a removed") || !strings.Contains(out, "storage other removed") {
		t.Fatalf("info after SIGHUP:\n%s", out)
	}
	select {
	case <-c2.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the client of a removed storage is still connected")
	}
	select {
	case <-c1.Done():
		t.Fatal("a client of a storage that stayed was disconnected")
	default:
	}
	if out, code := ctl(t, addr, "check"); code != exitOK && !strings.Contains(out, "identical") {
		t.Logf("check: %d %s", code, out)
	}
	if out, code := ctl(t, addr, "status"); code != exitOK || !strings.Contains(out, "optimal") {
		t.Fatalf("status after the reloads: %d %s", code, out)
	}
}

//go:build interop

package pyenv_test

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/interop/pyenv"
)

// handshake connects to addr and returns the protocol the server
// announces in its first frame (Z5 or M5).
func handshake(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var n uint32
	if err := binary.Read(c, binary.BigEndian, &n); err != nil || n > 16 {
		t.Fatalf("handshake frame of %s: %v (length %d)", addr, err, n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c, p); err != nil {
		t.Fatal(err)
	}
	return string(p)
}

// The launcher learns the port runzeo bound, brings the server back on
// the same port after SIGKILL, with its data (Restart) or without
// (Replace), and speaks msgpack when asked.
func TestRunzeoRestartOnTheSameAddress(t *testing.T) {
	r := pyenv.StartRunzeo(t, pyenv.RunzeoOptions{Storages: []string{"a", "b"}, Blobs: true, Msgpack: true})
	if _, port, err := net.SplitHostPort(r.Addr); err != nil || port == "0" {
		t.Fatalf("address %q", r.Addr)
	}
	if got := handshake(t, r.Addr); got != "M5" {
		t.Fatalf("protocol %q, want M5", got)
	}
	for _, name := range []string{"a", "b"} {
		if _, err := os.Stat(filepath.Join(r.StorageDir(name), "Data.fs")); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(r.BlobDir(name)); err != nil || !fi.IsDir() {
			t.Fatalf("blob directory of %s: %v", name, err)
		}
	}
	addr, data := r.Addr, r.StorageDir("a")

	r.Kill()
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("%s still accepts after Kill", addr)
	}
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	if r.Addr != addr || r.StorageDir("a") != data || handshake(t, addr) != "M5" {
		t.Fatalf("after Restart: %s %s, want %s %s", r.Addr, r.StorageDir("a"), addr, data)
	}
	if err := r.Replace(); err != nil {
		t.Fatal(err)
	}
	if r.Addr != addr || r.StorageDir("a") == data || handshake(t, addr) != "M5" {
		t.Fatalf("after Replace: %s %s, want %s and a new directory", r.Addr, r.StorageDir("a"), addr)
	}
	if !strings.Contains(r.Logs(), "listening on") {
		t.Errorf("runzeo's log has no listening line:\n%s", r.Logs())
	}
}

// A configuration text replaces the FileStorages; Z5 is the default.
func TestRunzeoConfigText(t *testing.T) {
	r := pyenv.StartRunzeo(t, pyenv.RunzeoOptions{Config: "<mappingstorage 1>\n</mappingstorage>\n"})
	if got := handshake(t, r.Addr); got != "Z5" {
		t.Fatalf("protocol %q, want Z5", got)
	}
	if err := r.Replace(); err == nil {
		t.Fatal("Replace of configuration text succeeded")
	}
}

package zeoclient_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/zeoraid/zeoraid/builtin/zeoclient"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/zconfig"
)

const zeoSection = "<zeo>\n  address 127.0.0.1:0\n</zeo>\n"

// build builds the storage tree of a configuration text (after a <zeo>
// section).
func build(t *testing.T, text string) (*stack.Tree, error) {
	t.Helper()
	return buildTB(t, text)
}

func buildTB(t testing.TB, text string) (*stack.Tree, error) {
	t.Helper()
	root, err := zconfig.Parse("zeo.conf", []byte(zeoSection+text))
	if err != nil {
		return nil, err
	}
	cfg, err := stack.DecodeConfig(root)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return stack.Build(ctx, cfg, stack.BuildOptions{Log: quiet()})
}

func TestConfigDecodesEveryKey(t *testing.T) {
	srv := goServer(t, newMapping())
	dir := t.TempDir()
	tree, err := build(t, `
<zeoclient main>
  server 127.0.0.1:1
  server `+srv+`
  storage 1
  cache-size 1MB
  name remote main
  client cachename
  var `+dir+`
  wait on
  read-only off
  read-only-fallback on
  blob-dir `+dir+`/blobs
  shared-blob-dir off
  blob-cache-size 10MB
  blob-cache-size-check 20
  client-label zeoraid-test
  min-disconnect-poll 5
  max-disconnect-poll 300
  drop-cache-rather-verify off
</zeoclient>
`)
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	s := tree.Roots["main"].Storage.(*zeoclient.Storage)
	o := s.Options()
	if len(o.Server) != 2 || o.Server[0].Port != 1 || o.CacheSize != 1<<20 || o.Name != "remote main" ||
		!o.ReadOnlyFallback || o.BlobCacheSize == nil || *o.BlobCacheSize != 10<<20 || o.BlobCacheSizeCheck != 20 || o.ClientLabel != "zeoraid-test" {
		t.Fatalf("decoded options %+v", o)
	}
	// The first address refuses; fail-over reached the second one.
	ctx := ctxT(t, 10*time.Second)
	info, err := s.Info(ctx)
	if err != nil || info.Name != "remote main" {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	if !s.Capabilities().Undo || s.Capabilities().ReadOnly {
		t.Fatalf("capabilities %+v", s.Capabilities())
	}
}

func TestConfigDefaults(t *testing.T) {
	srv := goServer(t, newMapping())
	tree, err := build(t, "<zeoclient main>\n  server "+srv+"\n</zeoclient>\n")
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	o := tree.Roots["main"].Storage.(*zeoclient.Storage).Options()
	if o.Storage != "1" || o.CacheSize != 20<<20 || !o.Wait || o.ReadOnly || o.BlobCacheSizeCheck != 10 || o.SSL != nil || o.BlobCacheSize != nil {
		t.Fatalf("defaults %+v", o)
	}
}

func TestConfigRefusesAuthentication(t *testing.T) {
	for _, key := range []string{"username bob", "password secret", "realm zope"} {
		_, err := build(t, "<zeoclient main>\n  server 127.0.0.1:1\n  "+key+"\n</zeoclient>\n")
		if err == nil || !strings.Contains(err.Error(), "ZEO 5 removed authentication") || !strings.Contains(err.Error(), "ssl") {
			t.Errorf("%s: %v, want the authentication refusal", key, err)
		}
	}
}

func TestConfigSSLSection(t *testing.T) {
	root, err := zconfig.Parse("zeo.conf", []byte(zeoSection+`
<zeoclient main>
  server 127.0.0.1:1
  <ssl>
    certificate /etc/hosts
    key /etc/hosts
    authenticate /etc/ssl
    check-hostname false
    server-hostname zeo.example
  </ssl>
</zeoclient>
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := stack.DecodeConfig(root)
	if err != nil {
		t.Fatal(err)
	}
	var o zeoclient.Options
	if err := zconfig.Decode(cfg.Storages[0], &o); err != nil {
		t.Fatal(err)
	}
	if o.SSL == nil || o.SSL.Certificate != "/etc/hosts" || o.SSL.CheckHostname || o.SSL.ServerHostname != "zeo.example" || o.SSL.Authenticate != "/etc/ssl" {
		t.Fatalf("ssl = %+v", o.SSL)
	}
}

func TestWaitOffStartsDisconnected(t *testing.T) {
	o := options(t, "1", "127.0.0.1:1")
	o.Wait = false
	s := open(t, o)
	_, err := s.LoadBefore(ctxT(t, 5*time.Second), 0, stack.MaxTid)
	if !stack.IsBackendFailure(err) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("load while never connected: %v, want a backend failure naming the address", err)
	}
}

func TestWaitOnFailsWithoutServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := zeoclient.Open(ctx, "main", options(t, "1", "127.0.0.1:1"), quiet())
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("Open without a server: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("Open took %s despite its context", time.Since(start))
	}
	var nf *stack.NotFoundError
	if errors.As(err, &nf) {
		t.Fatal("connection failure mapped to a logical answer")
	}
}

func TestIgnoredKeysWarn(t *testing.T) {
	log, hook := test.NewNullLogger()
	o := options(t, "1", goServer(t, newMapping()))
	poll := 5
	o.MinDisconnectPoll = &poll
	ctx := ctxT(t, 10*time.Second)
	s, err := zeoclient.Open(ctx, "main", o, log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel && strings.Contains(e.Message, "min-disconnect-poll") {
			return
		}
	}
	t.Fatal("no warning about the ignored keys")
}

func TestUnixSocket(t *testing.T) {
	st := newMapping()
	sock := filepath.Join(t.TempDir(), "zeo.sock")
	l, err := server.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New([]*stack.Mount{stack.NewMount("1", st)}, server.Options{Log: quiet()})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	defer func() {
		srv.Shutdown(ctxT(t, 5*time.Second))
		<-done
		st.Close()
	}()
	tree, err := build(t, "<zeoclient main>\n  server "+sock+"\n</zeoclient>\n")
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	s := tree.Roots["main"].Storage
	tid := commit(t, s, store{1, 0, "over a unix socket"})
	wantCurrent(t, s, 1, "over a unix socket", tid)
}

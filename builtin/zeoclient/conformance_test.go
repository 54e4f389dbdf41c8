package zeoclient_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/builtin/filestorage"
	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/builtin/zeoclient"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/stack/storagetest"
	"github.com/zeoraid/zeoraid/zconfig"
)

// noPack hides the Pack capability from the suite: its Pack group asks
// for a pack without garbage collection, which ZEO's pack call cannot
// express (the remote's configuration decides; zeoclient refuses gc
// false). Pack is tested on its own in TestPackRunzeo.
type noPack struct{ *zeoclient.Storage }

func (n noPack) Capabilities() stack.Capabilities {
	c := n.Storage.Capabilities()
	c.Pack = false
	return c
}

// Pack refuses, as the capability is not reported: the suite checks that
// what Capabilities hides does not work.
func (n noPack) Pack(context.Context, time.Time, bool) error { return stack.ErrNotSupported }

// zeoclientOpen opens a node with a short wait, for failures.
func zeoclientOpen(t testing.TB, o zeoclient.Options) (*zeoclient.Storage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, err := zeoclient.Open(ctx, "main/"+o.Storage, o, quiet())
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

// openNoCleanup opens a node the suite closes itself.
func openNoCleanup(t testing.TB, o zeoclient.Options) *zeoclient.Storage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := zeoclient.Open(ctx, "main/"+o.Storage, o, quiet())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// goServer serves st as storage "1" from zeoraid's own server, in
// process, until the test ends.
func goServer(t testing.TB, st stack.Storage) string {
	t.Helper()
	return goServerWith(t, st, server.Options{Log: quiet()})
}

// goServerReadOnly is goServer with the server read-only.
func goServerReadOnly(t testing.TB, st stack.Storage) string {
	t.Helper()
	return goServerWith(t, st, server.Options{Log: quiet(), ReadOnly: true})
}

func goServerWith(t testing.TB, st stack.Storage, opts server.Options) string {
	t.Helper()
	srv := server.New([]*stack.Mount{stack.NewMount("1", st)}, opts)
	l, err := net.Listen("tcp", "127.0.0.1:0")
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
		st.Close()
	})
	return l.Addr().String()
}

// TestConformanceGoServer runs the suite through a <zeoclient> on
// zeoraid's own server over a mappingstorage.
func TestConformanceGoServer(t *testing.T) {
	servers := map[stack.Storage]string{}
	storagetest.Run(t, storagetest.Harness{
		Open: func(t testing.TB) stack.Storage {
			addr := goServer(t, mappingstorage.New("remote", quiet()))
			s := noPack{openNoCleanup(t, options(t, "1", addr))}
			servers[s] = addr
			return s
		},
		Reopen: func(t testing.TB, s stack.Storage) stack.Storage {
			r := noPack{openNoCleanup(t, options(t, "1", servers[s]))}
			servers[r] = servers[s]
			return r
		},
		ReadOnly: func(t testing.TB, s stack.Storage) stack.Storage {
			o := options(t, "1", servers[s])
			o.ReadOnly = true
			return noPack{openNoCleanup(t, o)}
		},
		Oracle: func(testing.TB) stack.Storage { return mappingstorage.New("oracle", quiet()) },
	})
}

func newMapping() stack.Storage { return mappingstorage.New("remote", quiet()) }

// TestConformanceGoServerFileStorage runs the suite through a <zeoclient>
// on zeoraid's own server over its Python-compatible FileStorage with
// blobs (so the Blobs group runs).
func TestConformanceGoServerFileStorage(t *testing.T) {
	type remote struct{ addr, path, blobs string }
	remotes := map[stack.Storage]remote{}
	openFS := func(t testing.TB, path, blobs string) stack.Storage {
		fs, err := filestorage.Open(path, filestorage.Options{BlobDir: zconfig.ExistingDirPath(blobs), PackGC: true}, quiet())
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
	storagetest.Run(t, storagetest.Harness{
		Open: func(t testing.TB) stack.Storage {
			dir := t.TempDir()
			r := remote{path: filepath.Join(dir, "Data.fs"), blobs: filepath.Join(dir, "blobs")}
			r.addr = goServer(t, openFS(t, r.path, r.blobs))
			o := options(t, "1", r.addr)
			o.BlobDir = zconfig.ExistingDirPath(t.TempDir())
			s := noPack{openNoCleanup(t, o)}
			remotes[s] = r
			return s
		},
		Reopen: func(t testing.TB, s stack.Storage) stack.Storage {
			o := options(t, "1", remotes[s].addr)
			o.BlobDir = zconfig.ExistingDirPath(t.TempDir())
			r := noPack{openNoCleanup(t, o)}
			remotes[r] = remotes[s]
			return r
		},
		// The same Data.fs, opened read-only, behind a read-only server:
		// the node asks to write and falls back to read-only.
		ReadOnly: func(t testing.TB, s stack.Storage) stack.Storage {
			r := remotes[s]
			fs, err := filestorage.Open(r.path, filestorage.Options{BlobDir: zconfig.ExistingDirPath(r.blobs), ReadOnly: true}, quiet())
			if err != nil {
				t.Fatal(err)
			}
			o := options(t, "1", goServerReadOnly(t, fs))
			o.BlobDir = zconfig.ExistingDirPath(t.TempDir())
			o.ReadOnlyFallback = true
			return noPack{openNoCleanup(t, o)}
		},
		Oracle: func(testing.TB) stack.Storage { return mappingstorage.New("oracle", quiet()) },
	})
}

//go:build interop

package zeoclient_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/interop/pyenv"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/storagetest"
	"github.com/zeoraid/zeoraid/zconfig"
)

// suiteStorages is how many fresh storages one run of the suite opens,
// with room to spare.
const suiteStorages = 60

// TestConformanceRunzeo runs the storage suite through a <zeoclient> on
// Python runzeo serving FileStorages with blobs, pickle (Z5) and msgpack
// (M5). runzeo runs with client-conflict-resolution, so that vote reports
// every conflict with its data, as the contract asks; the typed-error path
// of a default server is tested in TestConflictServerSide.
func TestConformanceRunzeo(t *testing.T) {
	for _, proto := range []struct {
		name    string
		msgpack bool
	}{{"Z5", false}, {"M5", true}} {
		t.Run(proto.name, func(t *testing.T) {
			names := make([]string, suiteStorages)
			for i := range names {
				names[i] = fmt.Sprintf("s%d", i+1)
			}
			srv := pyenv.StartRunzeo(t, pyenv.RunzeoOptions{Storages: names, Blobs: true, Msgpack: proto.msgpack, ClientConflictResolution: true})
			var used atomic.Int32
			storagetest.Run(t, storagetest.Harness{
				Open: func(t testing.TB) stack.Storage {
					n := int(used.Add(1))
					if n > len(names) {
						t.Fatalf("runzeo serves only %d storages", len(names))
					}
					o := options(t, names[n-1], srv.Addr)
					o.BlobDir = zconfig.ExistingDirPath(t.TempDir())
					return noPack{openNoCleanup(t, o)}
				},
				Reopen: func(t testing.TB, s stack.Storage) stack.Storage {
					o := options(t, s.(noPack).Options().Storage, srv.Addr)
					o.BlobDir = zconfig.ExistingDirPath(t.TempDir())
					return noPack{openNoCleanup(t, o)}
				},
				ReadOnly: func(t testing.TB, s stack.Storage) stack.Storage {
					o := options(t, s.(noPack).Options().Storage, srv.Addr)
					o.BlobDir = zconfig.ExistingDirPath(t.TempDir())
					o.ReadOnly = true
					return noPack{openNoCleanup(t, o)}
				},
				Oracle: func(testing.TB) stack.Storage { return mappingstorage.New("oracle", quiet()) },
			})
		})
	}
}

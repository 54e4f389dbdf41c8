package host_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/plugins/host"
	"github.com/zeoraid/zeoraid/stack"
)

// A plugin built for another major version of the protocol is refused at
// the handshake, with both versions named.
func TestVersionMismatch(t *testing.T) {
	_, err := host.Describe(futurePlugin, nil)
	if err == nil || !strings.Contains(err.Error(), "version 3") || !strings.Contains(err.Error(), "version 2") {
		t.Fatalf("describe of a protocol 3 plugin: %v", err)
	}
	d, err := host.Describe(testPlugin, nil)
	if err != nil || d.Major != 2 || len(d.Modules) != 2 {
		t.Fatalf("describe: %+v %v", d, err)
	}
}

// Logical answers cross as their typed errors and are not backend
// failures; a conflict keeps its data.
func TestTypedErrors(t *testing.T) {
	ctx := context.Background()
	s := open(t, "<testmapping>\n</testmapping>\n", nil, host.Options{})
	defer s.Close()
	tid := commit(t, s, 1, 0, "v1")

	_, err := s.LoadSerial(ctx, 1, tid+1)
	var nf *stack.NotFoundError
	if !errors.As(err, &nf) || nf.Oid != 1 || stack.IsBackendFailure(err) || !strings.HasPrefix(err.Error(), "main: loadSerial ") {
		t.Fatalf("not found: %v", err)
	}
	tx, err := s.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Store(ctx, 1, tid-1, []byte("stale write")); err != nil {
		var ce *stack.ConflictError
		if !errors.As(err, &ce) {
			t.Fatal(err)
		}
	}
	if err := tx.CheckCurrentSerial(ctx, 1, tid); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Vote(ctx)
	var cs stack.Conflicts
	if !errors.As(err, &cs) || len(cs) != 1 || cs[0].Oid != 1 || cs[0].Committed != tid || string(cs[0].Data) != "stale write" || stack.IsBackendFailure(err) {
		t.Fatalf("conflict: %v", err)
	}
	tx.Abort(ctx)

	tx, _ = s.Begin(ctx, stack.TxnMeta{})
	tx.CheckCurrentSerial(ctx, 1, tid-1)
	_, err = tx.Vote(ctx)
	var rc *stack.ReadConflictError
	if !errors.As(err, &rc) || rc.Oid != 1 || stack.IsBackendFailure(err) {
		t.Fatalf("read conflict: %v", err)
	}
	tx.Abort(ctx)

	tx, _ = s.Begin(ctx, stack.TxnMeta{})
	if err := tx.Store(ctx, 2, 0, nil); !errors.Is(err, stack.ErrEmptyData) {
		if _, err = tx.Vote(ctx); !errors.Is(err, stack.ErrEmptyData) {
			t.Fatalf("empty data: %v", err)
		}
	}
	tx.Abort(ctx)
	if _, err := s.LoadBlob(ctx, 1, tid); !errors.Is(err, stack.ErrNotSupported) || stack.IsBackendFailure(err) {
		t.Fatalf("blob of a storage without blobs: %v", err)
	}
}

// bigData is n bytes of a pattern that compresses badly.
func bigData(n int) []byte {
	b := make([]byte, n)
	x := uint64(88172645463325252)
	for i := 0; i < n; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(x >> (8 * j))
		}
	}
	return b
}

// A 64 MB object is stored and loaded through the plugin.
func TestLargeObject(t *testing.T) {
	ctx := context.Background()
	s := open(t, "<testmapping>\n</testmapping>\n", nil, host.Options{})
	defer s.Close()
	data := bigData(64 << 20)
	tx, err := s.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Store(ctx, 1, 0, data); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Vote(ctx); err != nil {
		t.Fatal(err)
	}
	tid, err := tx.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := s.LoadBefore(ctx, 1, stack.MaxTid)
	if err != nil || rev.Serial != tid || !bytes.Equal(rev.Data, data) {
		t.Fatalf("64 MB object: %d bytes, %v", len(rev.Data), err)
	}
}

// blobSize is the blob of TestLargeBlob: 200 MB, or 1 GB with
// ZEORAID_TEST_1GB_BLOB set.
func blobSize() int64 {
	if os.Getenv("ZEORAID_TEST_1GB_BLOB") != "" {
		return 1 << 30
	}
	return 200 << 20
}

// A large blob goes to the plugin and back in chunks: the host's heap
// grows by a small fraction of the blob's size.
func TestLargeBlob(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, fmt.Sprintf("<testfile>\n  path %s\n  blob-dir %s\n</testfile>\n", filepath.Join(dir, "Data.fs"), filepath.Join(dir, "blobs")), nil, host.Options{TempDir: t.TempDir()})
	defer s.Close()
	size := blobSize()
	f, err := os.CreateTemp(s.BlobTempDir(), "upload-")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	chunk := bigData(4 << 20)
	for written := int64(0); written < size; written += int64(len(chunk)) {
		if _, err := io.MultiWriter(f, h).Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	want := h.Sum(nil)

	peak := sampleHeap(t)
	tx, err := s.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.(stack.BlobTxn).StoreBlob(ctx, 1, 0, []byte("blob object"), f.Name()); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Vote(ctx); err != nil {
		t.Fatal(err)
	}
	tid, err := tx.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	path, err := s.LoadBlob(ctx, 1, tid)
	if err != nil {
		t.Fatal(err)
	}
	growth := peak()
	got, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	h.Reset()
	n, err := io.Copy(h, got)
	got.Close()
	if err != nil || n != size || !bytes.Equal(h.Sum(nil), want) {
		t.Fatalf("blob back: %d bytes, %v", n, err)
	}
	t.Logf("blob of %d MiB: host heap grew by at most %d MiB", size>>20, growth>>20)
	if growth > 32<<20 {
		t.Fatalf("host heap grew by %d MiB for a %d MiB blob", growth>>20, size>>20)
	}
}

// sampleHeap samples the heap in use until the returned function is
// called, which returns the largest growth seen.
func sampleHeap(t testing.TB) func() int64 {
	// Twice: pooled buffers of earlier tests survive one collection.
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := int64(ms.HeapInuse)
	var peak atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if g := int64(ms.HeapInuse) - base; g > peak.Load() {
				peak.Store(g)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	return func() int64 {
		close(stop)
		<-done
		return peak.Load()
	}
}

// With AutoMTLS the connection to the plugin is mutual TLS; calls work
// the same.
func TestAutoMTLS(t *testing.T) {
	ctx := context.Background()
	s := open(t, "<testmapping>\n</testmapping>\n", nil, host.Options{AutoMTLS: true})
	defer s.Close()
	tid := commit(t, s, 1, 0, "over TLS")
	if rev, err := s.LoadBefore(ctx, 1, stack.MaxTid); err != nil || string(rev.Data) != "over TLS" || rev.Serial != tid {
		t.Fatalf("load: %+v %v", rev, err)
	}
}

package filestorage

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/zeoraid/zeoraid/stack"
)

// TestTruncateEveryPrefix cuts the example file at every byte: a writable
// open must cut it back to the last complete transaction, never fail.
func TestTruncateEveryPrefix(t *testing.T) {
	orig, err := os.ReadFile(writeExample(t, t.TempDir()))
	must(t, err)
	ends := []int{4, 166, 479, 614}
	dir := t.TempDir()
	ctx := context.Background()
	for n := 4; n <= len(orig); n++ {
		path := filepath.Join(dir, "Data.fs")
		must(t, os.WriteFile(path, orig[:n], 0o644))
		os.Remove(path + ".index")
		s, err := Open(path, Options{}, nil)
		if err != nil {
			t.Fatalf("prefix %d: %v", n, err)
		}
		want := 0
		for _, e := range ends {
			if e <= n {
				want = e
			}
		}
		info, _ := s.Info(ctx)
		s.Close()
		if info.Size != int64(want) {
			t.Fatalf("prefix %d: end %d, want %d", n, info.Size, want)
		}
		if fi, _ := os.Stat(path); fi.Size() != int64(want) {
			t.Fatalf("prefix %d: file is %d bytes, want %d", n, fi.Size(), want)
		}
		for i := 0; ; i++ {
			if os.Remove(filepath.Join(dir, "Data.fs.tr"+string(rune('0'+i)))) != nil {
				break
			}
		}
	}
}

// FuzzOpen feeds damaged files to every reader: they must give an error
// or an answer, never panic or loop.
func FuzzOpen(f *testing.F) {
	f.Add([]byte("FS30"))
	f.Add([]byte("FS21"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "Data.fs")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_ = Check(path, io.Discard)
		_ = Dump(path, io.Discard)
		ctx := context.Background()
		for _, ro := range []bool{true, false} {
			s, err := Open(path, Options{ReadOnly: ro}, nil)
			if err != nil {
				continue
			}
			exercise(ctx, s)
			s.Close()
		}
	})
}

func exercise(ctx context.Context, s *Storage) {
	s.mu.RLock()
	var oids []stack.Oid
	for oid := range s.ix.all() {
		oids = append(oids, oid)
	}
	s.mu.RUnlock()
	for _, oid := range oids {
		_, _ = s.LoadBefore(ctx, oid, stack.MaxTid)
		_, _ = s.History(ctx, oid, 100)
		_, _ = s.LoadSerial(ctx, oid, 1)
	}
	_, _, _, _ = s.RecordIterNext(ctx, 0)
	_, _ = s.UndoLog(ctx, 0, 100, nil)
	if it, err := s.Iterate(ctx, 0, 0); err == nil {
		for i := 0; i < 1000; i++ {
			if _, ok, err := it.Next(ctx); !ok || err != nil {
				break
			}
		}
		it.Close()
	}
	_ = s.Pack(ctx, stack.MaxTid.Time(), true)
}

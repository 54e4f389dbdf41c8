package filestorage

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeoraid/zeoraid/stack"
)

func TestTruncateTail(t *testing.T) {
	dir := t.TempDir()
	base := writeExample(t, dir)
	orig, _ := os.ReadFile(base)
	// A voted, unfinished transaction: T4 with status 'c'.
	ctx := context.Background()
	s, err := Open(base, Options{}, nil)
	must(t, err)
	tx, err := s.Begin(ctx, stack.TxnMeta{})
	must(t, err)
	must(t, tx.Store(ctx, 0, tid3, rootWith1))
	_, err = tx.Vote(ctx)
	must(t, err)
	voted, _ := os.ReadFile(base)
	must(t, tx.Abort(ctx))
	must(t, s.Close())
	if b, _ := os.ReadFile(base); !bytes.Equal(b, orig) {
		t.Fatalf("abort after vote did not truncate")
	}
	overlong := append(bytes.Clone(orig), voted[614:]...)
	overlong[614+16] = ' '
	overlong = overlong[:len(overlong)-10]
	cases := []struct {
		name string
		file []byte
		tr0  bool
	}{
		{"checkpoint", voted, true},
		{"past end", overlong, true},
		{"short header", append(bytes.Clone(orig), voted[614:630]...), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "Data.fs")
			must(t, os.WriteFile(path, c.file, 0o644))
			ro, err := Open(path, Options{ReadOnly: true}, nil)
			must(t, err)
			if last, _ := ro.LastTransaction(ctx); last != tid3 {
				t.Errorf("read-only last %s", last)
			}
			ro.Close()
			if b, _ := os.ReadFile(path); !bytes.Equal(b, c.file) {
				t.Errorf("read-only open changed the file")
			}
			s, err := Open(path, Options{}, nil)
			must(t, err)
			s.Close()
			if b, _ := os.ReadFile(path); !bytes.Equal(b, orig) {
				t.Errorf("file not cut back to 614 bytes (%d)", len(b))
			}
			tr0, err := os.ReadFile(path + ".tr0")
			if c.tr0 && !bytes.Equal(tr0, c.file[614:]) {
				t.Errorf(".tr0 = %d bytes, %v", len(tr0), err)
			}
			if !c.tr0 && err == nil {
				t.Errorf("unexpected .tr0")
			}
		})
	}
}

func TestCorruptMiddleRefused(t *testing.T) {
	path := writeExample(t, t.TempDir())
	b, _ := os.ReadFile(path)
	b[471] ^= 0xff // T2's trailer
	must(t, os.WriteFile(path, b, 0o644))
	os.Remove(path + ".index")
	_, err := Open(path, Options{}, nil)
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Pos != 471 {
		t.Fatalf("open of damaged trailer: %v", err)
	}
	if !strings.Contains(err.Error(), "redundant transaction length") {
		t.Errorf("error %v", err)
	}
}

func TestMagic(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ magic, want string }{{"FS21", "zodbupdate --convert-py3"}, {"XXXX", "not a FileStorage"}} {
		path := filepath.Join(dir, c.magic)
		must(t, os.WriteFile(path, []byte(c.magic), 0o644))
		_, err := Open(path, Options{}, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.magic, err)
		}
	}
}

func TestLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Data.fs")
	s, err := Open(path, Options{}, nil)
	must(t, err)
	if _, err := Open(path, Options{}, nil); !errors.Is(err, ErrLocked) {
		t.Errorf("second writable open: %v", err)
	}
	ro, err := Open(path, Options{ReadOnly: true}, nil)
	must(t, err)
	ro.Close()
	if b, _ := os.ReadFile(path + ".lock"); !strings.HasPrefix(string(b), " ") || !strings.HasSuffix(string(b), "\n") {
		t.Errorf("lock content %q", b)
	}
	must(t, s.Close())
	s, err = Open(path, Options{}, nil)
	must(t, err)
	s.Close()
}

func TestIndexRoundTrip(t *testing.T) {
	want := map[stack.Oid]int64{0: 52, 1: 365, 0x10000: 1 << 40, 0xffffffffffff0001: 300, 0x10001: 1 << 31, 0xffffffffffffffff: 7}
	for i := stack.Oid(0); i < 300; i++ {
		want[0x20000+i] = int64(i) * 1000
	}
	ix := indexOf(want)
	for _, pos := range []int64{166, 614, 70000, 1 << 31, 1<<40 + 5} {
		got, gix, err := decodeIndex(encodeIndex(pos, ix))
		must(t, err)
		if got != pos || !maps.Equal(indexMap(gix), want) {
			t.Fatalf("pos %d -> %d, %d entries", pos, got, gix.len())
		}
	}
	if got := appendPickleInt(nil, 1<<31); !bytes.Equal(got, []byte{0x8a, 5, 0, 0, 0, 0x80, 0}) {
		t.Errorf("2^31 as % x", got)
	}
}

func TestStaleOrDamagedIndex(t *testing.T) {
	path := writeExample(t, t.TempDir())
	good, _ := os.ReadFile(path + ".index")
	ctx := context.Background()
	damaged := [][]byte{
		good[:len(good)/2],
		encodeIndex(166, indexOf(map[stack.Oid]int64{0: 52})),          // stale: the file grew since
		encodeIndex(614, indexOf(map[stack.Oid]int64{0: 228, 1: 365})), // wrong positions
		append([]byte("garbage"), good...),
	}
	for i, ixb := range damaged {
		must(t, os.WriteFile(path+".index", ixb, 0o644))
		s, err := Open(path, Options{}, nil)
		must(t, err)
		r, err := s.LoadBefore(ctx, 0, stack.MaxTid)
		if err != nil || r.Serial != tid3 {
			t.Errorf("case %d: load %v %v", i, r.Serial, err)
		}
		if _, err := s.LoadBefore(ctx, 1, stack.MaxTid); !isNotFound(err) {
			t.Errorf("case %d: oid 1 %v", i, err)
		}
		if n, _ := s.NewOIDs(ctx, 1); n[0] != 2 {
			t.Errorf("case %d: new oid %v", i, n)
		}
		s.Close()
		if b, _ := os.ReadFile(path + ".index"); !bytes.Equal(b, good) {
			t.Errorf("case %d: index not rewritten", i)
		}
	}
}

func TestConflictsAndReadOnly(t *testing.T) {
	path := writeExample(t, t.TempDir())
	ctx := context.Background()
	s, err := Open(path, Options{}, nil)
	must(t, err)
	tx, err := s.Begin(ctx, stack.TxnMeta{})
	must(t, err)
	must(t, tx.Store(ctx, 0, tid1, rootWith1))
	must(t, tx.CheckCurrentSerial(ctx, 0, tid3))
	_, err = tx.Vote(ctx)
	var cs stack.Conflicts
	if !errors.As(err, &cs) || len(cs) != 1 || cs[0].Committed != tid3 || cs[0].Read != tid1 || !bytes.Equal(cs[0].Data, rootWith1) {
		t.Errorf("vote: %v", err)
	}
	must(t, tx.Abort(ctx))
	if err := tx.Store(ctx, 0, tid3, rootWith1); !errors.Is(err, stack.ErrTxnState) {
		t.Errorf("store after abort: %v", err)
	}
	tx, err = s.Begin(ctx, stack.TxnMeta{})
	must(t, err)
	if err := tx.Store(ctx, 5, 0, nil); err == nil {
		t.Errorf("empty data accepted")
	}
	must(t, tx.CheckCurrentSerial(ctx, 0, tid2))
	_, err = tx.Vote(ctx)
	var rc *stack.ReadConflictError
	if !errors.As(err, &rc) || rc.Committed != tid3 {
		t.Errorf("read conflict: %v", err)
	}
	tx.Abort(ctx)
	if _, err := s.Begin(ctx, stack.TxnMeta{Tid: tid2}); err == nil {
		t.Errorf("explicit tid before the last accepted")
	}
	s.Close()
	q, err := Open(path, Options{Quota: 700}, nil)
	must(t, err)
	tx, err = q.Begin(ctx, stack.TxnMeta{})
	must(t, err)
	must(t, tx.Store(ctx, 0, tid3, rootWith1))
	err = tx.Store(ctx, 2, 0, rootWith1)
	var se *stack.StorageError
	if !errors.As(err, &se) || se.Class != QuotaErrorClass {
		t.Errorf("quota: %v", err)
	}
	tx.Abort(ctx)
	q.Close()
	ro, err := Open(path, Options{ReadOnly: true}, nil)
	must(t, err)
	defer ro.Close()
	if _, err := ro.Begin(ctx, stack.TxnMeta{}); !errors.Is(err, stack.ErrReadOnly) {
		t.Errorf("read-only begin: %v", err)
	}
	if _, err := ro.NewOIDs(ctx, 1); !errors.Is(err, stack.ErrReadOnly) {
		t.Errorf("read-only new oid: %v", err)
	}
}

func TestTools(t *testing.T) {
	path := writeExample(t, t.TempDir())
	var out bytes.Buffer
	must(t, Check(path, &out))
	if !strings.Contains(out.String(), "3 transactions, 5 data records, no errors") {
		t.Errorf("check: %s", out.String())
	}
	out.Reset()
	must(t, Dump(path, &out))
	if lines := strings.Count(out.String(), "\n"); lines != 8 || !strings.Contains(out.String(), "back=52") {
		t.Errorf("dump:\n%s", out.String())
	}
	b, _ := os.ReadFile(path)
	b[506+42+7] = 60 // T3's backpointer now points inside a record
	must(t, os.WriteFile(path, b, 0o644))
	if err := Check(path, &out); err == nil {
		t.Errorf("check accepted a broken backpointer")
	}
}

func TestLaterThan(t *testing.T) {
	for _, c := range [][3]stack.Tid{
		{0x03f5945815555555, 0x03f5945819999999, 0x03f594581999999a},
		{0x03f5945819999999, 0x03f5945819999999, 0x03f594581999999a},
		{0x03f594581ddddddd, 0x03f5945819999999, 0x03f594581ddddddd},
		{0, 0x03f59458ffffffff, 0x03f5945900000000},
		{0, 0x03f63c5fffffffff, 0x03f63c6000000000},
		{0, 0x03f58dffffffffff, 0x03f58e0000000000},
		{0, 0x03eead5fffffffff, 0x03eebe4000000000},
		{0, 0x03f6d9dfffffffff, 0x03f6d9e000000000},
	} {
		if got := laterThan(c[0], c[1]); got != c[2] {
			t.Errorf("laterThan(%s, %s) = %s, want %s", c[0], c[1], got, c[2])
		}
	}
}

// TestReadsDuringCommit: between vote and finish, readers see the old
// state at once and the new one after Finish, with its event.
func TestReadsDuringCommit(t *testing.T) {
	path := writeExample(t, t.TempDir())
	ctx := context.Background()
	s, err := Open(path, Options{}, nil)
	must(t, err)
	defer s.Close()
	ch := make(chan stack.Event, 1)
	if at0 := s.Watch(ch); at0 != tid3 {
		t.Errorf("watch at0 %s", at0)
	}
	tx, err := s.Begin(ctx, stack.TxnMeta{})
	must(t, err)
	must(t, tx.Store(ctx, 0, tid3, rootWith1))
	_, err = tx.Vote(ctx)
	must(t, err)
	done := make(chan stack.Revision)
	go func() {
		r, _ := s.LoadBefore(ctx, 0, stack.MaxTid)
		done <- r
	}()
	if r := <-done; r.Serial != tid3 {
		t.Errorf("read during commit saw %s", r.Serial)
	}
	tid, err := tx.Finish(ctx)
	must(t, err)
	if r, _ := s.LoadBefore(ctx, 0, stack.MaxTid); r.Serial != tid || !bytes.Equal(r.Data, rootWith1) {
		t.Errorf("after finish %+v", r)
	}
	if ev := <-ch; ev.Tid != tid || len(ev.Oids) != 1 || ev.Oids[0] != 0 {
		t.Errorf("event %+v", ev)
	}
	s.Unwatch(ch)
}

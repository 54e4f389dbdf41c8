package storagetest

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/stack"
)

func testBasic(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxOf(t)
	if last, err := s.LastTransaction(ctx); err != nil || last != 0 {
		t.Fatalf("empty storage: LastTransaction = %s, %v", last, err)
	}
	wantNotFound(t, s, 0)
	t1 := commit(t, s, st(0, 0, "root"))
	wantData(t, s, 0, "root", t1)
	if last, err := s.LastTransaction(ctx); err != nil || last != t1 {
		t.Fatalf("LastTransaction = %s, %v; want %s", last, err, t1)
	}
	t2 := commit(t, s, st(0, t1, "root2"), st(1, 0, "x"))
	wantData(t, s, 0, "root2", t2)
	wantData(t, s, 1, "x", t2)
	// Empty data is refused, at Store or at Vote, and nothing is committed.
	tx, err := s.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		t.Fatal(err)
	}
	err = tx.Store(ctx, 2, 0, []byte{})
	if err == nil {
		_, err = tx.Vote(ctx)
	}
	_ = tx.Abort(ctx)
	if !errors.Is(err, stack.ErrEmptyData) {
		t.Fatalf("storing empty data: %v, want ErrEmptyData", err)
	}
	if last, _ := s.LastTransaction(ctx); last != t2 {
		t.Fatalf("a refused empty store committed %s", last)
	}
	if d, err := s.LoadSerial(ctx, 0, t1); err != nil || string(d) != "root" {
		t.Fatalf("LoadSerial(0, t1) = %q, %v", d, err)
	}
	if _, err := s.LoadSerial(ctx, 1, t1); !isNotFound(err) {
		t.Fatalf("LoadSerial of a missing revision: %v, want NotFoundError", err)
	}
	wantNotFound(t, s, 42)
	// Loads hand out copies: changing one must not change the storage.
	r := current(t, s, 0)
	r.Data[0] = 'X'
	wantData(t, s, 0, "root2", t2)
	if info, err := s.Info(ctx); err != nil || info.Name == "" {
		t.Fatalf("Info = %+v, %v", info, err)
	}
}

func testLoadBefore(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxOf(t)
	t1 := commit(t, s, st(1, 0, "a1"))
	t2 := commit(t, s, st(1, t1, "a2"))
	t3 := commit(t, s, st(1, t2, "a3"))
	cases := []struct {
		before     stack.Tid
		data       string
		serial     stack.Tid
		nextSerial stack.Tid
	}{
		{t1, "", 0, 0},
		{t1 + 1, "a1", t1, t2},
		{t2, "a1", t1, t2},
		{t2 + 1, "a2", t2, t3},
		{t3, "a2", t2, t3},
		{t3 + 1, "a3", t3, 0},
		{stack.MaxTid, "a3", t3, 0},
	}
	for _, c := range cases {
		r, err := s.LoadBefore(ctx, 1, c.before)
		if err != nil {
			t.Fatalf("LoadBefore(1, %s): %v", c.before, err)
		}
		if string(r.Data) != c.data || r.Serial != c.serial || r.NextSerial != c.nextSerial {
			t.Errorf("LoadBefore(1, %s) = {%q %s %s}, want {%q %s %s}", c.before, r.Data, r.Serial, r.NextSerial, c.data, c.serial, c.nextSerial)
		}
	}
	if r, err := s.LoadBefore(ctx, 1, t1); err != nil || r.Found() {
		t.Errorf("LoadBefore before creation = %+v, %v; want the zero Revision", r, err)
	}
}

func testHistory(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxOf(t)
	var tids []stack.Tid
	var serial stack.Tid
	for i := 0; i < 3; i++ {
		meta := stack.TxnMeta{User: []byte(fmt.Sprintf("/ u%d", i)), Description: []byte(fmt.Sprintf("d%d", i))}
		tid, err := tryCommit(ctx, s, meta, st(1, serial, string(zeros(i+1))))
		if err != nil {
			t.Fatal(err)
		}
		serial = tid
		tids = append(tids, tid)
	}
	hist, err := s.History(ctx, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 3 {
		t.Fatalf("History = %d entries, want 3", len(hist))
	}
	for i, e := range hist {
		k := 2 - i
		if e.Tid != tids[k] || string(e.User) != fmt.Sprintf("/ u%d", k) || string(e.Description) != fmt.Sprintf("d%d", k) || e.Size != k+1 {
			t.Errorf("History[%d] = %+v, want tid %s user / u%d size %d", i, e, tids[k], k, k+1)
		}
	}
	if hist, err := s.History(ctx, 1, 2); err != nil || len(hist) != 2 || hist[0].Tid != tids[2] {
		t.Errorf("History(size 2) = %+v, %v", hist, err)
	}
	if _, err := s.History(ctx, 99, 1); !isNotFound(err) {
		t.Errorf("History of an unknown oid: %v, want NotFoundError", err)
	}
}

func zeros(n int) []byte { return make([]byte, n) }

func testNewOIDs(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxOf(t)
	seen := map[stack.Oid]bool{}
	check := func(oids []stack.Oid) {
		t.Helper()
		for _, o := range oids {
			if o == 0 || seen[o] {
				t.Fatalf("NewOIDs handed out %s twice or the root", o)
			}
			seen[o] = true
		}
	}
	oids, err := s.NewOIDs(ctx, 100)
	if err != nil || len(oids) != 100 {
		t.Fatalf("NewOIDs(100) = %d oids, %v", len(oids), err)
	}
	check(oids)
	var max stack.Oid
	for _, o := range oids {
		max = stack.Oid(maxU(uint64(max), uint64(o)))
	}
	stored := max + 1000
	commit(t, s, st(stored, 0, "x"))
	seen[stored] = true
	more, err := s.NewOIDs(ctx, 2000)
	if err != nil {
		t.Fatal(err)
	}
	check(more)
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

func testTwoPhaseCommit(t *testing.T, h Harness) {
	t.Run("Ordering", func(t *testing.T) {
		s := open(t, h)
		var last stack.Tid
		for i := 0; i < 5; i++ {
			tid := commit(t, s, st(stack.Oid(i+1), 0, "x"))
			if tid <= last {
				t.Fatalf("tid %s does not follow %s", tid, last)
			}
			last = tid
		}
	})
	t.Run("Conflicts", func(t *testing.T) {
		s := open(t, h)
		ctx := ctxOf(t)
		t1 := commit(t, s, st(1, 0, "a"), st(2, 0, "b"))
		t2 := commit(t, s, st(1, t1, "a2"), st(2, t1, "b2"))
		_, err := tryCommit(ctx, s, stack.TxnMeta{}, st(1, t1, "stale1"), st(2, t1, "stale2"), st(3, 0, "new"))
		oids := conflictOids(err)
		if len(oids) == 0 {
			t.Fatalf("stale store: %v, want a conflict", err)
		}
		// With Store not reporting, Vote must report all of them.
		txn, err := s.Begin(ctx, stack.TxnMeta{})
		if err != nil {
			t.Fatal(err)
		}
		var fromStore []stack.Oid
		for _, o := range []op{st(1, t1, "stale1"), st(2, t1, "stale2")} {
			if err := txn.Store(ctx, o.oid, o.serial, o.data); err != nil {
				var ce *stack.ConflictError
				if !errors.As(err, &ce) || string(ce.Data) != string(o.data) || ce.Committed != t2 || ce.Read != t1 {
					t.Fatalf("Store conflict = %v (%#v)", err, ce)
				}
				fromStore = append(fromStore, ce.Oid)
			}
		}
		_, err = txn.Vote(ctx)
		if len(fromStore) < 2 {
			// What Store did not report, Vote reports, all of it at once.
			var cs stack.Conflicts
			if !errors.As(err, &cs) {
				t.Fatalf("Vote with stale serials: %v, want Conflicts", err)
			}
			if len(cs)+len(fromStore) != 2 {
				t.Fatalf("Vote reported %d conflicts, %d at Store; want 2 in all", len(cs), len(fromStore))
			}
			for _, c := range cs {
				if c.Committed != t2 || c.Read != t1 || string(c.Data) != fmt.Sprintf("stale%d", uint64(c.Oid)) {
					t.Errorf("conflict %+v lacks serials or data", c)
				}
			}
		}
		_ = txn.Abort(ctx)
		wantData(t, s, 1, "a2", t2)
		wantNotFound(t, s, 3)
		// New object stored over an existing one: conflict too.
		if _, err := tryCommit(ctx, s, stack.TxnMeta{}, st(1, 0, "x")); len(conflictOids(err)) == 0 {
			t.Fatalf("store with serial 0 over an existing object: %v, want a conflict", err)
		}
	})
	t.Run("CheckCurrentSerial", func(t *testing.T) {
		s := open(t, h)
		ctx := ctxOf(t)
		t1 := commit(t, s, st(1, 0, "a"), st(2, 0, "b"))
		t2 := commit(t, s, st(1, t1, "a2"))
		run := func(read stack.Tid) error {
			txn, err := s.Begin(ctx, stack.TxnMeta{})
			if err != nil {
				return err
			}
			defer txn.Abort(ctx)
			if err := txn.Store(ctx, 2, t1, []byte("b2")); err != nil {
				return err
			}
			if err := txn.CheckCurrentSerial(ctx, 1, read); err != nil {
				return err
			}
			if _, err := txn.Vote(ctx); err != nil {
				return err
			}
			_, err = txn.Finish(ctx)
			return err
		}
		var rc *stack.ReadConflictError
		if err := run(t1); !errors.As(err, &rc) || rc.Oid != 1 {
			t.Fatalf("stale checkCurrentSerial: %v, want ReadConflictError on oid 1", err)
		}
		wantData(t, s, 2, "b", t1)
		if err := run(t2); err != nil {
			t.Fatalf("current checkCurrentSerial: %v", err)
		}
	})
	t.Run("Abort", func(t *testing.T) {
		s := open(t, h)
		ctx := ctxOf(t)
		t1 := commit(t, s, st(1, 0, "a"))
		for step := 0; step < 3; step++ {
			txn, err := s.Begin(ctx, stack.TxnMeta{})
			if err != nil {
				t.Fatal(err)
			}
			if step >= 1 {
				if err := txn.Store(ctx, 1, t1, []byte("aborted")); err != nil {
					t.Fatal(err)
				}
			}
			if step >= 2 {
				if _, err := txn.Vote(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if err := txn.Abort(ctx); err != nil {
				t.Fatalf("abort at step %d: %v", step, err)
			}
			if err := txn.Abort(ctx); err != nil {
				t.Fatalf("second abort at step %d: %v", step, err)
			}
			wantData(t, s, 1, "a", t1)
			if last, _ := s.LastTransaction(ctx); last != t1 {
				t.Fatalf("abort at step %d moved LastTransaction to %s", step, last)
			}
		}
		// The storage is not left locked.
		commit(t, s, st(1, t1, "b"))
	})
	t.Run("ExplicitTid", func(t *testing.T) {
		if !h.caps(t).Restore {
			t.Skip("capability Restore not reported")
		}
		s := open(t, h)
		ctx := ctxOf(t)
		t1 := commit(t, s, st(1, 0, "a"))
		want := t1 + 1000
		tid, err := tryCommit(ctx, s, stack.TxnMeta{Tid: want}, st(1, t1, "b"))
		if err != nil || tid != want {
			t.Fatalf("explicit tid: got %s, %v; want %s", tid, err, want)
		}
		wantData(t, s, 1, "b", want)
	})
	t.Run("Interleaved", func(t *testing.T) {
		// A second Begin while a transaction is open either waits for it or
		// proceeds; both must commit, in order.
		s := open(t, h)
		ctx := ctxOf(t)
		txn, err := s.Begin(ctx, stack.TxnMeta{})
		if err != nil {
			t.Fatal(err)
		}
		second := make(chan stack.Tid, 1)
		go func() {
			tid, err := tryCommit(ctx, s, stack.TxnMeta{}, st(2, 0, "b"))
			if err != nil {
				t.Error(err)
			}
			second <- tid
		}()
		if err := txn.Store(ctx, 1, 0, []byte("a")); err != nil {
			t.Fatal(err)
		}
		if _, err := txn.Vote(ctx); err != nil {
			t.Fatal(err)
		}
		t1, err := txn.Finish(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t2 := <-second
		if t1 == t2 || t2 == 0 {
			t.Fatalf("tids %s and %s", t1, t2)
		}
		wantData(t, s, 1, "a", t1)
		wantData(t, s, 2, "b", t2)
	})
	t.Run("DoubleStore", func(t *testing.T) {
		s := open(t, h)
		tid := commit(t, s, st(1, 0, "first"), st(1, 0, "last"))
		wantData(t, s, 1, "last", tid)
	})
	t.Run("FinishBeforeVote", func(t *testing.T) {
		s := open(t, h)
		ctx := ctxOf(t)
		txn, err := s.Begin(ctx, stack.TxnMeta{})
		if err != nil {
			t.Fatal(err)
		}
		defer txn.Abort(ctx)
		if err := txn.Store(ctx, 1, 0, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := txn.Finish(ctx); !errors.Is(err, stack.ErrTxnState) {
			t.Fatalf("Finish without Vote: %v, want ErrTxnState", err)
		}
	})
}

// caps opens a storage just to read its capabilities.
func (h Harness) caps(t *testing.T) stack.Capabilities {
	s := h.Open(t)
	defer s.Close()
	return s.Capabilities()
}

func iterateAll(t *testing.T, s stack.Storage, start, stop stack.Tid) []stack.TxnRecord {
	t.Helper()
	ctx := ctxOf(t)
	it, ok := stack.AsIterator(s)
	if !ok {
		t.Fatal("no Iterator")
	}
	ti, err := it.Iterate(ctx, start, stop)
	if err != nil {
		t.Fatal(err)
	}
	defer ti.Close()
	var out []stack.TxnRecord
	for {
		rec, ok, err := ti.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, rec)
	}
}

func testIterate(t *testing.T, h Harness) {
	s := open(t, h)
	if _, ok := stack.AsIterator(s); !ok {
		t.Skip("capability Iterate not reported")
	}
	ctx := ctxOf(t)
	ext, err := stack.EncodeExtension(map[string]any{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	meta := stack.TxnMeta{User: []byte("/ alice"), Description: []byte("first"), Extension: ext}
	t1, err := tryCommit(ctx, s, meta, st(1, 0, "a"), st(2, 0, "b"))
	if err != nil {
		t.Fatal(err)
	}
	t2 := commit(t, s, st(1, t1, "a2"))
	t3 := commit(t, s, st(2, t1, "b2"))
	all := iterateAll(t, s, 0, 0)
	if len(all) != 3 || all[0].Tid != t1 || all[1].Tid != t2 || all[2].Tid != t3 {
		t.Fatalf("Iterate = %d txns, want t1 t2 t3", len(all))
	}
	first := all[0]
	if string(first.User) != "/ alice" || string(first.Description) != "first" || string(first.Extension) != string(ext) || (first.Status != ' ' && first.Status != 0) {
		t.Errorf("first txn meta = %+v", first.TxnMeta)
	}
	recs := map[stack.Oid]string{}
	for _, r := range first.Records {
		if r.Tid != t1 {
			t.Errorf("record tid %s in txn %s", r.Tid, t1)
		}
		recs[r.Oid] = string(r.Data)
	}
	if !reflect.DeepEqual(recs, map[stack.Oid]string{1: "a", 2: "b"}) {
		t.Errorf("first txn records = %v", recs)
	}
	if mid := iterateAll(t, s, t2, t2); len(mid) != 1 || mid[0].Tid != t2 {
		t.Errorf("Iterate(t2, t2) = %d txns", len(mid))
	}
	if tail := iterateAll(t, s, t2, 0); len(tail) != 2 {
		t.Errorf("Iterate(t2, 0) = %d txns, want 2", len(tail))
	}
}

func testRecordIter(t *testing.T, h Harness) {
	s := open(t, h)
	ri, ok := stack.AsRecordIterator(s)
	if !ok {
		t.Skip("capability RecordIter not reported")
	}
	ctx := ctxOf(t)
	t1 := commit(t, s, st(0, 0, "r"), st(3, 0, "c"), st(7, 0, "g"))
	t2 := commit(t, s, st(3, t1, "c2"))
	want := map[stack.Oid]string{0: "r", 3: "c2", 7: "g"}
	got := map[stack.Oid]string{}
	from := stack.Oid(0)
	for i := 0; i < 10; i++ {
		rec, next, more, err := ri.RecordIterNext(ctx, from)
		if err != nil {
			t.Fatal(err)
		}
		got[rec.Oid] = string(rec.Data)
		if rec.Oid == 3 && rec.Tid != t2 {
			t.Errorf("record of oid 3 has tid %s, want %s", rec.Tid, t2)
		}
		if !more {
			break
		}
		from = next
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("RecordIterNext walk = %v, want %v", got, want)
	}
}

func testRestore(t *testing.T, h Harness) {
	s := open(t, h)
	if !s.Capabilities().Restore {
		t.Skip("capability Restore not reported")
	}
	ctx := ctxOf(t)
	t1 := stack.TidFromTime(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
	restore := func(tid stack.Tid, status byte, oid stack.Oid, data []byte, prev stack.Tid) {
		t.Helper()
		txn, err := s.Begin(ctx, stack.TxnMeta{Tid: tid, Status: status, User: []byte("copier")})
		if err != nil {
			t.Fatal(err)
		}
		rt, ok := txn.(stack.RestoreTxn)
		if !ok {
			t.Fatal("Restore reported but the Txn is no RestoreTxn")
		}
		if err := rt.Restore(ctx, oid, data, prev); err != nil {
			t.Fatal(err)
		}
		if _, err := txn.Vote(ctx); err != nil {
			t.Fatal(err)
		}
		if got, err := txn.Finish(ctx); err != nil || got != tid {
			t.Fatalf("Finish = %s, %v; want %s", got, err, tid)
		}
	}
	restore(t1, 0, 1, []byte("one"), 0)
	restore(t1+5, 'p', 1, []byte("two"), 0)
	restore(t1+9, 0, 1, []byte("one"), t1)
	wantData(t, s, 1, "one", t1+9)
	if d, err := s.LoadSerial(ctx, 1, t1+5); err != nil || string(d) != "two" {
		t.Fatalf("LoadSerial = %q, %v", d, err)
	}
	restore(t1+10, 0, 2, nil, 0)
	wantNotFound(t, s, 2)
	if _, ok := stack.AsIterator(s); ok {
		all := iterateAll(t, s, 0, 0)
		if len(all) != 4 || all[1].Status != 'p' || all[0].Tid != t1 || all[3].Records[0].Data != nil {
			t.Fatalf("iteration after restore does not show the restored transactions")
		}
	}
	// Restoring over an existing object needs no serial.
	restore(t1+11, 0, 1, []byte("three"), 0)
	wantData(t, s, 1, "three", t1+11)
}

// undo runs a transaction undoing id and returns the undone oids: those
// Undo returned and those Vote reported (the contract lets a storage name
// them at either).
func undo(t *testing.T, s stack.Storage, id []byte) ([]stack.Oid, stack.Tid, error) {
	t.Helper()
	ctx := ctxOf(t)
	txn, err := s.Begin(ctx, stack.TxnMeta{Description: []byte("undo")})
	if err != nil {
		return nil, 0, err
	}
	ut, ok := txn.(stack.UndoTxn)
	if !ok {
		t.Fatal("Undo reported but the Txn is no UndoTxn")
	}
	oids, err := ut.Undo(ctx, id)
	if err != nil {
		_ = txn.Abort(ctx)
		return nil, 0, err
	}
	voted, err := txn.Vote(ctx)
	if err != nil {
		_ = txn.Abort(ctx)
		return nil, 0, err
	}
	for _, o := range voted {
		if !slices.Contains(oids, o) {
			oids = append(oids, o)
		}
	}
	tid, err := txn.Finish(ctx)
	return oids, tid, err
}

func testUndo(t *testing.T, h Harness) {
	s := open(t, h)
	u, ok := stack.AsUndoer(s)
	if !ok {
		t.Skip("capability Undo not reported")
	}
	ctx := ctxOf(t)
	t1 := commit(t, s, st(1, 0, "a1"))
	t2 := commit(t, s, st(1, t1, "a2"), st(2, 0, "b1"))
	log, err := u.UndoLog(ctx, 0, -20, nil)
	if err != nil || len(log) != 2 || log[0].Tid != t2 || log[1].Tid != t1 {
		t.Fatalf("UndoLog = %+v, %v", log, err)
	}
	if one, err := u.UndoLog(ctx, 1, 2, nil); err != nil || len(one) != 1 || one[0].Tid != t1 {
		t.Fatalf("UndoLog(1, 2) = %+v, %v", one, err)
	}
	oids, t3, err := undo(t, s, log[0].ID)
	if err != nil {
		t.Fatalf("undo t2: %v", err)
	}
	sort.Slice(oids, func(i, j int) bool { return oids[i] < oids[j] })
	if !reflect.DeepEqual(oids, []stack.Oid{1, 2}) {
		t.Errorf("undo returned oids %v, want [1 2]", oids)
	}
	wantData(t, s, 1, "a1", t3)
	wantNotFound(t, s, 2)
	// Undoing the undo brings t2's state back.
	log, err = u.UndoLog(ctx, 0, -20, nil)
	if err != nil || len(log) != 3 || log[0].Tid != t3 || log[2].Tid != t1 {
		t.Fatalf("UndoLog after undo = %+v, %v", log, err)
	}
	_, t4, err := undo(t, s, log[0].ID)
	if err != nil {
		t.Fatalf("undo of the undo: %v", err)
	}
	wantData(t, s, 1, "a2", t4)
	wantData(t, s, 2, "b1", t4)
	// t1 cannot be undone: oid 1 changed since.
	t5 := commit(t, s, st(1, t4, "a5"))
	var ue *stack.UndoError
	if _, _, err := undo(t, s, log[2].ID); !errors.As(err, &ue) {
		t.Fatalf("undo of an overwritten txn: %v, want UndoError", err)
	}
	wantData(t, s, 1, "a5", t5)
	if _, _, err := undo(t, s, []byte("no such id")); !errors.As(err, &ue) {
		t.Fatalf("undo of an unknown id: %v, want UndoError", err)
	}
}

func testPack(t *testing.T, h Harness) {
	if !h.caps(t).Pack {
		t.Skip("capability Pack not reported")
	}
	packer := func(s stack.Storage) stack.Packer { p, _ := stack.AsPacker(s); return p }
	pause := func() time.Time {
		time.Sleep(20 * time.Millisecond)
		now := time.Now()
		time.Sleep(20 * time.Millisecond)
		return now
	}
	t.Run("KeepHistory", func(t *testing.T) {
		s := open(t, h)
		ctx := ctxOf(t)
		t1 := commit(t, s, st(1, 0, "a1"))
		t2 := commit(t, s, st(1, t1, "a2"))
		pt := pause()
		t3 := commit(t, s, st(1, t2, "a3"))
		if err := packer(s).Pack(ctx, pt, false); err != nil {
			t.Fatal(err)
		}
		wantData(t, s, 1, "a3", t3)
		if r, err := s.LoadBefore(ctx, 1, t3); err != nil || string(r.Data) != "a2" || r.Serial != t2 || r.NextSerial != t3 {
			t.Fatalf("state at pack time lost: %+v, %v", r, err)
		}
		if _, err := s.LoadSerial(ctx, 1, t1); !isNotFound(err) {
			t.Fatalf("revision before the pack time survived: %v", err)
		}
	})
	gcCase := func(t *testing.T, gc bool) {
		s := open(t, h)
		ctx := ctxOf(t)
		t1 := commit(t, s, op{oid: 0, data: record("root", 1, 2)}, op{oid: 1, data: record("one")}, op{oid: 2, data: record("two")})
		t2 := commit(t, s, op{oid: 0, serial: t1, data: record("root", 1)})
		if err := packer(s).Pack(ctx, pause(), gc); err != nil {
			t.Fatal(err)
		}
		if r := current(t, s, 0); r.Serial != t2 {
			t.Fatalf("root lost")
		}
		current(t, s, 1)
		if gc {
			wantNotFound(t, s, 2)
		} else {
			current(t, s, 2)
		}
	}
	t.Run("GC", func(t *testing.T) { gcCase(t, true) })
	t.Run("NoGC", func(t *testing.T) { gcCase(t, false) })
	t.Run("WhileCommitting", func(t *testing.T) {
		s := open(t, h)
		ctx := ctxOf(t)
		serial := commit(t, s, op{oid: 0, data: record("root", 1)}, op{oid: 1, data: record("0")})
		var wg sync.WaitGroup
		wg.Add(1)
		var last stack.Tid
		go func() {
			defer wg.Done()
			for i := 1; i <= 30; i++ {
				tid, err := tryCommit(ctx, s, stack.TxnMeta{}, op{oid: 1, serial: serial, data: record(fmt.Sprint(i))})
				if err != nil {
					t.Error(err)
					return
				}
				serial = tid
			}
			last = serial
		}()
		for i := 0; i < 5; i++ {
			if err := packer(s).Pack(ctx, time.Now(), true); err != nil {
				t.Error(err)
			}
		}
		wg.Wait()
		wantData(t, s, 1, string(record("30")), last)
	})
}

func recv(t *testing.T, ch <-chan stack.Event) (stack.Event, bool) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		return ev, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
		return stack.Event{}, false
	}
}

func testWatch(t *testing.T, h Harness) {
	s := open(t, h)
	t0 := commit(t, s, st(1, 0, "a"))
	ch1 := make(chan stack.Event)
	if at0 := s.Watch(ch1); at0 != t0 {
		t.Fatalf("Watch at0 = %s, want last tid %s", at0, t0)
	}
	t1 := commit(t, s, st(1, t0, "b"), st(2, 0, "c"))
	ch2 := make(chan stack.Event, 10)
	if at0 := s.Watch(ch2); at0 != t1 {
		t.Fatalf("second Watch at0 = %s, want %s", at0, t1)
	}
	t2 := commit(t, s, st(2, t1, "d"))
	for _, want := range []stack.Event{{Tid: t1, Oids: []stack.Oid{1, 2}}, {Tid: t2, Oids: []stack.Oid{2}}} {
		ev, ok := recv(t, ch1)
		sort.Slice(ev.Oids, func(i, j int) bool { return ev.Oids[i] < ev.Oids[j] })
		if !ok || !reflect.DeepEqual(ev, want) {
			t.Fatalf("watcher 1 got %+v (open %v), want %+v", ev, ok, want)
		}
	}
	if ev, _ := recv(t, ch2); ev.Tid != t2 {
		t.Fatalf("watcher 2 got %s, want only %s", ev.Tid, t2)
	}
	s.Unwatch(ch2)
	if _, ok := recv(t, ch2); ok {
		t.Fatal("channel open after Unwatch")
	}
	_ = s.Close()
	if _, ok := recv(t, ch1); ok {
		t.Fatal("channel open after Close")
	}
}

func testConcurrency(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxOf(t)
	const writers, commits = 4, 15
	var wg sync.WaitGroup
	final := make([]stack.Tid, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			oid := stack.Oid(w + 1)
			var serial stack.Tid
			for i := 0; i < commits; i++ {
				// a shared object too, retried on conflict
				for {
					shared, err := s.LoadBefore(ctx, 100, stack.MaxTid)
					if err != nil && !isNotFound(err) {
						t.Error(err)
						return
					}
					tid, err := tryCommit(ctx, s, stack.TxnMeta{}, st(oid, serial, fmt.Sprint(i)), st(100, shared.Serial, fmt.Sprint(w)))
					if len(conflictOids(err)) > 0 {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					serial = tid
					break
				}
			}
			final[w] = serial
		}(w)
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for r := 0; r < 4; r++ {
		readers.Add(1)
		go func(r int) {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				rev, err := s.LoadBefore(ctx, stack.Oid(r+1), stack.MaxTid)
				if err != nil && !isNotFound(err) {
					t.Error(err)
					return
				}
				if rev.Found() {
					if _, err := s.LoadSerial(ctx, stack.Oid(r+1), rev.Serial); err != nil {
						t.Error(err)
						return
					}
				}
				if _, err := s.History(ctx, 100, 5); err != nil && !isNotFound(err) {
					t.Error(err)
					return
				}
			}
		}(r)
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	for w := 0; w < writers; w++ {
		wantData(t, s, stack.Oid(w+1), fmt.Sprint(commits-1), final[w])
	}
}

func testAfterClose(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := ctxOf(t)
	tid := commit(t, s, st(1, 0, "a"))
	txn, err := s.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	closed := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, stack.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", what, err)
		}
	}
	_, err = s.LoadBefore(ctx, 1, stack.MaxTid)
	closed("LoadBefore", err)
	_, err = s.LoadSerial(ctx, 1, tid)
	closed("LoadSerial", err)
	_, err = s.History(ctx, 1, 1)
	closed("History", err)
	_, err = s.LastTransaction(ctx)
	closed("LastTransaction", err)
	_, err = s.NewOIDs(ctx, 1)
	closed("NewOIDs", err)
	_, err = s.Info(ctx)
	closed("Info", err)
	_, err = s.Begin(ctx, stack.TxnMeta{})
	closed("Begin", err)
	// A transaction begun before Close cannot commit after it: the first of
	// its steps that fails says so.
	err = txn.Store(ctx, 1, tid, []byte("x"))
	if err == nil {
		_, err = txn.Vote(ctx)
	}
	if err == nil {
		_, err = txn.Finish(ctx)
	}
	closed("a transaction begun before Close", err)
	_ = txn.Abort(ctx)
}

func testPersistence(t *testing.T, h Harness) {
	if h.Reopen == nil {
		t.Skip("backend is not persistent (no Harness.Reopen)")
	}
	s := h.Open(t)
	t1 := commit(t, s, st(1, 0, "a"))
	t2 := commit(t, s, st(1, t1, "b"), st(2, 0, "c"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = h.Reopen(t, s)
	defer s.Close()
	ctx := ctxOf(t)
	wantData(t, s, 1, "b", t2)
	wantData(t, s, 2, "c", t2)
	if d, err := s.LoadSerial(ctx, 1, t1); err != nil || string(d) != "a" {
		t.Fatalf("old revision after reopen: %q, %v", d, err)
	}
	if last, err := s.LastTransaction(ctx); err != nil || last != t2 {
		t.Fatalf("LastTransaction after reopen = %s, %v", last, err)
	}
	oids, err := s.NewOIDs(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range oids {
		if o <= 2 {
			t.Fatalf("NewOIDs after reopen reused %s", o)
		}
	}
	t3 := commit(t, s, st(1, t2, "d"))
	if t3 <= t2 {
		t.Fatalf("tid after reopen %s does not follow %s", t3, t2)
	}
}

//go:build interop

package filestorage

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/interop/pyenv"
	"github.com/zeoraid/zeoraid/stack"
)

func hexOrNil(b []byte) any {
	if b == nil {
		return nil
	}
	return hex.EncodeToString(b)
}

func tidOrNil(t stack.Tid) any {
	if t == 0 {
		return nil
	}
	return t.Hex()
}

// goDump builds, from the Go storage, the same structure testdata/dump.py
// prints for Python's FileStorage.
func goDump(t *testing.T, s *Storage) map[string]any {
	t.Helper()
	ctx := context.Background()
	it, err := s.Iterate(ctx, 0, 0)
	must(t, err)
	defer it.Close()
	var tids []stack.Tid
	var records []any
	for {
		txn, ok, err := it.Next(ctx)
		must(t, err)
		if !ok {
			break
		}
		tids = append(tids, txn.Tid)
		recs := []any{}
		for _, r := range txn.Records {
			recs = append(recs, map[string]any{"oid": hex.EncodeToString(r.Oid.Bytes()), "tid": r.Tid.Hex(), "data": hexOrNil(r.Data), "data_txn": tidOrNil(r.DataTxn)})
		}
		records = append(records, map[string]any{
			"tid": txn.Tid.Hex(), "status": string(rune(txn.Status)), "user": hex.EncodeToString(txn.User),
			"description": hex.EncodeToString(txn.Description), "extension": hex.EncodeToString(txn.Extension), "records": recs,
		})
	}
	loads := map[string]any{}
	s.mu.RLock()
	oids := make([]stack.Oid, 0, s.ix.len())
	for oid := range s.ix.all() {
		oids = append(oids, oid)
	}
	s.mu.RUnlock()
	slices.Sort(oids)
	for _, oid := range oids {
		var answers []any
		for _, before := range append(slices.Clone(tids), stack.MaxTid) {
			r, err := s.LoadBefore(ctx, oid, before)
			switch {
			case isNotFound(err):
				answers = append(answers, "POSKeyError")
			case err != nil:
				t.Fatalf("loadBefore(%s, %s): %v", oid, before, err)
			case !r.Found():
				answers = append(answers, nil)
			default:
				answers = append(answers, []any{hex.EncodeToString(r.Data), r.Serial.Hex(), tidOrNil(r.NextSerial)})
			}
		}
		loads[hex.EncodeToString(oid.Bytes())] = answers
	}
	ul, err := s.UndoLog(ctx, 0, 1000, nil)
	must(t, err)
	undo := []any{}
	for _, u := range ul {
		undo = append(undo, map[string]any{"id": string(u.ID), "size": u.Size})
	}
	info, err := s.Info(ctx)
	must(t, err)
	tidsHex := []any{}
	for _, tid := range tids {
		tidsHex = append(tidsHex, tid.Hex())
	}
	out := map[string]any{"tids": tidsHex, "loads": loads, "undo": undo, "records": records, "size": info.Size, "len": info.Length}
	// Normalise through JSON like the Python side.
	b, err := json.Marshal(out)
	must(t, err)
	var norm map[string]any
	must(t, json.Unmarshal(b, &norm))
	return norm
}

func compareDumps(t *testing.T, goSide, pySide map[string]any) {
	t.Helper()
	for _, k := range []string{"tids", "size", "len", "undo", "records", "loads"} {
		if !reflect.DeepEqual(goSide[k], pySide[k]) {
			g, _ := json.Marshal(goSide[k])
			p, _ := json.Marshal(pySide[k])
			t.Errorf("%s differs:\n go %.600s\n py %.600s", k, g, p)
		}
	}
	if len(pySide["loads"].(map[string]any)) < 2 {
		t.Errorf("too few objects compared")
	}
}

func pyDump(t *testing.T, path string, copy bool) map[string]any {
	args := []string{"testdata/dump.py", path}
	if copy {
		args = append(args, "--copy")
	}
	var d map[string]any
	must(t, json.Unmarshal(pyenv.Run(t, args...), &d))
	return d
}

func TestPythonToGo(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "Data.fs")
	pyenv.Run(t, "testdata/make_data.py", path)
	want := pyDump(t, path, false)
	orig, _ := os.ReadFile(path)

	// Python's .index decodes to the index Go builds by scanning.
	pos, pyIx, err := readIndex(path + ".index")
	must(t, err)
	scanned := newIndex()
	f, _ := os.Open(path)
	res, err := scan(reader{r: f, path: path}, int64(len(orig)), 4, 0, scanned, nil)
	f.Close()
	must(t, err)
	if pos != res.pos || !maps.Equal(indexMap(pyIx), indexMap(scanned)) {
		t.Errorf("Python index (pos %d, %d oids) != Go scan (pos %d, %d oids)", pos, pyIx.len(), res.pos, scanned.len())
	}

	s, err := Open(path, Options{ReadOnly: true}, nil)
	must(t, err)
	compareDumps(t, goDump(t, s), want)
	s.Close()

	// A writable open that uses Python's index serves the same answers.
	s, err = Open(path, Options{}, nil)
	must(t, err)
	compareDumps(t, goDump(t, s), want)

	// Copying through Restore with DataTxn as prevTxn gives a
	// byte-identical file (ZODB's copyTransactionsFrom property).
	cp := filepath.Join(dir, "copy.fs")
	copyStorage(t, s, cp)
	s.Close()
	if b, _ := os.ReadFile(cp); !bytes.Equal(b, orig) {
		t.Errorf("Go copy of the Python file is not byte-identical (%d vs %d bytes)", len(b), len(orig))
	}
}

func copyStorage(t *testing.T, src *Storage, dst string) {
	ctx := context.Background()
	d, err := Open(dst, Options{Create: true}, nil)
	must(t, err)
	defer d.Close()
	it, err := src.Iterate(ctx, 0, 0)
	must(t, err)
	defer it.Close()
	for {
		rec, ok, err := it.Next(ctx)
		must(t, err)
		if !ok {
			return
		}
		tx, err := d.Begin(ctx, rec.TxnMeta)
		must(t, err)
		for _, r := range rec.Records {
			must(t, tx.(stack.RestoreTxn).Restore(ctx, r.Oid, r.Data, r.DataTxn))
		}
		_, err = tx.Vote(ctx)
		must(t, err)
		_, err = tx.Finish(ctx)
		must(t, err)
	}
}

// writeGoHistory commits a varied history through the Go storage: stores,
// metadata and extensions, undo, delete, restore with backpointers, and a
// pack in the middle.
func writeGoHistory(t *testing.T, path string, gc bool) {
	ctx := context.Background()
	s, err := Open(path, Options{PackKeepOld: true, PackGC: true}, nil)
	must(t, err)
	defer s.Close()
	current := func(oid stack.Oid) stack.Tid {
		h, err := s.History(ctx, oid, 1)
		if err != nil {
			return 0
		}
		return h[0].Tid
	}
	store := func(meta stack.TxnMeta, objs map[stack.Oid][]byte) stack.Tid {
		return commit(t, s, meta, func(tx stack.Txn) {
			for _, oid := range slices.Sorted(maps.Keys(objs)) {
				must(t, tx.Store(ctx, oid, current(oid), objs[oid]))
			}
		})
	}
	oids, err := s.NewOIDs(ctx, 12)
	must(t, err)
	store(stack.TxnMeta{Description: []byte("initial database creation")}, map[stack.Oid][]byte{0: statePickle("root", oids[:8]...)})
	for i := 0; i < 40; i++ {
		o := oids[i%len(oids)]
		objs := map[stack.Oid][]byte{o: statePickle(fmt.Sprintf("v%d", i))}
		if i%9 == 0 {
			objs[oids[(i+1)%len(oids)]] = statePickle(fmt.Sprintf("w%d", i), o)
		}
		meta := stack.TxnMeta{User: []byte(fmt.Sprintf("/ user%d", i%3))}
		if i%5 == 0 {
			meta.Description, meta.Extension = []byte("with ext"), extKV
		}
		store(meta, objs)
		time.Sleep(time.Millisecond)
	}
	undoNewest := func() {
		ul, err := s.UndoLog(ctx, 0, 1, nil)
		must(t, err)
		commit(t, s, stack.TxnMeta{Description: []byte("undo")}, func(tx stack.Txn) {
			_, err := tx.(stack.UndoTxn).Undo(ctx, ul[0].ID)
			must(t, err)
		})
	}
	undoNewest() // a change
	undoNewest() // redo it
	fresh, err := s.NewOIDs(ctx, 1)
	must(t, err)
	store(stack.TxnMeta{}, map[stack.Oid][]byte{fresh[0]: statePickle("fresh")})
	undoNewest() // a creation: "no data" marker
	mid := time.Now()
	time.Sleep(5 * time.Millisecond)
	// Delete an object no one references, and restore a backpointer.
	victim := oids[11]
	commit(t, s, stack.TxnMeta{Description: []byte("delete")}, func(tx stack.Txn) {
		must(t, tx.(stack.DeleteTxn).Delete(ctx, victim, current(victim)))
	})
	h, err := s.History(ctx, oids[1], 3)
	must(t, err)
	if len(h) >= 2 {
		data, err := s.LoadSerial(ctx, oids[1], h[1].Tid)
		must(t, err)
		commit(t, s, stack.TxnMeta{Description: []byte("restore")}, func(tx stack.Txn) {
			must(t, tx.(stack.RestoreTxn).Restore(ctx, oids[1], data, h[1].Tid))
		})
	}
	must(t, s.Pack(ctx, mid, gc))
	// Whatever the root reaches survived the pack.
	seen := map[stack.Oid]bool{}
	for todo := []stack.Oid{0}; len(todo) > 0; {
		oid := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[oid] {
			continue
		}
		seen[oid] = true
		r, err := s.LoadBefore(ctx, oid, stack.MaxTid)
		if err != nil {
			t.Fatalf("reachable %s after pack: %v", oid, err)
		}
		refs, err := stack.Refs(r.Data)
		must(t, err)
		todo = append(todo, refs...)
	}
	if len(seen) < 5 {
		t.Errorf("only %d objects reachable", len(seen))
	}
	for i := 0; i < 5; i++ {
		store(stack.TxnMeta{Description: []byte("after pack")}, map[stack.Oid][]byte{oids[i]: statePickle(fmt.Sprintf("p%d", i))})
	}
}

func TestGoToPython(t *testing.T) {
	for _, gc := range []bool{false, true} {
		t.Run(fmt.Sprintf("gc=%v", gc), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "Data.fs")
			writeGoHistory(t, path, gc)
			out := pyenv.Run(t, "-m", "ZODB.scripts.fstest", "-v", path)
			if !strings.Contains(string(out), "no errors detected") {
				t.Errorf("fstest: %s", out)
			}
			// fsrefs loads every current object and every object it
			// references; it prints nothing when all are sound.
			if out := pyenv.Run(t, "-m", "ZODB.scripts.fsrefs", path); len(strings.TrimSpace(string(out))) != 0 {
				t.Errorf("fsrefs: %s", out)
			}
			py := pyDump(t, path, true)
			if py["index_ok"] != true || py["index_pos_ok"] != true {
				t.Errorf("Python does not read Go's .index as its own scan: ok=%v pos_ok=%v", py["index_ok"], py["index_pos_ok"])
			}
			if py["copy_identical"] != true {
				checkCopyDiff(t, path, py["copy_diff"])
			}
			s, err := Open(path, Options{ReadOnly: true}, nil)
			must(t, err)
			defer s.Close()
			compareDumps(t, goDump(t, s), py)
			var sb strings.Builder
			must(t, Check(path, &sb))
		})
	}
}

// checkCopyDiff accepts a Python copyTransactionsFrom of a packed file that
// differs from it only in the prev field of packed ('p') records: a pack
// writes prev 0 (Python's too), while restore chains a record to an older
// revision kept for a later backpointer.
func checkCopyDiff(t *testing.T, path string, diff any) {
	t.Helper()
	offs, ok := diff.([]any)
	if !ok || len(offs) == 0 {
		t.Fatalf("Python's copyTransactionsFrom of the Go file differs in length or nowhere (%v)", diff)
	}
	prevFields := map[int64]bool{}
	_, err := walkFile(path, func(txnHeader, stack.TxnMeta) error { return nil }, func(h txnHeader, d dataHeader) error {
		if h.status == statusPacked {
			for i := int64(16); i < 24; i++ {
				prevFields[d.pos+i] = true
			}
		}
		return nil
	})
	must(t, err)
	for _, o := range offs {
		if !prevFields[int64(o.(float64))] {
			t.Errorf("Python's copy differs at offset %v, not in the prev field of a packed record", o)
		}
	}
}

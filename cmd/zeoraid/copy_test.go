package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/stack"
)

// copyConf writes a copy.conf whose source and destination are the given
// section bodies (type and keys), and returns its path.
func copyConf(t *testing.T, dir, src, dst string) string {
	t.Helper()
	path := filepath.Join(dir, "copy.conf")
	text := fmt.Sprintf("%s\n%s\n", src, dst)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func fileSection(t *testing.T, name, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("<filestorage %s>\n  path %s/Data.fs\n  blob-dir %s/blobs\n</filestorage>", name, dir, dir)
}

// openTree builds the storages of a config for a test.
func openTree(t *testing.T, conf string) *stack.Tree {
	t.Helper()
	cfg, err := stack.LoadStorageConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := stack.Build(context.Background(), cfg, stack.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// history commits n rich transactions to s: new objects, updates, a blob
// every third transaction, a deletion, an undo, and finally a pack that
// leaves backpointers and packed status behind.
func history(t *testing.T, s stack.Storage, n int, pack bool) {
	t.Helper()
	ctx := context.Background()
	serials := map[stack.Oid]stack.Tid{}
	commit := func(meta stack.TxnMeta, f func(stack.Txn)) stack.Tid {
		txn, err := s.Begin(ctx, meta)
		if err != nil {
			t.Fatal(err)
		}
		f(txn)
		if _, err := txn.Vote(ctx); err != nil {
			t.Fatal(err)
		}
		tid, err := txn.Finish(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tid
	}
	oids, err := s.NewOIDs(ctx, 8)
	if err != nil {
		t.Fatal(err)
	}
	var tids []stack.Tid
	for i := 0; i < n; i++ {
		meta := stack.TxnMeta{User: []byte("copier"), Description: []byte(fmt.Sprintf("txn %d", i))}
		var wrote []stack.Oid
		tid := commit(meta, func(txn stack.Txn) {
			for j := 0; j < 3; j++ {
				oid := oids[(i+j)%len(oids)]
				data := []byte(fmt.Sprintf("object %d at %d", oid, i))
				if i%3 == 0 && j == 0 {
					blob := filepath.Join(s.(stack.Blobber).BlobTempDir(), fmt.Sprintf("b%d", i))
					if err := os.WriteFile(blob, bytes.Repeat([]byte{byte(i)}, 1000+i), 0o600); err != nil {
						t.Fatal(err)
					}
					data = []byte(fmt.Sprintf("cZODB.blob\nBlob\n%d", i))
					if err := txn.(stack.BlobTxn).StoreBlob(ctx, oid, serials[oid], data, blob); err != nil {
						t.Fatal(err)
					}
				} else if err := txn.Store(ctx, oid, serials[oid], data); err != nil {
					t.Fatal(err)
				}
				wrote = append(wrote, oid)
			}
		})
		for _, oid := range wrote {
			serials[oid] = tid
		}
		tids = append(tids, tid)
	}
	// A deletion and an undo of the last transaction.
	victim := oids[0]
	commit(stack.TxnMeta{Description: []byte("delete")}, func(txn stack.Txn) {
		if err := txn.(stack.DeleteTxn).Delete(ctx, victim, serials[victim]); err != nil {
			t.Fatal(err)
		}
	})
	u, _ := stack.AsUndoer(s)
	log, err := u.UndoLog(ctx, 0, 1, nil)
	if err != nil || len(log) != 1 {
		t.Fatalf("undoLog: %v %v", log, err)
	}
	commit(stack.TxnMeta{Description: []byte("undo")}, func(txn stack.Txn) {
		if _, err := txn.(stack.UndoTxn).Undo(ctx, log[0].ID); err != nil {
			t.Fatal(err)
		}
	})
	if !pack {
		return
	}
	// Pack at the middle of the history.
	p, _ := stack.AsPacker(s)
	if err := p.Pack(ctx, tids[n/2].Time(), false); err != nil {
		t.Fatal(err)
	}
}

// assertIdentical compares two storages as zeoraid check does, and their
// blobs byte for byte.
func assertIdentical(t *testing.T, a, b stack.Storage) {
	t.Helper()
	ctx := context.Background()
	last, err := a.LastTransaction(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := stack.CompareHistories(ctx, a, b, 0, 0, 0)
	if err != nil || res.Diff != nil || res.Last != last {
		t.Fatalf("compare: %+v %v (last %s)", res, err, last)
	}
	it, _ := stack.AsIterator(a)
	ti, err := it.Iterate(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ti.Close()
	blobs := 0
	for {
		rec, ok, err := ti.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		for _, d := range rec.Records {
			if !stack.IsBlobRecord(d.Data) {
				continue
			}
			pa, errA := a.(stack.Blobber).LoadBlob(ctx, d.Oid, rec.Tid)
			pb, errB := b.(stack.Blobber).LoadBlob(ctx, d.Oid, rec.Tid)
			if (errA == nil) != (errB == nil) {
				t.Fatalf("blob %s@%s: %v against %v", d.Oid, rec.Tid, errA, errB)
			}
			if errA != nil {
				continue
			}
			ba, _ := os.ReadFile(pa)
			bb, _ := os.ReadFile(pb)
			if !bytes.Equal(ba, bb) {
				t.Fatalf("blob %s@%s differs", d.Oid, rec.Tid)
			}
			blobs++
		}
	}
	if blobs == 0 {
		t.Fatal("no blob compared")
	}
}

func TestCopyFileStorage(t *testing.T) {
	dir := t.TempDir()
	srcDir, dstDir := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	srcConf := copyConf(t, t.TempDir(), fileSection(t, "source", srcDir), "<mappingstorage destination>\n</mappingstorage>")
	tree := openTree(t, srcConf)
	history(t, tree.Roots["source"].Storage, 30, true)
	tree.Close()

	conf := copyConf(t, dir, fileSection(t, "source", srcDir), fileSection(t, "destination", dstDir))
	var stdout, stderr bytes.Buffer
	if code := run([]string{"copy", "-q", "--verify", conf}, &stdout, &stderr); code != 0 {
		t.Fatalf("copy: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	var copied int
	if _, err := fmt.Sscanf(stdout.String(), "copied %d transactions", &copied); err != nil || copied < 20 ||
		!strings.Contains(stdout.String(), fmt.Sprintf("verified: %d transactions identical", copied)) {
		t.Fatalf("copy output: %s", stdout.String())
	}
	// A second copy into the now non-empty destination is refused.
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"copy", "-q", conf}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "not empty") {
		t.Fatalf("copy into a non-empty destination: exit %d\n%s", code, stderr.String())
	}
	// More commits to the source; --incremental copies only those.
	tree = openTree(t, conf)
	history(t, tree.Roots["source"].Storage, 5, false)
	tree.Close()
	stdout.Reset()
	if code := run([]string{"copy", "-q", "--incremental", "--verify", conf}, &stdout, &stderr); code != 0 {
		t.Fatalf("incremental copy: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "copied 7 transactions") {
		t.Fatalf("incremental copy output: %s", stdout.String())
	}
	tree = openTree(t, conf)
	assertIdentical(t, tree.Roots["source"].Storage, tree.Roots["destination"].Storage)
	// A pack of the source marks the destination's last transaction
	// packed there ('p'); --incremental still recognises it by its
	// metadata and goes on.
	history(t, tree.Roots["source"].Storage, 6, true)
	tree.Close()
	stdout.Reset()
	if code := run([]string{"copy", "-q", "--incremental", conf}, &stdout, &stderr); code != 0 {
		t.Fatalf("incremental copy after a pack: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
}

// TestCopyIncrementalMismatch: a destination that is not a copy of the
// source is refused by --incremental.
func TestCopyIncrementalMismatch(t *testing.T) {
	dir := t.TempDir()
	conf := copyConf(t, dir, fileSection(t, "source", filepath.Join(dir, "a")), fileSection(t, "destination", filepath.Join(dir, "b")))
	tree := openTree(t, conf)
	history(t, tree.Roots["source"].Storage, 4, false)
	history(t, tree.Roots["destination"].Storage, 4, false)
	tree.Close()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"copy", "-q", "--incremental", conf}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "not a copy of this source") {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
}

// TestCopyInterrupted: a copy cancelled in the middle leaves the
// destination at a whole transaction, and --incremental completes it.
func TestCopyInterrupted(t *testing.T) {
	dir := t.TempDir()
	conf := copyConf(t, dir, fileSection(t, "source", filepath.Join(dir, "a")), fileSection(t, "destination", filepath.Join(dir, "b")))
	tree := openTree(t, conf)
	src, dst := tree.Roots["source"].Storage, tree.Roots["destination"].Storage
	history(t, src, 20, true)
	ctx, cancel := context.WithCancel(context.Background())
	var seen []stack.Tid
	// With one transaction read ahead, a bulk is at most two: the copy
	// stops after the bulk that holds the seventh, or after the one
	// written while that was synced.
	done, err := stack.Copy(ctx, src, dst, stack.CopyOptions{Bound: stack.Timeout(time.Minute), ReadAhead: 1, Progress: func(p stack.CopyProgress) {
		seen = append(seen, p.Tid)
		if p.Transactions == 7 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) || done.Transactions < 7 || done.Transactions > 11 {
		t.Fatalf("interrupted copy: %+v %v", done, err)
	}
	last, err := dst.LastTransaction(context.Background())
	if err != nil || last != seen[len(seen)-1] || last != done.Tid {
		t.Fatalf("destination ends at %s (%v), want %s", last, err, done.Tid)
	}
	tree.Close()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"copy", "-q", "--incremental", "--verify", conf}, &stdout, &stderr); code != 0 {
		t.Fatalf("resume: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
}

func TestCopyConfigErrors(t *testing.T) {
	dir := t.TempDir()
	conf := copyConf(t, dir, fileSection(t, "source", filepath.Join(dir, "a")), "")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"copy", conf}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), `no storage section named "destination"`) {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	// A source that cannot be iterated (mappingstorage can; a destination
	// that cannot restore is refused before anything is written).
	stderr.Reset()
	conf = copyConf(t, dir, fileSection(t, "source", filepath.Join(dir, "a")), "<mappingstorage destination>\n</mappingstorage>")
	code := run([]string{"copy", "-q", conf}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("copy into mappingstorage: exit %d\n%s", code, stderr.String())
	}
}

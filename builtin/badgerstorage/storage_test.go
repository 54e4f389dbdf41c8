package badgerstorage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/zeoraid/zeoraid/builtin/badgerstorage"
	"github.com/zeoraid/zeoraid/stack"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// bigData is the record of the i-th object of a big transaction.
func bigData(i, size int) []byte {
	head := fmt.Sprintf("big %d ", i)
	return append([]byte(head), bytes.Repeat([]byte{byte('a' + i%26)}, max(size-len(head), 1))...)
}

// voteBig begins a transaction with n new objects of size bytes from
// oid 1 on, and votes it.
func voteBig(t *testing.T, s stack.Storage, meta stack.TxnMeta, n, size int) stack.Txn {
	t.Helper()
	ctx := context.Background()
	tx, err := s.Begin(ctx, meta)
	must(t, err)
	for i := 0; i < n; i++ {
		must(t, tx.Store(ctx, stack.Oid(i+1), 0, bigData(i, size)))
	}
	_, err = tx.Vote(ctx)
	must(t, err)
	return tx
}

// checkBig loads every object of a big transaction committed at tid.
func checkBig(t *testing.T, s stack.Storage, tid stack.Tid, n, size int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		r, err := s.LoadBefore(ctx, stack.Oid(i+1), stack.MaxTid)
		if err != nil || r.Serial != tid || !bytes.Equal(r.Data, bigData(i, size)) {
			t.Fatalf("object %d of the big transaction: serial %s, %d bytes, %v", i+1, r.Serial, len(r.Data), err)
		}
	}
}

// TestBigTransactions commits ZODB transactions far beyond Badger's batch
// limit (about 600KB and 6,500 entries with a 4MB memtable): 100,000
// objects, and 200MB. While one is being written, a reader never sees
// any of it; afterwards, and after a reopen, all of it.
func TestBigTransactions(t *testing.T) {
	for _, c := range []struct {
		name    string
		n, size int
	}{
		{"100000objects", 100_000, 100},
		{"200MB", 50, 4 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := testOptions(t)
			s := open(t, o)
			ctx := context.Background()
			t0 := commitOne(t, s, 1_000_000, 0, "before")
			var reads, seen atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					oid := stack.Oid(1 + reads.Load()%int64(c.n))
					_, err := s.LoadBefore(ctx, oid, stack.MaxTid)
					var nf *stack.NotFoundError
					if !errors.As(err, &nf) {
						seen.Add(1)
					}
					if last, _ := s.LastTransaction(ctx); last != t0 {
						seen.Add(1)
					}
					reads.Add(1)
				}
			}()
			tx := voteBig(t, s, stack.TxnMeta{}, c.n, c.size)
			close(stop)
			wg.Wait()
			if seen.Load() > 0 {
				t.Fatalf("%d of %d reads during the vote saw the transaction", seen.Load(), reads.Load())
			}
			tid, err := tx.Finish(ctx)
			must(t, err)
			checkBig(t, s, tid, c.n, c.size)
			if it := iterateAll(t, s); len(it) != 2 || len(it[1].Records) != c.n {
				t.Fatalf("iteration: %d transactions", len(it))
			}
			must(t, s.Close())
			s = open(t, o)
			defer s.Close()
			checkBig(t, s, tid, c.n, c.size)
			t.Logf("%d reads during the vote saw nothing of it", reads.Load())
		})
	}
}

func commitOne(t testing.TB, s stack.Storage, oid stack.Oid, serial stack.Tid, data string) stack.Tid {
	t.Helper()
	return commitMeta(t, s, stack.TxnMeta{}, oid, serial, data)
}

func commitMeta(t testing.TB, s stack.Storage, meta stack.TxnMeta, oid stack.Oid, serial stack.Tid, data string) stack.Tid {
	t.Helper()
	ctx := context.Background()
	tx, err := s.Begin(ctx, meta)
	must(t, err)
	must(t, tx.Store(ctx, oid, serial, []byte(data)))
	_, err = tx.Vote(ctx)
	must(t, err)
	tid, err := tx.Finish(ctx)
	must(t, err)
	return tid
}

func iterateAll(t testing.TB, s stack.Storage) []stack.TxnRecord {
	t.Helper()
	ctx := context.Background()
	it, err := s.(stack.Iterator).Iterate(ctx, 0, 0)
	must(t, err)
	defer it.Close()
	var out []stack.TxnRecord
	for {
		rec, ok, err := it.Next(ctx)
		must(t, err)
		if !ok {
			return out
		}
		out = append(out, rec)
	}
}

// wantNone checks that no object of a big transaction is visible.
func wantNone(t *testing.T, s stack.Storage, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if r, err := s.LoadBefore(context.Background(), stack.Oid(i+1), stack.MaxTid); !isNotFound(err) {
			t.Fatalf("object %d of an uncommitted transaction is visible: %+v, %v", i+1, r, err)
		}
	}
}

func isNotFound(err error) bool {
	var nf *stack.NotFoundError
	return errors.As(err, &nf)
}

// TestUncommittedRemoved leaves a big transaction half-written, by an
// abort after its vote and by closing the storage with the transaction
// still open (as a crash would), and then commits a small transaction
// with the same tid, as a RAID retrying would: only the small one's
// record may ever appear, before and after reopening.
func TestUncommittedRemoved(t *testing.T) {
	const n, size = 20_000, 100
	for _, how := range []string{"abort", "close"} {
		t.Run(how, func(t *testing.T) {
			o := testOptions(t)
			s := open(t, o)
			ctx := context.Background()
			t0 := commitOne(t, s, 1_000_000, 0, "before")
			tid := t0 + 1000
			tx := voteBig(t, s, stack.TxnMeta{Tid: tid}, n, size)
			switch how {
			case "abort":
				must(t, tx.Abort(ctx))
			case "close":
				must(t, s.Close())
				s = open(t, o)
			}
			wantNone(t, s, n)
			if got := commitMeta(t, s, stack.TxnMeta{Tid: tid}, n/2, 0, "retry"); got != tid {
				t.Fatalf("retry committed as %s, want %s", got, tid)
			}
			check := func() {
				t.Helper()
				for i := 0; i < n; i++ {
					oid := stack.Oid(i + 1)
					r, err := s.LoadBefore(ctx, oid, stack.MaxTid)
					if oid == n/2 {
						if err != nil || string(r.Data) != "retry" {
							t.Fatalf("the retried transaction's record: %q, %v", r.Data, err)
						}
					} else if !isNotFound(err) {
						t.Fatalf("object %d of the uncommitted transaction appeared: %v", oid, err)
					}
				}
				for _, rec := range iterateAll(t, s) {
					if rec.Tid == tid && len(rec.Records) != 1 {
						t.Fatalf("iteration shows %d records in the retried transaction, want 1", len(rec.Records))
					}
				}
			}
			check()
			// A later transaction moves the read version past tid.
			commitOne(t, s, 1_000_000, t0, "after")
			check()
			must(t, s.Close())
			s = open(t, o)
			defer s.Close()
			check()
		})
	}
}

// TestNewOIDsSurviveRestart: oids handed out but never stored are not
// handed out again after a reopen.
func TestNewOIDsSurviveRestart(t *testing.T) {
	o := testOptions(t)
	s := open(t, o)
	ctx := context.Background()
	first, err := s.NewOIDs(ctx, 100)
	must(t, err)
	must(t, s.Close())
	s = open(t, o)
	defer s.Close()
	again, err := s.NewOIDs(ctx, 1)
	must(t, err)
	if again[0] <= first[len(first)-1] {
		t.Fatalf("after reopen NewOIDs handed out %s again (last before: %s)", again[0], first[len(first)-1])
	}
}

// TestLocked: a second writer on the same directory gets ErrLocked, a
// read-only open is refused while the writer has it, and both work once
// it is closed.
func TestLocked(t *testing.T) {
	o := testOptions(t)
	s := open(t, o)
	_, err := badgerstorage.Open(o, "second", quiet())
	if !errors.Is(err, badgerstorage.ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	ro := o
	ro.ReadOnly = true
	if _, err := badgerstorage.Open(ro, "reader", quiet()); !errors.Is(err, badgerstorage.ErrLocked) {
		t.Fatalf("read-only open beside a writer: %v, want ErrLocked", err)
	}
	must(t, s.Close())
	r := open(t, ro)
	r2 := open(t, ro)
	must(t, r.Close())
	must(t, r2.Close())
	open(t, o).Close()
}

// TestEmptyLogFiles: a process killed right after Badger created a
// memtable log or value log file leaves it empty; the directory must
// still open, with its data.
func TestEmptyLogFiles(t *testing.T) {
	o := testOptions(t)
	s := open(t, o)
	tid := commitOne(t, s, 1, 0, "kept")
	must(t, s.Close())
	for _, name := range []string{"00099.mem", "000099.vlog"} {
		must(t, os.WriteFile(filepath.Join(string(o.Path), name), nil, 0o644))
	}
	s = open(t, o)
	defer s.Close()
	if d, err := s.LoadSerial(context.Background(), 1, tid); err != nil || string(d) != "kept" {
		t.Fatalf("after reopen: %q, %v", d, err)
	}
}

package badgerstorage_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/builtin/filestorage"
	"github.com/zeoraid/zeoraid/stack"
)

// refRecord is a ZODB-like record whose state holds persistent
// references (BINPERSID of an 8-byte oid) to refs, so pack's garbage
// collection follows them.
func refRecord(tag string, refs ...stack.Oid) []byte {
	var b bytes.Buffer
	b.WriteString("\x80\x03cparity\nNode\nq\x00N\x86q\x01.\x80\x03](")
	for _, r := range refs {
		b.WriteString("C\x08")
		b.Write(r.Bytes())
		b.WriteByte('Q')
	}
	b.WriteByte('X')
	b.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(tag))))
	b.WriteString(tag)
	b.WriteString("e.")
	return b.Bytes()
}

// parityHistory writes the same seeded history, with the same tids, to
// every storage: an object graph from the root that changes shape (so
// objects become unreachable and reachable again), with deletions.
func parityHistory(t *testing.T, seed uint64, base time.Time, txns int, ss ...stack.Storage) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 7))
	const objects = 40
	serial := map[stack.Oid]stack.Tid{}
	deleted := map[stack.Oid]bool{}
	for n := 0; n < txns; n++ {
		tid := stack.TidFromTime(base.Add(time.Duration(n) * time.Second))
		type rec struct {
			oid  stack.Oid
			data []byte
		}
		var recs []rec
		seen := map[stack.Oid]bool{}
		for k := rng.IntN(4); k >= 0; k-- {
			oid := stack.Oid(rng.IntN(objects))
			if n == 0 {
				oid = 0
			}
			if seen[oid] {
				continue
			}
			seen[oid] = true
			if oid != 0 && serial[oid] != 0 && !deleted[oid] && rng.IntN(10) == 0 {
				recs = append(recs, rec{oid: oid}) // a deletion
				continue
			}
			var refs []stack.Oid
			for j := rng.IntN(4); j > 0; j-- {
				refs = append(refs, stack.Oid(1+rng.IntN(objects-1)))
			}
			recs = append(recs, rec{oid: oid, data: refRecord(fmt.Sprintf("t%d o%d", n, oid), refs...)})
		}
		for _, s := range ss {
			tx, err := s.Begin(ctx, stack.TxnMeta{Tid: tid, Description: []byte(fmt.Sprint("txn ", n))})
			must(t, err)
			for _, r := range recs {
				if r.data == nil {
					must(t, tx.(stack.DeleteTxn).Delete(ctx, r.oid, serial[r.oid]))
				} else {
					must(t, tx.Store(ctx, r.oid, serial[r.oid], r.data))
				}
			}
			_, err = tx.Vote(ctx)
			must(t, err)
			got, err := tx.Finish(ctx)
			must(t, err)
			if got != tid {
				t.Fatalf("committed %s, want %s", got, tid)
			}
		}
		for _, r := range recs {
			serial[r.oid] = tid
			deleted[r.oid] = r.data == nil
		}
	}
}

// view describes what a storage holds of oid: its current state and the
// tids of every revision left.
func view(t *testing.T, s stack.Storage, oid stack.Oid) string {
	ctx := context.Background()
	out := ""
	r, err := s.LoadBefore(ctx, oid, stack.MaxTid)
	switch {
	case isNotFound(err):
		out = "current: none;"
	case err != nil:
		t.Fatal(err)
	default:
		out = fmt.Sprintf("current %s %q;", r.Serial, r.Data)
	}
	h, err := s.History(ctx, oid, 1000)
	if err != nil && !isNotFound(err) {
		t.Fatal(err)
	}
	for _, e := range h {
		out += " " + e.Tid.String()
	}
	return out
}

// TestPackParity packs the same history in a filestorage and a
// badgerstorage, with and without garbage collection, at several pack
// times: afterwards both keep the same objects, the same revisions of
// each and the same current data.
func TestPackParity(t *testing.T) {
	base := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	const txns = 120
	for _, gc := range []bool{false, true} {
		for _, at := range []int{10, 60, 119, 200} {
			t.Run(fmt.Sprintf("gc=%v/at=%d", gc, at), func(t *testing.T) {
				dir := t.TempDir()
				fstor, err := filestorage.Open(filepath.Join(dir, "Data.fs"), filestorage.Options{PackGC: true}, quiet())
				must(t, err)
				defer fstor.Close()
				bs := open(t, testOptions(t))
				defer bs.Close()
				parityHistory(t, uint64(at), base, txns, fstor, bs)
				packTime := base.Add(time.Duration(at)*time.Second + 500*time.Millisecond)
				ctx := context.Background()
				for _, s := range []stack.Storage{fstor, bs} {
					p, _ := stack.AsPacker(s)
					must(t, p.Pack(ctx, packTime, gc))
				}
				removed := 0
				for oid := stack.Oid(0); oid < 40; oid++ {
					f, b := view(t, fstor, oid), view(t, bs, oid)
					if f != b {
						t.Errorf("object %s after pack:\n filestorage   %s\n badgerstorage %s", oid, f, b)
					}
					if f == "current: none;" {
						removed++
					}
				}
				fi, bi := iterateAll(t, fstor), iterateAll(t, bs)
				if len(fi) != len(bi) {
					t.Errorf("after pack: filestorage iterates %d transactions, badgerstorage %d", len(fi), len(bi))
				}
				t.Logf("%d transactions left; %d objects gone entirely", len(bi), removed)
			})
		}
	}
}

// diskUsage is the space the files under dir take on disk.
func diskUsage(t testing.TB, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		}
		return nil
	})
	must(t, err)
	return n
}

// churn writes revs revisions of objects records of size bytes each
// (object 0 references every other, so all stay reachable).
func churn(t testing.TB, s stack.Storage, objects, revs, size int) {
	ctx := context.Background()
	serial := map[stack.Oid]stack.Tid{}
	var all []stack.Oid
	for i := 1; i < objects; i++ {
		all = append(all, stack.Oid(i))
	}
	for r := 0; r < revs; r++ {
		tx, err := s.Begin(ctx, stack.TxnMeta{})
		must(t, err)
		must(t, tx.Store(ctx, 0, serial[0], refRecord("root", all...)))
		for i := 1; i < objects; i++ {
			oid := stack.Oid(i)
			must(t, tx.Store(ctx, oid, serial[oid], refRecord(fmt.Sprint(r)+strings.Repeat("x", size))))
		}
		_, err = tx.Vote(ctx)
		must(t, err)
		tid, err := tx.Finish(ctx)
		must(t, err)
		for i := 0; i < objects; i++ {
			serial[stack.Oid(i)] = tid
		}
	}
}

// TestPackReclaimsSpace: after a pack that removes all but the last of
// ten revisions, the directory takes far less space, both for records
// kept in Badger's tree and for records in its value log.
func TestPackReclaimsSpace(t *testing.T) {
	for _, c := range []struct {
		name          string
		objects, size int
	}{
		{"tree", 2000, 2000},
		{"valuelog", 200, 40 << 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := testOptions(t)
			s := open(t, o)
			defer s.Close()
			churn(t, s, c.objects, 10, c.size)
			before := diskUsage(t, string(o.Path))
			p, _ := stack.AsPacker(s)
			must(t, p.Pack(context.Background(), time.Now(), true))
			after := diskUsage(t, string(o.Path))
			t.Logf("disk use %d KB before pack, %d KB after", before>>10, after>>10)
			if after*2 > before {
				t.Errorf("pack reclaimed too little: %d KB before, %d KB after", before>>10, after>>10)
			}
			for i := 1; i < c.objects; i += 97 {
				r, err := s.LoadBefore(context.Background(), stack.Oid(i), stack.MaxTid)
				if err != nil || !bytes.Equal(r.Data, refRecord("9"+strings.Repeat("x", c.size))) {
					t.Fatalf("object %d after pack: %v", i, err)
				}
			}
		})
	}
}

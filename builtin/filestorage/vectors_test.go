package filestorage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeoraid/zeoraid/stack"
)

// The worked examples of docs/filestorage.md §10.
var (
	classPM    = []byte("\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.")
	emptyState = []byte("\x80\x03}q\x01X\x04\x00\x00\x00dataq\x02}q\x03s.")
	rootChild  = []byte("\x80\x03}q\x01X\x04\x00\x00\x00dataq\x02}q\x03X\x05\x00\x00\x00childq\x04C\x08\x00\x00\x00\x00\x00\x00\x00\x01q\x05h\x00\x86q\x06Qss.")
	extKV      = []byte("\x80\x03}q\x00X\x01\x00\x00\x00kq\x01X\x01\x00\x00\x00vq\x02s.")
	emptyRoot  = append(bytes.Clone(classPM), emptyState...)
	rootWith1  = append(bytes.Clone(classPM), rootChild...)

	tid1 = stack.Tid(0x03f5945815555555)
	tid2 = stack.Tid(0x03f5945819999999)
	tid3 = stack.Tid(0x03f594581ddddddd)
)

const (
	sumOne   = "e746af28b5514ebeeb751b74f5ab5f21bf7336d2de11da594fab84e450bbec7f"
	sumThree = "4855afa865d4cd96d5fc97510d01866850fc80c0ddf1546370a8f94ecbe548e3"
	sumIndex = "0827bf95b5e2e7a0688be434bcc20c1fc2a42fad021baf966f013ddfe4144f1c"
	oneIndex = "8003 4ba6 2e 8003 4306 000000000000 4308 0000 000000000034 86 2e 8003 4e 2e"
)

func sha(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		panic(err)
	}
	return b
}

func commit(t *testing.T, s *Storage, meta stack.TxnMeta, fn func(tx stack.Txn)) stack.Tid {
	t.Helper()
	ctx := context.Background()
	tx, err := s.Begin(ctx, meta)
	if err != nil {
		t.Fatal(err)
	}
	fn(tx)
	if _, err := tx.Vote(ctx); err != nil {
		tx.Abort(ctx)
		t.Fatal(err)
	}
	tid, err := tx.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return tid
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// writeExample builds the docs/filestorage.md §10 files through the storage API.
func writeExample(t *testing.T, dir string) string {
	path := filepath.Join(dir, "Data.fs")
	ctx := context.Background()
	s, err := Open(path, Options{}, nil)
	must(t, err)
	commit(t, s, stack.TxnMeta{Tid: tid1, Description: []byte("initial database creation")}, func(tx stack.Txn) {
		must(t, tx.Store(ctx, 0, 0, emptyRoot))
	})
	if got := sha(t, path); got != sumOne {
		t.Errorf("one-transaction file sha256 %s, want %s", got, sumOne)
	}
	if got := encodeIndex(s.pos, s.ix); !bytes.Equal(got, unhex(oneIndex)) {
		t.Errorf("one-transaction index % x, want %s", got, oneIndex)
	}
	commit(t, s, stack.TxnMeta{Tid: tid2, User: []byte("/ alice"), Description: []byte("add child"), Extension: extKV}, func(tx stack.Txn) {
		must(t, tx.Store(ctx, 0, tid1, rootWith1))
		must(t, tx.Store(ctx, 1, 0, emptyRoot))
	})
	commit(t, s, stack.TxnMeta{Tid: tid3, Description: []byte("undo")}, func(tx stack.Txn) {
		oids, err := tx.(stack.UndoTxn).Undo(ctx, []byte("A/WUWBmZmZk="))
		must(t, err)
		if len(oids) != 2 {
			t.Errorf("undo touched %v", oids)
		}
	})
	must(t, s.Close())
	return path
}

func TestVectorsByteExact(t *testing.T) {
	path := writeExample(t, t.TempDir())
	if got := sha(t, path); got != sumThree {
		t.Errorf("three-transaction file sha256 %s, want %s", got, sumThree)
	}
	if got := sha(t, path+".index"); got != sumIndex {
		t.Errorf("index sha256 %s, want %s", got, sumIndex)
	}
}

func TestVectorsBehaviour(t *testing.T) {
	path := writeExample(t, t.TempDir())
	ctx := context.Background()
	s, err := Open(path, Options{ReadOnly: true}, nil)
	must(t, err)
	defer s.Close()
	info, _ := s.Info(ctx)
	if info.Size != 614 || info.Length != 2 || s.maxOid != 1 {
		t.Errorf("info %+v maxOid %d", info, s.maxOid)
	}
	last, _ := s.LastTransaction(ctx)
	if last != tid3 {
		t.Errorf("last %s", last)
	}
	checkRev := func(oid stack.Oid, before stack.Tid, data []byte, serial, next stack.Tid) {
		t.Helper()
		r, err := s.LoadBefore(ctx, oid, before)
		must(t, err)
		if !bytes.Equal(r.Data, data) || r.Serial != serial || r.NextSerial != next {
			t.Errorf("loadBefore(%d, %s) = %d bytes %s %s", oid, before, len(r.Data), r.Serial, r.NextSerial)
		}
	}
	checkRev(0, stack.MaxTid, emptyRoot, tid3, 0)
	checkRev(0, tid3, rootWith1, tid2, tid3)
	checkRev(0, tid2, emptyRoot, tid1, tid2)
	checkRev(0, tid1, nil, 0, 0)
	checkRev(1, tid3, emptyRoot, tid2, tid3)
	checkRev(1, tid2, nil, 0, 0)
	if _, err := s.LoadBefore(ctx, 1, stack.MaxTid); !isNotFound(err) {
		t.Errorf("loadBefore(1, max) err %v, want not found", err)
	}
	if _, err := s.LoadSerial(ctx, 1, tid3); !isNotFound(err) {
		t.Errorf("loadSerial(1, t3) err %v", err)
	}
	for _, tid := range []stack.Tid{tid3, tid1} {
		d, err := s.LoadSerial(ctx, 0, tid)
		must(t, err)
		if !bytes.Equal(d, emptyRoot) {
			t.Errorf("loadSerial(0, %s)", tid)
		}
	}
	h, err := s.History(ctx, 0, 10)
	must(t, err)
	if len(h) != 3 || h[0].Tid != tid3 || h[0].Size != 64 || h[1].Size != 95 || string(h[1].User) != "/ alice" || h[2].Size != 64 {
		t.Errorf("history %+v", h)
	}
	ul, err := s.UndoLog(ctx, 0, -20, nil)
	must(t, err)
	if len(ul) != 3 || ul[0].Size != 127 || ul[1].Size != 305 || ul[2].Size != 154 || string(ul[1].ID) != "A/WUWBmZmZk=" || !bytes.Equal(ul[1].Extension, extKV) {
		t.Errorf("undoLog %+v", ul)
	}
	ul, _ = s.UndoLog(ctx, 1, 2, nil)
	if len(ul) != 1 || ul[0].Tid != tid2 {
		t.Errorf("undoLog(1,2) %+v", ul)
	}
	it, err := s.Iterate(ctx, 0, 0)
	must(t, err)
	var txns []stack.TxnRecord
	for {
		rec, ok, err := it.Next(ctx)
		must(t, err)
		if !ok {
			break
		}
		txns = append(txns, rec)
	}
	it.Close()
	if len(txns) != 3 || len(txns[2].Records) != 2 {
		t.Fatalf("iterated %d txns", len(txns))
	}
	r0, r1 := txns[2].Records[0], txns[2].Records[1]
	if r0.DataTxn != tid1 || !bytes.Equal(r0.Data, emptyRoot) || r0.Tid != tid3 || r1.Data != nil || r1.DataTxn != 0 {
		t.Errorf("undo records %+v %+v", r0, r1)
	}
	if !bytes.Equal(txns[1].Extension, extKV) || txns[1].Status != ' ' {
		t.Errorf("T2 meta %+v", txns[1].TxnMeta)
	}
	rec, next, more, err := s.RecordIterNext(ctx, 0)
	must(t, err)
	if rec.Oid != 0 || rec.Tid != tid3 || !more || next != 1 {
		t.Errorf("record_iternext %+v %d %v", rec, next, more)
	}
}

func isNotFound(err error) bool {
	var nf *stack.NotFoundError
	return errors.As(err, &nf)
}

func TestDeleteVector(t *testing.T) {
	path := writeExample(t, t.TempDir())
	ctx := context.Background()
	s, err := Open(path, Options{}, nil)
	must(t, err)
	defer s.Close()
	tid4 := stack.Tid(0x03f5945822222222)
	commit(t, s, stack.TxnMeta{Tid: tid4, Description: []byte("delete root")}, func(tx stack.Txn) {
		must(t, tx.(stack.DeleteTxn).Delete(ctx, 0, tid3))
	})
	b, _ := os.ReadFile(path)
	want := unhex("03f5945822222222 0000000000000054 20 0000 000b 0000")
	want = append(want, "delete root"...)
	rec := make([]byte, 0, 50)
	rec = binary.BigEndian.AppendUint64(rec, 0)
	rec = binary.BigEndian.AppendUint64(rec, uint64(tid4))
	rec = binary.BigEndian.AppendUint64(rec, 506)
	rec = binary.BigEndian.AppendUint64(rec, 614)
	rec = append(rec, make([]byte, 2+8+8)...)
	want = append(append(want, rec...), unhex("0000000000000054")...)
	if !bytes.Equal(b[614:], want) {
		t.Errorf("delete txn\n got % x\nwant % x", b[614:], want)
	}
	if _, err := s.LoadBefore(ctx, 0, stack.MaxTid); !isNotFound(err) {
		t.Errorf("load deleted: %v", err)
	}
	r, err := s.LoadBefore(ctx, 0, tid4)
	must(t, err)
	if r.Serial != tid3 || r.NextSerial != tid4 || !bytes.Equal(r.Data, emptyRoot) {
		t.Errorf("loadBefore(0, t4) %+v", r)
	}
}

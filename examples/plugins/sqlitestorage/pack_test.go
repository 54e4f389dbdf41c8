package sqlitestorage_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/examples/plugins/sqlitestorage"
	"github.com/zeoraid/zeoraid/stack"
)

// signal is a logrus hook that closes a channel at the first entry with
// a given message.
type signal struct {
	msg  string
	seen chan struct{}
}

func (h *signal) Levels() []logrus.Level { return logrus.AllLevels }

func (h *signal) Fire(e *logrus.Entry) error {
	if e.Message == h.msg {
		select {
		case <-h.seen:
		default:
			close(h.seen)
		}
	}
	return nil
}

// persistentRef is a state pickle holding one persistent reference to
// oid (a bytes oid, BINPERSID), enough for pack's reference scanner.
func persistentRef(oid stack.Oid) []byte {
	var b bytes.Buffer
	b.WriteString("\x80\x03cpacktest\nRoot\nq\x00.\x80\x03]C\x08")
	b.Write(oid.Bytes())
	b.WriteString("Qa.")
	return b.Bytes()
}

func commitOne(t *testing.T, s stack.Storage, oid stack.Oid, serial stack.Tid, data []byte) stack.Tid {
	t.Helper()
	ctx := context.Background()
	txn, err := s.Begin(ctx, stack.TxnMeta{})
	must(t, err)
	must(t, txn.Store(ctx, oid, serial, data))
	_, err = txn.Vote(ctx)
	must(t, err)
	tid, err := txn.Finish(ctx)
	must(t, err)
	return tid
}

// TestPackKeepsObjectLinkedDuringPack: an object unreachable when pack
// surveys the history, linked again by a commit made before pack deletes
// anything, keeps its revision (pack follows what was committed since its
// survey, under the commit lock).
func TestPackKeepsObjectLinkedDuringPack(t *testing.T) {
	log := logrus.New()
	log.SetLevel(logrus.DebugLevel)
	log.SetOutput(bytes.NewBuffer(nil))
	surveyed := &signal{msg: "pack surveyed; waiting for the commit lock", seen: make(chan struct{})}
	log.AddHook(surveyed)
	s, err := sqlitestorage.Open(testOptions(t), "test", log)
	must(t, err)
	defer s.Close()
	ctx := context.Background()

	t1 := commitOne(t, s, 0, 0, persistentRef(1))
	tx := commitOne(t, s, 1, 0, []byte("\x80\x03cpacktest\nLeaf\nq\x00.\x80\x03N."))
	t2 := commitOne(t, s, 0, t1, []byte("\x80\x03cpacktest\nRoot\nq\x00.\x80\x03N.")) // oid 1 unreachable
	packTime := t2.Time().Add(time.Millisecond)

	// Hold the commit lock so that pack stops after its survey.
	txn, err := s.Begin(ctx, stack.TxnMeta{})
	must(t, err)
	packed := make(chan error, 1)
	go func() { packed <- s.Pack(ctx, packTime, true) }()
	select {
	case <-surveyed.seen:
	case err := <-packed:
		t.Fatalf("pack ended before waiting for the commit lock: %v", err)
	}
	must(t, txn.Store(ctx, 0, t2, persistentRef(1))) // linked again
	_, err = txn.Vote(ctx)
	must(t, err)
	_, err = txn.Finish(ctx)
	must(t, err)
	must(t, <-packed)

	r, err := s.LoadBefore(ctx, 1, stack.MaxTid)
	if err != nil || r.Serial != tx {
		t.Fatalf("oid 1, linked again during the pack: %+v, %v; want its revision %s", r, err, tx)
	}
	if _, err := s.LoadSerial(ctx, 0, t1); err == nil {
		t.Errorf("the root's revision before the pack time survived")
	}
}

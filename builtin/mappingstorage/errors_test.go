package mappingstorage_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/stack"
)

// buildNode opens a <mappingstorage> as the node main/1 of a tree.
func buildNode(t *testing.T) stack.Storage {
	t.Helper()
	m, _ := stack.Lookup("mappingstorage")
	s, err := m.Open(context.Background(), &stack.Node{Path: "main/1"}, &mappingstorage.Options{Name: "m"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Answers leave the storage as OpErrors naming the node; logical ones
// stay logical behind the wrapper, a closed storage is a failure.
func TestErrorsNameTheNode(t *testing.T) {
	ctx := context.Background()
	s := buildNode(t)
	_, err := s.LoadBefore(ctx, 7, stack.MaxTid)
	var nf *stack.NotFoundError
	if !errors.As(err, &nf) || nf.Oid != 7 || stack.IsBackendFailure(err) ||
		!strings.HasPrefix(err.Error(), "main/1: loadBefore 0x0000000000000007 ") {
		t.Fatalf("missing oid: %v", err)
	}
	tx, err := s.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Store(ctx, 1, 5, []byte("stale")); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Vote(ctx)
	var cs stack.Conflicts
	if !errors.As(err, &cs) || stack.IsBackendFailure(err) || !strings.HasPrefix(err.Error(), "main/1: tpc_vote: ") {
		t.Fatalf("conflict: %v", err)
	}
	_ = tx.Abort(ctx)
	s.Close()
	_, err = s.LastTransaction(ctx)
	if !errors.Is(err, stack.ErrClosed) || !stack.IsBackendFailure(err) || !strings.HasPrefix(err.Error(), "main/1: lastTransaction: ") {
		t.Fatalf("closed: %v", err)
	}
}

// Empty leaves a storage as new; its watchers stay and hear of commits
// past the history they already know.
func TestEmpty(t *testing.T) {
	ctx := context.Background()
	log, hook := test.NewNullLogger()
	s := mappingstorage.New("m", log)
	defer s.Close()
	ch := make(chan stack.Event, 8)
	s.Watch(ch)
	first := commitData(t, s, stack.TxnMeta{}, 1, "a")
	<-ch
	if err := s.Empty(ctx); err != nil {
		t.Fatal(err)
	}
	if last, _ := s.LastTransaction(ctx); last != 0 {
		t.Fatalf("last transaction %s after Empty", last)
	}
	if _, err := s.LoadBefore(ctx, 1, stack.MaxTid); err == nil {
		t.Fatal("an object survived Empty")
	}
	// History restored again up to what the watcher knows is not
	// announced twice; what follows is.
	commitData(t, s, stack.TxnMeta{Tid: first}, 1, "a")
	next := commitData(t, s, stack.TxnMeta{}, 1, "b")
	if ev := <-ch; ev.Tid != next {
		t.Fatalf("event %s, want %s", ev.Tid, next)
	}
	for _, e := range hook.AllEntries() {
		if e.Level <= logrus.WarnLevel {
			t.Errorf("logged %s: %s %v", e.Level, e.Message, e.Data)
		}
	}
}

func commitData(t *testing.T, s stack.Storage, meta stack.TxnMeta, oid stack.Oid, data string) stack.Tid {
	t.Helper()
	ctx := context.Background()
	var serial stack.Tid
	if rev, err := s.LoadBefore(ctx, oid, stack.MaxTid); err == nil {
		serial = rev.Serial
	}
	tx, err := s.Begin(ctx, meta)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Store(ctx, oid, serial, []byte(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Vote(ctx); err != nil {
		t.Fatal(err)
	}
	tid, err := tx.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return tid
}

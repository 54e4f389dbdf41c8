package mappingstorage_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/storagetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t testing.TB) stack.Storage {
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	return mappingstorage.New("Mapping Storage", log)
}

// TestConformance runs the suite without Reopen and ReadOnly: a
// mappingstorage forgets everything on Close and has no read-only mode.
func TestConformance(t *testing.T) {
	storagetest.Run(t, storagetest.Harness{Open: open, Oracle: open})
}

func TestBeginWaitsAndHonoursContext(t *testing.T) {
	s := mappingstorage.New("m", nil)
	defer s.Close()
	ctx := context.Background()
	txn, err := s.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := s.Begin(short, stack.TxnMeta{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Begin while a transaction is open: %v, want the context's deadline", err)
	}
	if err := txn.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	next, err := s.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		t.Fatalf("Begin after Abort: %v", err)
	}
	_ = next.Abort(ctx)
}

func TestExplicitTidMustIncrease(t *testing.T) {
	s := mappingstorage.New("m", nil)
	defer s.Close()
	ctx := context.Background()
	txn, err := s.Begin(ctx, stack.TxnMeta{Tid: 100})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := txn.Vote(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := txn.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	var se *stack.StorageError
	if _, err := s.Begin(ctx, stack.TxnMeta{Tid: 100}); !errors.As(err, &se) {
		t.Fatalf("Begin with a tid not after the last: %v, want StorageError", err)
	}
	// The refused Begin released the commit lock.
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	txn, err = s.Begin(short, stack.TxnMeta{})
	if err != nil {
		t.Fatal(err)
	}
	_ = txn.Abort(ctx)
}

func TestRegistered(t *testing.T) {
	m, ok := stack.Lookup("mappingstorage")
	if !ok {
		t.Fatal("mappingstorage not registered")
	}
	opts, ok := m.NewOptions().(*mappingstorage.Options)
	if !ok {
		t.Fatalf("options are %T", m.NewOptions())
	}
	opts.Name = "mine"
	s, err := m.Open(context.Background(), &stack.Node{Log: logrus.New()}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if info, err := s.Info(context.Background()); err != nil || info.Name != "mine" {
		t.Fatalf("Info = %+v, %v", info, err)
	}
}

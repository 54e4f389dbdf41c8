//go:build interop

package zeoclient_test

import (
	"context"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/interop/pyenv"
	"github.com/zeoraid/zeoraid/stack"
)

// TestAcceptReplacement: a server replaced by an empty one on the same
// address is refused (it is behind what the node has seen) until
// AcceptReplacement(true); then the node connects, reports the
// replacement's last tid and takes a restore of the old history; once
// connected, a server that goes back again is refused again.
func TestAcceptReplacement(t *testing.T) {
	srv := pyenv.StartRunzeo(t, pyenv.RunzeoOptions{Storages: []string{"s1"}, Blobs: true})
	s := open(t, options(t, "s1", srv.Addr))
	ctx := ctxT(t, time.Minute)
	t1 := commit(t, s, store{oid: 1, data: "one"})
	empty := func() {
		if err := srv.Replace(); err != nil {
			t.Fatal(err)
		}
	}
	empty()
	time.Sleep(time.Second) // several reconnection attempts
	if _, err := s.LastTransaction(ctx); err == nil || !stack.IsBackendFailure(err) {
		t.Fatalf("lastTransaction with an empty replacement: %v, want a failure (refused, not connected)", err)
	}
	s.AcceptReplacement(true)
	waitConnected(t, s)
	if last, err := s.LastTransaction(ctx); err != nil || last != 0 {
		t.Fatalf("lastTransaction of the replacement = %s, %v; want 0", last, err)
	}
	// Restoring the old transaction (as a RAID recovery does) works.
	txn, err := s.Begin(ctx, stack.TxnMeta{Tid: t1, Status: ' '})
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.(stack.RestoreTxn).Restore(ctx, 1, []byte("one"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := txn.Vote(ctx); err != nil {
		t.Fatal(err)
	}
	if tid, err := txn.Finish(ctx); err != nil || tid != t1 {
		t.Fatalf("restore finished as %s, %v; want %s", tid, err, t1)
	}
	if last, err := s.LastTransaction(ctx); err != nil || last != t1 {
		t.Fatalf("lastTransaction after the restore = %s, %v; want %s", last, err, t1)
	}
	t2 := commit(t, s, store{oid: 1, serial: t1, data: "two"})
	if rev, err := s.LoadBefore(ctx, 1, stack.MaxTid); err != nil || string(rev.Data) != "two" || rev.Serial != t2 {
		t.Fatalf("oid 1 = %q %s, %v; want two %s", rev.Data, rev.Serial, err, t2)
	}
	// The acceptance was for one connection.
	empty()
	time.Sleep(time.Second)
	if _, err := s.LastTransaction(context.Background()); err == nil {
		t.Fatal("a second empty replacement was accepted without AcceptReplacement")
	}
}

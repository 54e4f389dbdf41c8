//go:build interop

package zeoclient_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/interop/pyenv"
	"github.com/zeoraid/zeoraid/stack"
)

// pyWrite runs testdata/writer.py: n commits by a Python ZODB client
// straight to the server; it returns the last tid.
func pyWrite(t *testing.T, addr, storage string, n int) stack.Tid {
	t.Helper()
	py := pyenv.Python(t)
	out, err := exec.Command(py, filepath.Join("testdata", "writer.py"), addr, storage, strconv.Itoa(n)).CombinedOutput()
	if err != nil {
		t.Fatalf("writer.py: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var tid stack.Tid
	for _, c := range lines[len(lines)-1] {
		tid <<= 4
		switch {
		case c >= '0' && c <= '9':
			tid |= stack.Tid(c - '0')
		case c >= 'a' && c <= 'f':
			tid |= stack.Tid(c-'a') + 10
		default:
			t.Fatalf("writer.py printed %q", out)
		}
	}
	return tid
}

// TestInvalidationsFromPython: commits a Python client makes straight to
// runzeo arrive as events, in order, and the cache forgets what they
// changed before the event is seen.
func TestInvalidationsFromPython(t *testing.T) {
	for _, proto := range []struct {
		name    string
		msgpack bool
	}{{"Z5", false}, {"M5", true}} {
		t.Run(proto.name, func(t *testing.T) {
			srv := pyenv.StartRunzeo(t, pyenv.RunzeoOptions{Storages: []string{"s1"}, Blobs: true, Msgpack: proto.msgpack})
			s := open(t, options(t, "s1", srv.Addr))
			ctx := ctxT(t, time.Minute)
			first := pyWrite(t, srv.Addr, "s1", 1)
			// Wait for the node to hear of it, then cache the root.
			waitLast(t, s, first)
			root, err := s.LoadBefore(ctx, 0, stack.MaxTid)
			if err != nil || root.Serial != first {
				t.Fatalf("root = %+v, %v; want serial %s", root, err, first)
			}
			ch := make(chan stack.Event, 100)
			if at0 := s.Watch(ch); at0 != first {
				t.Fatalf("Watch at0 = %s, want %s", at0, first)
			}
			defer s.Unwatch(ch)
			last := pyWrite(t, srv.Addr, "s1", 3)
			var prev stack.Tid = first
			n := 0
			for prev != last {
				select {
				case ev := <-ch:
					if ev.Tid <= prev {
						t.Fatalf("event %s after %s", ev.Tid, prev)
					}
					if len(ev.Oids) != 2 || !containsOid(ev.Oids, 0) {
						t.Fatalf("event %s oids %v, want the root and the counter", ev.Tid, ev.Oids)
					}
					// Once the event is out, the cache has dropped the root.
					if r, err := s.LoadBefore(ctx, 0, ev.Tid+1); err != nil || r.Serial != ev.Tid {
						t.Fatalf("root at %s = serial %s, %v", ev.Tid, r.Serial, err)
					}
					prev = ev.Tid
					n++
				case <-time.After(20 * time.Second):
					t.Fatalf("no event for %s (last %s)", last, prev)
				}
			}
			if n != 3 {
				t.Fatalf("%d events for 3 commits", n)
			}
			if r, err := s.LoadBefore(ctx, 0, stack.MaxTid); err != nil || r.Serial != last || r.NextSerial != 0 {
				t.Fatalf("current root = %+v, %v; want serial %s", r, err, last)
			}
			// The old cached revision is now non-current, with its end.
			if r, err := s.LoadBefore(ctx, 0, first+1); err != nil || r.Serial != first || r.NextSerial == 0 {
				t.Fatalf("root before %s = %+v, %v", first+1, r, err)
			}
		})
	}
}

// waitLast waits until the node's last tid reaches tid.
func waitLast(t *testing.T, s stack.Storage, tid stack.Tid) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		last, err := s.LastTransaction(context.Background())
		if err == nil && last >= tid {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("last tid %s, %v; want %s", last, err, tid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitConnected polls until a load no longer fails.
func waitConnected(t *testing.T, s stack.Storage) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.LastTransaction(context.Background())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not reconnected: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKillRunzeo kills runzeo with SIGKILL at each stage of the node's
// work: errors are backend failures naming the address and come at once,
// the node reconnects to the restarted server, and an interrupted commit
// left nothing behind.
func TestKillRunzeo(t *testing.T) {
	srv := pyenv.StartRunzeo(t, pyenv.RunzeoOptions{Storages: []string{"s1"}, Blobs: true})
	s := open(t, options(t, "s1", srv.Addr))
	ctx := ctxT(t, 2*time.Minute)
	t1 := commit(t, s, store{1, 0, "one"}, store{2, 0, "two"})

	t.Run("DuringLoads", func(t *testing.T) {
		errs := make(chan error, 1)
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				c, cancel := context.WithTimeout(ctx, 10*time.Second)
				start := time.Now()
				_, err := s.LoadSerial(c, 1, t1) // not cached: always a round trip
				cancel()
				if err != nil {
					if time.Since(start) > 5*time.Second {
						err = errors.New("load hung: " + err.Error())
					}
					errs <- err
					return
				}
			}
		}()
		time.Sleep(100 * time.Millisecond)
		srv.Kill()
		select {
		case err := <-errs:
			wantFailure(t, "load", err, srv.Addr, 0)
		case <-time.After(10 * time.Second):
			close(stop)
			t.Fatal("loads go on after the server was killed")
		}
		start := time.Now()
		_, err := s.LoadBefore(ctx, 2, stack.MaxTid)
		wantFailure(t, "load while disconnected", err, srv.Addr, time.Since(start))
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		waitConnected(t, s)
		if d, err := s.LoadSerial(ctx, 1, t1); err != nil || string(d) != "one" {
			t.Fatalf("load after reconnection: %q, %v", d, err)
		}
	})

	t.Run("DuringStores", func(t *testing.T) {
		txn, err := s.Begin(ctx, stack.TxnMeta{})
		if err != nil {
			t.Fatal(err)
		}
		if err := txn.Store(ctx, 1, t1, []byte("lost")); err != nil {
			t.Fatal(err)
		}
		srv.Kill()
		start := time.Now()
		err = txn.Store(ctx, 2, t1, []byte("lost too"))
		if err == nil {
			_, err = txn.Vote(ctx)
		}
		wantFailure(t, "store/vote", err, srv.Addr, time.Since(start))
		if err := txn.Abort(ctx); err != nil {
			t.Fatalf("abort after the failure: %v", err)
		}
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		waitConnected(t, s)
		wantCurrent(t, s, 1, "one", t1)
	})

	t.Run("BetweenVoteAndFinish", func(t *testing.T) {
		txn, err := s.Begin(ctx, stack.TxnMeta{})
		if err != nil {
			t.Fatal(err)
		}
		if err := txn.Store(ctx, 1, t1, []byte("voted")); err != nil {
			t.Fatal(err)
		}
		if _, err := txn.Vote(ctx); err != nil {
			t.Fatal(err)
		}
		srv.Kill()
		start := time.Now()
		_, err = txn.Finish(ctx)
		wantFailure(t, "finish", err, srv.Addr, time.Since(start))
		txn.Abort(ctx)
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		waitConnected(t, s)
		wantCurrent(t, s, 1, "one", t1)
		// The node is usable again for commits.
		t2 := commit(t, s, store{1, t1, "after restart"})
		wantCurrent(t, s, 1, "after restart", t2)
	})

	t.Run("DuringVote", func(t *testing.T) {
		// Another node holds the commit lock, so this node's vote waits in
		// the server when it is killed.
		other := open(t, options(t, "s1", srv.Addr))
		cur, err := s.LoadBefore(ctx, 2, stack.MaxTid)
		if err != nil {
			t.Fatal(err)
		}
		holder, err := other.Begin(ctx, stack.TxnMeta{})
		if err != nil {
			t.Fatal(err)
		}
		if err := holder.Store(ctx, 3, 0, []byte("holder")); err != nil {
			t.Fatal(err)
		}
		if _, err := holder.Vote(ctx); err != nil {
			t.Fatal(err)
		}
		txn, err := s.Begin(ctx, stack.TxnMeta{})
		if err != nil {
			t.Fatal(err)
		}
		if err := txn.Store(ctx, 2, cur.Serial, []byte("waiting")); err != nil {
			t.Fatal(err)
		}
		voted := make(chan error, 1)
		var took time.Duration
		go func() {
			start := time.Now()
			_, err := txn.Vote(ctx)
			took = time.Since(start)
			voted <- err
		}()
		select {
		case err := <-voted:
			t.Fatalf("vote did not wait for the commit lock: %v", err)
		case <-time.After(300 * time.Millisecond):
		}
		killed := time.Now()
		srv.Kill()
		select {
		case err := <-voted:
			wantFailure(t, "vote", err, srv.Addr, time.Since(killed))
			_ = took
		case <-time.After(10 * time.Second):
			t.Fatal("vote hangs after the server was killed")
		}
		txn.Abort(ctx)
		_, err = holder.Finish(ctx)
		wantFailure(t, "the holder's finish", err, srv.Addr, 0)
		holder.Abort(ctx)
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		waitConnected(t, s)
		wantCurrent(t, s, 2, string(cur.Data), cur.Serial)
		if _, err := s.LoadBefore(ctx, 3, stack.MaxTid); !isNotFound(err) {
			t.Fatalf("the holder's object: %v, want not found", err)
		}
	})
}

func isNotFound(err error) bool {
	var nf *stack.NotFoundError
	return errors.As(err, &nf)
}

// TestCatchUpByIteration: runzeo keeps one transaction in its invalidation
// queue, so after three commits made while the node was cut off,
// getInvalidations answers None; the node then finds the changed objects
// by iterating the remote storage and publishes them.
func TestCatchUpByIteration(t *testing.T) {
	srv := pyenv.StartRunzeo(t, pyenv.RunzeoOptions{Storages: []string{"s1"}, Blobs: true, InvalidationQueueSize: 1})
	first := pyWrite(t, srv.Addr, "s1", 1)
	px := startProxy(t, srv.Addr)
	s := open(t, options(t, "s1", px.addr()))
	waitLast(t, s, first)
	ctx := ctxT(t, time.Minute)
	if r, err := s.LoadBefore(ctx, 0, stack.MaxTid); err != nil || r.Serial != first {
		t.Fatalf("root = %+v, %v", r, err)
	}
	ch := make(chan stack.Event, 10)
	s.Watch(ch)
	defer s.Unwatch(ch)
	px.setDown(true)
	last := pyWrite(t, srv.Addr, "s1", 3)
	px.setDown(false)
	select {
	case ev := <-ch:
		if ev.Tid != last || !containsOid(ev.Oids, 0) || len(ev.Oids) < 2 {
			t.Fatalf("catch-up event %+v, want tid %s with the root and the counter", ev, last)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no catch-up event")
	}
	if r, err := s.LoadBefore(ctx, 0, stack.MaxTid); err != nil || r.Serial != last {
		t.Fatalf("root after catch-up = serial %s, %v; want %s", r.Serial, err, last)
	}
}

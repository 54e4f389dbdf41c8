package filestorage

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// openAsNode opens a Data.fs in dir as the node main/1 of a tree would.
func openAsNode(t *testing.T, dir string, ro bool) *Storage {
	t.Helper()
	m, _ := stack.Lookup("filestorage")
	st, err := m.Open(context.Background(), &stack.Node{Path: "main/1"},
		&Options{Path: zconfig.ExistingDirPath(filepath.Join(dir, "Data.fs")), ReadOnly: ro})
	must(t, err)
	return st.(*Storage)
}

// Every answer leaves the storage as an OpError naming the node: logical
// answers stay what they are behind it, I/O failures stay failures.
func TestErrorsNameTheNode(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openAsNode(t, dir, false)
	tid := commitOne(t, s, 1, 0)

	_, err := s.LoadBefore(ctx, 7, stack.MaxTid)
	var nf *stack.NotFoundError
	if !errors.As(err, &nf) || nf.Oid != 7 || stack.IsBackendFailure(err) {
		t.Fatalf("missing oid: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "main/1: loadBefore 0x0000000000000007 ") {
		t.Fatalf("missing oid: message %q does not name the node and the call", err)
	}

	tx, err := s.Begin(ctx, stack.TxnMeta{})
	must(t, err)
	must(t, tx.Store(ctx, 1, tid-1, []byte("stale")))
	_, err = tx.Vote(ctx)
	var cs stack.Conflicts
	if !errors.As(err, &cs) || len(cs) != 1 || !strings.HasPrefix(err.Error(), "main/1: tpc_vote @") {
		t.Fatalf("conflict: %v", err)
	}
	must(t, tx.Abort(ctx))

	// The file closed underneath: reads and commits fail as the backend
	// failures they are.
	must(t, s.f.Close())
	_, err = s.LoadBefore(ctx, 1, stack.MaxTid)
	if !stack.IsBackendFailure(err) || !strings.HasPrefix(err.Error(), "main/1: loadBefore 0x0000000000000001 ") {
		t.Fatalf("read of a closed file: %v", err)
	}
	tx, err = s.Begin(ctx, stack.TxnMeta{})
	must(t, err)
	must(t, tx.Store(ctx, 2, 0, []byte("new")))
	_, err = tx.Vote(ctx)
	if !stack.IsBackendFailure(err) || !strings.HasPrefix(err.Error(), "main/1: tpc_vote @") {
		t.Fatalf("vote on a closed file: %v", err)
	}
	_ = tx.Abort(ctx)
	_ = s.Close()
	_, err = s.LastTransaction(ctx)
	if !errors.Is(err, stack.ErrClosed) || !stack.IsBackendFailure(err) || !strings.HasPrefix(err.Error(), "main/1: lastTransaction: ") {
		t.Fatalf("after close: %v", err)
	}

	ro := openAsNode(t, dir, true)
	defer ro.Close()
	_, err = ro.Begin(ctx, stack.TxnMeta{})
	if !errors.Is(err, stack.ErrReadOnly) || stack.IsBackendFailure(err) || !strings.HasPrefix(err.Error(), "main/1: tpc_begin: ") {
		t.Fatalf("read-only: %v", err)
	}
}

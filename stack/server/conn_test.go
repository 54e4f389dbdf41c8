package server_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/eventlog"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
	"go.uber.org/goleak"
)

// Every test leaves no goroutine behind: servers are shut down by their
// tests, and Shutdown waits for what it started.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// heldStorage is a mappingstorage whose pack and whose extension call
// "hold" run until the test releases them: the long calls a server runs on
// goroutines of their own. A call whose context ends says so on cancelled
// and still waits for the release, as a call slow to stop would.
type heldStorage struct {
	*mappingstorage.Storage
	started   chan string   // the name of each call as it begins
	cancelled chan string   // the name of each call that saw its context end
	release   chan struct{} // closed by the test to let the calls return
}

func newHeldStorage() *heldStorage {
	return &heldStorage{
		Storage: mappingstorage.New("held", nil),
		started: make(chan string, 10), cancelled: make(chan string, 10), release: make(chan struct{}),
	}
}

func (h *heldStorage) hold(ctx context.Context, name string) error {
	h.started <- name
	select {
	case <-h.release:
		return &stack.StorageError{Msg: name + " released"}
	case <-ctx.Done():
	}
	h.cancelled <- name
	<-h.release
	return ctx.Err()
}

func (h *heldStorage) Pack(ctx context.Context, t time.Time, gc bool) error {
	return h.hold(ctx, "pack")
}

func (h *heldStorage) Extensions() map[string]stack.Extension {
	return map[string]stack.Extension{
		"hold": func(ctx context.Context, args []any) (any, error) { return nil, h.hold(ctx, "hold") },
	}
}

// set_client_label renames the connection in its log lines while other
// goroutines of the connection log: here a pack, which runs on its own
// goroutine and logs as it starts. Under -race this is a data race unless
// the label is shared safely.
func TestClientLabelWhileCallsLog(t *testing.T) {
	st := newHeldStorage()
	ts := startServerOn(t, st)
	rc := ts.raw(t)
	rawCall(t, rc, 1, "register", "1", false)
	// The pack logs as it starts, on its own goroutine, while the reader
	// goes on to set the label; the test must not order the two (a reply
	// written in between would: the race detector takes socket I/O as
	// synchronization), so the pack holds until the label is set.
	rc.send(t, zeoproto.NewCall(int64(2), "pack", float64(1e9), true))
	rc.send(t, zeoproto.NewAsync("set_client_label", "worker-7"))
	rawCall(t, rc, 3, "ping")
	<-st.started
	close(st.release)
	if r := recvReply(t, rc, 2); !r.IsError() {
		t.Fatalf("pack reply %v, want the storage's error", r.Args)
	}
}

// Shutdown cancels the calls the server runs on their own goroutines (an
// extension call, a pack with and without wait) and waits for them: while
// they run, it does not return until its context ends, and then says so.
// Once they end, nothing the server started is left.
func TestShutdownWaitsForCalls(t *testing.T) {
	st := newHeldStorage()
	ts := startServerOn(t, st)
	rc := ts.raw(t)
	rawCall(t, rc, 1, "register", "1", false)
	rc.send(t, zeoproto.NewCall(int64(2), "hold"))
	rc.send(t, zeoproto.NewCall(int64(3), "pack", float64(1e9), false))
	rc.send(t, zeoproto.NewCall(int64(4), "pack", float64(1e9), true))
	const calls = 3
	for range calls {
		<-st.started
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for range calls {
			<-st.cancelled
		}
		cancel() // every call is cancelled and still running
	}()
	if err := ts.srv.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown returned %v while the calls it started were running; want context.Canceled", err)
	}
	close(st.release)
	if err := ts.srv.Shutdown(ctx10(t)); err != nil {
		t.Fatalf("Shutdown after the calls were released: %v", err)
	}
	goleak.VerifyNone(t)
}

// The lines operators and ZEO's tests look for read as runzeo's in the
// default format (ZEO's testZEO.client_labels and
// ConnectionTests.checkTimeout grep for these): a client that named itself
// finds its label leading the message of its connection's lines, and the
// transaction timeout is logged at CRITICAL under ZEO.StorageServer.
func TestLogLinesKeepZEOWording(t *testing.T) {
	ts := startServer(t, server.Options{TransactionTimeout: 200 * time.Millisecond})
	named := ts.raw(t)
	rawCall(t, named, 1, "register", "1", false)
	named.send(t, zeoproto.NewAsync("set_client_label", "test-label-1"))
	rawCall(t, named, 2, "ping")
	named.nc.Close()

	rc := ts.raw(t)
	rawCall(t, rc, 1, "register", "1", false)
	rc.send(t, zeoproto.NewAsync("tpc_begin", int64(3), []byte(""), []byte(""), zeoproto.Dict{}, nil, " "))
	rc.send(t, zeoproto.NewAsync("storea", stack.Oid(0), stack.Tid(0), []byte("x"), int64(3)))
	if r, _ := rawCall(t, rc, 4, "vote", int64(3)); r.IsError() {
		t.Fatalf("vote: %v", r.Args)
	}
	for { // until the server closes the connection
		if _, err := rc.recv(t); err != nil {
			break
		}
	}
	if err := ts.srv.Shutdown(ctx10(t)); err != nil { // every line is logged
		t.Fatal(err)
	}
	f := &eventlog.Formatter{Layout: eventlog.DefaultFormat}
	var lines []string
	for _, e := range ts.logs.AllEntries() {
		b, err := f.Format(e)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.TrimPrefix(string(b), "------\n"))
	}
	log := strings.Join(lines, "")
	var labelled, timeout, disconnect bool
	for _, line := range lines {
		if strings.Contains(line, "test-label-1") && !labelled {
			labelled = true
			if got := strings.Join(strings.Fields(line)[1:4], " "); got != "INFO ZEO.StorageServer (test-label-1" {
				t.Errorf("the first line with the label has %q, want \"INFO ZEO.StorageServer (test-label-1\"", got)
			}
		}
		if strings.Contains(line, "Transaction timeout after 0.2 seconds") && strings.Contains(line, "CRITICAL ZEO.StorageServer") {
			timeout = true
		}
		if strings.Contains(line, "INFO ZEO.StorageServer (") && strings.Contains(line, ") disconnected during locked transaction") &&
			strings.Contains(line, "reason=transaction timeout") {
			disconnect = true
		}
	}
	if !labelled || !timeout || !disconnect {
		t.Errorf("label line found %v, timeout line %v, disconnect line %v in\n%s", labelled, timeout, disconnect, log)
	}
}

// recvReply reads frames until the reply to msgid id.
func recvReply(t *testing.T, rc *rawConn, id int64) zeoproto.Message {
	t.Helper()
	for {
		m, err := rc.recv(t)
		if err != nil {
			t.Fatalf("waiting for the reply to %d: %v", id, err)
		}
		if n, _ := zeoproto.AsInt(m.ID); m.IsReply() && n == id {
			return m
		}
	}
}

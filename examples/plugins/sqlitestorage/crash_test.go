package sqlitestorage_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/zeoraid/zeoraid/examples/plugins/sqlitestorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// envCrashWriter makes the test binary the writer that TestCrashAfterVote
// kills: it commits one transaction, votes a second one and waits.
const envCrashWriter = "SQLITESTORAGE_CRASH_WRITER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(envCrashWriter); dir != "" {
		if err := crashWriter(dir); err != nil {
			fmt.Fprintln(os.Stderr, "crash writer:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashReport is what the writer tells the test before it is killed.
type crashReport struct {
	Committed stack.Tid
}

// crashWriter commits oid 1 and a blob of oid 2, then votes a transaction
// that changes oid 1, creates oid 3 and stores a blob for oid 4, reports
// and blocks until it is killed.
func crashWriter(dir string) error {
	ctx := context.Background()
	s, err := sqlitestorage.Open(crashOptions(dir), "crash", nil)
	if err != nil {
		return err
	}
	upload := func(content string) (string, error) {
		f, err := os.CreateTemp(s.BlobTempDir(), "upload-*")
		if err != nil {
			return "", err
		}
		_, err = f.WriteString(content)
		return f.Name(), errors.Join(err, f.Close())
	}
	txn, err := s.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		return err
	}
	if err := txn.Store(ctx, 1, 0, []byte("committed")); err != nil {
		return err
	}
	b, err := upload("committed blob")
	if err != nil {
		return err
	}
	if err := txn.(stack.BlobTxn).StoreBlob(ctx, 2, 0, []byte("blob record"), b); err != nil {
		return err
	}
	if _, err := txn.Vote(ctx); err != nil {
		return err
	}
	t1, err := txn.Finish(ctx)
	if err != nil {
		return err
	}
	txn, err = s.Begin(ctx, stack.TxnMeta{Description: []byte("never finished")})
	if err != nil {
		return err
	}
	if err := txn.Store(ctx, 1, t1, []byte("half")); err != nil {
		return err
	}
	if err := txn.Store(ctx, 3, 0, []byte("half new")); err != nil {
		return err
	}
	if b, err = upload("half blob"); err != nil {
		return err
	}
	if err := txn.(stack.BlobTxn).StoreBlob(ctx, 4, 0, []byte("blob record"), b); err != nil {
		return err
	}
	if _, err := txn.Vote(ctx); err != nil {
		return err
	}
	if err := json.NewEncoder(os.Stdout).Encode(crashReport{Committed: t1}); err != nil {
		return err
	}
	select {}
}

func crashOptions(dir string) sqlitestorage.Options {
	return sqlitestorage.Options{
		Path:    zconfig.ExistingDirPath(filepath.Join(dir, "Data.sqlite")),
		BlobDir: zconfig.ExistingDirPath(filepath.Join(dir, "blobs")),
		PackGC:  true,
	}
}

// TestCrashAfterVote kills a writer process whose second transaction
// voted (its rows written in the open SQL transaction, its blob placed)
// but did not finish: reopened, the file shows the first transaction
// whole and nothing of the second, and takes new commits.
func TestCrashAfterVote(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envCrashWriter+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var rep crashReport
	line, err := bufio.NewReader(out).ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &rep)
	}
	if kerr := cmd.Process.Kill(); kerr != nil {
		t.Fatal(kerr)
	}
	_ = cmd.Wait()
	if err != nil {
		t.Fatalf("the writer did not report its vote: %v (%q)", err, line)
	}

	ctx := context.Background()
	s := open(t, crashOptions(dir))
	defer s.Close()
	if last, err := s.LastTransaction(ctx); err != nil || last != rep.Committed {
		t.Fatalf("after the crash LastTransaction = %s, %v; want the committed %s", last, err, rep.Committed)
	}
	r, err := s.LoadBefore(ctx, 1, stack.MaxTid)
	if err != nil || string(r.Data) != "committed" || r.Serial != rep.Committed || r.NextSerial != 0 {
		t.Fatalf("oid 1 after the crash = %+v, %v; want the committed revision alone", r, err)
	}
	for _, oid := range []stack.Oid{3, 4} {
		var nf *stack.NotFoundError
		if _, err := s.LoadBefore(ctx, oid, stack.MaxTid); !errors.As(err, &nf) {
			t.Errorf("oid %s of the unfinished transaction: %v, want NotFoundError", oid, err)
		}
	}
	if hist, err := s.History(ctx, 1, 10); err != nil || len(hist) != 1 {
		t.Errorf("History(1) after the crash = %+v, %v; want one entry", hist, err)
	}
	if p, err := s.LoadBlob(ctx, 2, rep.Committed); err != nil {
		t.Errorf("committed blob after the crash: %v", err)
	} else if got, _ := os.ReadFile(p); string(got) != "committed blob" {
		t.Errorf("committed blob = %q", got)
	}
	ti, err := s.Iterate(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		_, ok, err := ti.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		n++
	}
	if n != 1 {
		t.Errorf("iteration after the crash shows %d transactions, want 1", n)
	}
	txn, err := s.Begin(ctx, stack.TxnMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Store(ctx, 3, 0, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if _, err := txn.Vote(ctx); err != nil {
		t.Fatal(err)
	}
	t2, err := txn.Finish(ctx)
	if err != nil || t2 <= rep.Committed {
		t.Fatalf("commit after the crash: %s, %v", t2, err)
	}
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

const copyUsage = `usage: zeoraid copy [--incremental] [--verify] [--dry-run] [-q] [-t timeout] copy.conf
Copies every transaction of the storage section named "source" into the one
named "destination" (any two storage types zeoraid knows, as zodbconvert
does), through the restore path: tids, status, user, description, extension,
data records and blobs stay as they are, so the two histories are identical.
The destination must be empty, unless --incremental: then the copy resumes
after the destination's last transaction, which must equal the source's
transaction with that tid. An interrupt (SIGINT, SIGTERM) lets the
transaction being written finish, so the destination always ends at a whole
transaction; --incremental resumes it later. --dry-run checks copy.conf
without opening anything.
exit status: 0 copied (and identical with --verify), 1 the copy failed or
differs, 2 usage or configuration error`

// copySections are the names of the two storage sections of copy.conf.
const (
	copySource      = "source"
	copyDestination = "destination"
)

func runCopy(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("copy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	incremental := fs.Bool("incremental", false, "resume after the destination's last transaction")
	verify := fs.Bool("verify", false, "compare the two histories after the copy, as zeoraid check does")
	quiet := fs.Bool("q", false, "no progress bar")
	dryRun := fs.Bool("dry-run", false, "check copy.conf without opening anything")
	timeout := fs.Duration("t", time.Minute, "bound of every call to either storage")
	fs.Usage = func() {
		fmt.Fprintln(stderr, copyUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := copier{stdout: stdout, stderr: stderr, incremental: *incremental, verify: *verify,
		quiet: *quiet, dryRun: *dryRun, bound: stack.Timeout(*timeout)}
	return c.run(ctx, fs.Arg(0))
}

// copier is one run of `zeoraid copy`.
type copier struct {
	stdout, stderr      io.Writer
	incremental, verify bool
	quiet, dryRun       bool
	bound               stack.CallBound
}

func (c *copier) fail(code int, format string, args ...any) int {
	fmt.Fprintf(c.stderr, "zeoraid copy: "+format+"\n", args...)
	return code
}

func (c *copier) run(ctx context.Context, path string) int {
	cfg, err := stack.LoadStorageConfig(path)
	if err == nil {
		err = copyConfigCheck(cfg, path)
	}
	if err != nil {
		printConfigError(c.stderr, err)
		return 2
	}
	log := logrus.New()
	log.SetOutput(c.stderr)
	log.SetLevel(logrus.WarnLevel)
	tree, err := stack.Build(ctx, cfg, stack.BuildOptions{Log: log, DryRun: c.dryRun, Import: pluginImporter(log)})
	if err != nil {
		printConfigError(c.stderr, err)
		return 2
	}
	if c.dryRun {
		fmt.Fprintf(c.stdout, "%s: ok\n", path)
		return 0
	}
	defer func() {
		if err := tree.Close(); err != nil {
			fmt.Fprintf(c.stderr, "zeoraid copy: %v\n", err)
		}
	}()
	src, dst := tree.Roots[copySource].Storage, tree.Roots[copyDestination].Storage
	start, err := c.start(ctx, src, dst)
	if err != nil {
		return c.fail(1, "%v", err)
	}
	bar, err := c.progress(ctx, src, start)
	if err != nil {
		return c.fail(1, "%v", err)
	}
	done, err := stack.Copy(ctx, src, dst, stack.CopyOptions{Start: start, Bound: c.bound, Progress: bar.update})
	if err == nil {
		_ = bar.bar.Finish()
	} else {
		fmt.Fprintln(c.stderr)
	}
	secs := time.Since(bar.began).Seconds()
	fmt.Fprintf(c.stdout, "copied %d transactions, %d bytes in %.1f s (%.0f transactions/s, %.1f MB/s)",
		done.Transactions, done.Bytes, secs, float64(done.Transactions)/max(secs, 1e-9), float64(done.Bytes)/1e6/max(secs, 1e-9))
	if done.Tid != 0 {
		fmt.Fprintf(c.stdout, "; last tid %s", done.Tid)
	}
	fmt.Fprintln(c.stdout)
	switch {
	case errors.Is(err, context.Canceled):
		return c.fail(1, "interrupted after %s: the destination ends at a whole transaction; run again with --incremental to go on", done.Tid)
	case err != nil:
		return c.fail(1, "%v", err)
	}
	if !c.verify {
		return 0
	}
	last, err := src.LastTransaction(ctx)
	if err != nil {
		return c.fail(1, "source: lastTransaction: %v", err)
	}
	res, err := stack.CompareHistories(ctx, src, dst, 0, last, 0)
	if err != nil {
		return c.fail(1, "verify: %v", err)
	}
	if res.Diff != nil {
		return c.fail(1, "verify: the histories differ at %s: %s", res.Diff.Tid, res.Diff.What)
	}
	fmt.Fprintf(c.stdout, "verified: %d transactions identical\n", res.Transactions)
	return 0
}

// copyConfigCheck requires the two storage sections copy.conf names.
func copyConfigCheck(cfg *stack.Config, path string) error {
	var errs zconfig.ErrorList
	have := map[string]bool{}
	for _, s := range cfg.Storages {
		have[stack.StorageName(s)] = true
	}
	for _, name := range []string{copySource, copyDestination} {
		if !have[name] {
			errs = append(errs, &zconfig.Error{Pos: zconfig.Pos{File: path, Line: 1, Col: 1},
				Msg: fmt.Sprintf("no storage section named %q (copy.conf needs one named %q and one named %q)", name, copySource, copyDestination)})
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// start returns the first source tid to copy: 0 into an empty destination;
// with --incremental, the one after the destination's last transaction,
// once that transaction is found equal in the source.
func (c *copier) start(ctx context.Context, src, dst stack.Storage) (stack.Tid, error) {
	last, err := dst.LastTransaction(ctx)
	if err != nil {
		return 0, fmt.Errorf("destination: lastTransaction: %w", err)
	}
	if last == 0 {
		return 0, nil
	}
	if !c.incremental {
		return 0, fmt.Errorf("the destination is not empty (last transaction %s): use --incremental to resume a copy", last)
	}
	srcRec, err := transactionAt(ctx, src, last)
	if err != nil {
		return 0, fmt.Errorf("--incremental: source: %w", err)
	}
	dstRec, err := transactionAt(ctx, dst, last)
	if err != nil {
		return 0, fmt.Errorf("--incremental: destination: %w", err)
	}
	mismatch := func(what string) error {
		return fmt.Errorf("--incremental: the destination's last transaction %s does not match the source (%s): not a copy of this source", last, what)
	}
	switch {
	case srcRec == nil:
		return 0, mismatch("missing from the source")
	case srcRec.Status == 'p':
		// Packed in the source since the last copy: its data records may
		// be gone there, its metadata stays.
		srcRec.Records, dstRec.Records = nil, nil
		srcRec.Status, dstRec.Status = ' ', ' '
	}
	if what := stack.CompareTransactions(*srcRec, *dstRec); what != "" {
		return 0, mismatch(what)
	}
	return last + 1, nil
}

// copyBarSteps is the resolution of the progress bar, which follows the
// copied tid through the source's range of tids: counting the
// transactions ahead would cost a second pass over the source.
const copyBarSteps = 1000

// copyBar shows how far a copy is in the source's tid range, with the
// transactions and bytes copied and an estimate of the time left.
type copyBar struct {
	bar         *progressbar.ProgressBar
	first, last stack.Tid
	began       time.Time
}

func (c *copier) progress(ctx context.Context, src stack.Storage, start stack.Tid) (*copyBar, error) {
	last, err := src.LastTransaction(ctx)
	if err != nil {
		return nil, fmt.Errorf("source: lastTransaction: %w", err)
	}
	// The range starts at the first transaction to copy, not at start:
	// tids are timestamps, far from 0.
	first := start
	if it, ok := stack.AsIterator(src); ok {
		if ti, err := it.Iterate(ctx, start, 0); err == nil {
			if rec, ok, err := ti.Next(ctx); err == nil && ok {
				first = rec.Tid
			}
			ti.Close()
		}
	}
	b := &copyBar{first: first, last: last, began: time.Now()}
	if c.quiet {
		b.bar = progressbar.DefaultSilent(copyBarSteps)
		return b, nil
	}
	b.bar = progressbar.NewOptions(copyBarSteps,
		progressbar.OptionSetWriter(c.stderr),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSetDescription("copying"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(c.stderr) }),
	)
	return b, nil
}

func (b *copyBar) update(p stack.CopyProgress) {
	frac := 1.0
	if b.last > b.first {
		frac = min(1, max(0, float64(p.Tid-b.first)/float64(b.last-b.first)))
	}
	secs := max(time.Since(b.began).Seconds(), 1e-9)
	b.bar.Describe(fmt.Sprintf("copying: %d txn, %.1f MB, %.1f MB/s", p.Transactions, float64(p.Bytes)/1e6, float64(p.Bytes)/1e6/secs))
	_ = b.bar.Set(int(frac * copyBarSteps))
}

// transactionAt reads the transaction tid of s, nil if it has none.
func transactionAt(ctx context.Context, s stack.Storage, tid stack.Tid) (*stack.TxnRecord, error) {
	it, ok := stack.AsIterator(s)
	if !ok {
		return nil, fmt.Errorf("cannot be iterated: %w", stack.ErrNotSupported)
	}
	ti, err := it.Iterate(ctx, tid, tid)
	if err != nil {
		return nil, fmt.Errorf("iterate: %w", err)
	}
	defer ti.Close()
	rec, ok, err := ti.Next(ctx)
	if err != nil || !ok || rec.Tid != tid {
		return nil, err
	}
	return &rec, nil
}

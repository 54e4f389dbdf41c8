package badgerstorage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/blobdir"
)

// Storage is one open Badger directory. Readers read at the last
// committed tid (last) in their own Badger read transaction and never
// wait for a commit; a commit writes its entries at its own tid, which no
// reader reads at until the transaction record is committed.
type Storage struct {
	opts  Options
	node  string // node path for errors ("main/1"), or the directory
	log   logrus.FieldLogger
	db    *badger.DB
	blobs *blobdir.Dir // nil without blob-dir

	commitLock chan struct{} // held from Begin to Finish/Abort
	done       chan struct{} // closed by Close: wakes Begin waiting for the commit lock
	lastTs     stack.Tid     // tid generator state; guarded by commitLock

	// wmu serialises Badger writes, each with the Sync that follows it,
	// so a Sync always covers the memtable its write went to.
	wmu    sync.Mutex
	metaTs uint64 // version of the last metadata write; guarded by wmu

	// mu is held shared around every use of db and exclusively by Close.
	mu     sync.RWMutex
	closed bool

	brokenMu sync.Mutex
	broken   error // a commit failed half-way: writes refused until reopened

	last    atomic.Uint64 // last committed tid, the read version
	count   atomic.Int64  // objects with at least one revision
	oidMu   sync.Mutex
	nextOid stack.Oid // guarded by oidMu

	packing atomic.Bool
	watch   *stack.Notifier
}

// ErrLocked means another process (or another open in this one) holds
// the Badger directory.
var ErrLocked = errors.New("the Badger directory is in use by another process")

// badgerLog passes Badger's messages to logrus; Badger's chatty INFO
// lines go to DEBUG.
type badgerLog struct{ l logrus.FieldLogger }

func (b badgerLog) Errorf(f string, a ...any)   { b.l.Errorf(strings.TrimSpace(f), a...) }
func (b badgerLog) Warningf(f string, a ...any) { b.l.Warnf(strings.TrimSpace(f), a...) }
func (b badgerLog) Infof(f string, a ...any)    { b.l.Debugf(strings.TrimSpace(f), a...) }
func (b badgerLog) Debugf(f string, a ...any)   { b.l.Debugf(strings.TrimSpace(f), a...) }

// badgerOptions maps our options onto Badger's.
func badgerOptions(o Options, log logrus.FieldLogger) badger.Options {
	bo := badger.DefaultOptions(string(o.Path))
	bo.Logger = badgerLog{log.WithField("component", "badger")}
	bo.ReadOnly = o.ReadOnly
	bo.SyncWrites = false // a commit syncs once, at its end (Options.Fsync)
	bo.DetectConflicts = false
	bo.MetricsEnabled = false
	bo.NumVersionsToKeep = 1
	bo.MemTableSize = int64(o.MemTableSize)
	bo.NumMemtables = o.NumMemtables
	bo.NumLevelZeroTables = max(2, o.NumMemtables)
	bo.NumLevelZeroTablesStall = 2 * bo.NumLevelZeroTables
	bo.BlockCacheSize = int64(o.BlockCacheSize)
	bo.IndexCacheSize = int64(o.IndexCacheSize)
	bo.ValueThreshold = int64(o.ValueThreshold)
	bo.ValueLogFileSize = int64(o.ValueLogSize)
	bo.NumCompactors = o.NumCompactors
	bo.Compression = options.Snappy
	bo.ExternalMagicVersion = formatVersion
	return bo
}

// Open opens (or creates) the storage in directory opts.Path. node names
// it in errors (the directory when empty). A writable open takes Badger's
// directory lock and removes what a crash left of a transaction that did
// not commit.
func Open(opts Options, node string, log logrus.FieldLogger) (*Storage, error) {
	if log == nil {
		l := logrus.New()
		l.Out = io.Discard
		log = l
	}
	if err := opts.Validate(0); err != nil {
		return nil, fmt.Errorf("badgerstorage %s: %w", opts.Path, err)
	}
	path := string(opts.Path)
	if node == "" {
		node = path
	}
	log = log.WithField("path", path)
	if opts.ReadOnly {
		if _, err := os.Stat(filepath.Join(path, "MANIFEST")); err != nil {
			return nil, fmt.Errorf("badgerstorage %s: read-only needs an existing Badger directory: %w", path, err)
		}
	}
	start := time.Now()
	if !opts.ReadOnly {
		if err := removeEmptyLogs(path, log); err != nil {
			return nil, fmt.Errorf("badgerstorage %s: %w", path, err)
		}
	}
	db, err := badger.OpenManaged(badgerOptions(opts, log))
	if err != nil {
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			holder, _ := os.ReadFile(filepath.Join(path, "LOCK"))
			return nil, fmt.Errorf("badgerstorage %s: %w (pid %s): %v", path, ErrLocked, strings.TrimSpace(string(holder)), err)
		}
		return nil, fmt.Errorf("badgerstorage %s: %w", path, err)
	}
	s := &Storage{opts: opts, node: node, log: log, db: db, commitLock: make(chan struct{}, 1), done: make(chan struct{})}
	if err := s.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("badgerstorage %s: %w", path, err)
	}
	if opts.BlobDir != "" {
		b, err := blobdir.Open(string(opts.BlobDir), opts.ReadOnly)
		if err != nil {
			db.Close()
			return nil, err
		}
		s.blobs = b
	}
	last := stack.Tid(s.last.Load())
	s.lastTs = last
	s.watch = stack.NewNotifier(last)
	log.WithFields(logrus.Fields{"last_tid": last.String(), "objects": s.count.Load(), "took": time.Since(start).Round(time.Millisecond).String()}).Info("opened")
	return s, nil
}

// removeEmptyLogs deletes memtable logs and value log files of length
// zero. Badger creates such a file and then sizes it; a process killed
// in between leaves an empty file that Badger refuses to open ("Create a
// new file"). An empty file holds no entry, so nothing is lost.
// It holds Badger's directory lock (a flock of the directory) meanwhile,
// so it never touches the files of a process that has the directory
// open.
func removeEmptyLogs(dir string, log logrus.FieldLogger) error {
	d, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.Close()
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder, _ := os.ReadFile(filepath.Join(dir, "LOCK"))
			return fmt.Errorf("%w (pid %s)", ErrLocked, strings.TrimSpace(string(holder)))
		}
		return err
	}
	defer syscall.Flock(int(d.Fd()), syscall.LOCK_UN)
	entries, err := d.ReadDir(-1)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".mem") && !strings.HasSuffix(name, ".vlog") {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if fi.Size() == 0 {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return err
			}
			log.WithField("file", name).Warn("removed an empty Badger log file left by a crash")
		}
	}
	return nil
}

// load reads the metadata, removes a half-written transaction (when
// writable) and finds the next oid.
func (s *Storage) load() error {
	txn := s.db.NewTransactionAt(math.MaxUint64, false)
	defer txn.Discard()
	meta := func(k []byte) (uint64, bool, error) {
		item, err := txn.Get(k)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return 0, false, err
		}
		n, err := parseUint64(string(k), v)
		return n, true, err
	}
	format, found, err := meta(keyFormat)
	if err != nil {
		return err
	}
	if found && format != formatVersion {
		return fmt.Errorf("format version %d, this zeoraid reads %d", format, formatVersion)
	}
	last, _, err := meta(keyLast)
	if err != nil {
		return err
	}
	s.last.Store(last)
	s.metaTs = max(last, 1)
	count, _, err := meta(keyCount)
	if err != nil {
		return err
	}
	s.count.Store(int64(count))
	next, _, err := meta(keyNewOid)
	if err != nil {
		return err
	}
	if !found {
		if s.opts.ReadOnly {
			return errors.New("not a badgerstorage directory (no format marker)")
		}
		if err := s.writeMeta(map[string]uint64{string(keyFormat): formatVersion}); err != nil {
			return err
		}
	}
	if !s.opts.ReadOnly {
		if err := s.removeUncommitted(txn, stack.Tid(last)); err != nil {
			return err
		}
	}
	// The largest stored oid, read at the last commit.
	rd := s.db.NewTransactionAt(last, false)
	defer rd.Discard()
	it := rd.NewIterator(badger.IteratorOptions{Prefix: []byte{famObject}, Reverse: true})
	defer it.Close()
	it.Seek([]byte{famObject + 1})
	if it.Valid() {
		oid, _, err := parseObjectKey(it.Item().Key())
		if err != nil {
			return err
		}
		next = max(next, uint64(oid)+1)
	}
	s.nextOid = stack.Oid(max(next, 1))
	return nil
}

// removeUncommitted deletes every entry of transactions after last: a
// crash during a commit left them, and they would become visible once
// the read version passed their tid. Each deletion is written at the
// entry's own version, so a later transaction that gets the same tid
// overwrites it.
func (s *Storage) removeUncommitted(txn *badger.Txn, last stack.Tid) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{famTxnOid}})
	type entry struct {
		tid stack.Tid
		oid stack.Oid
	}
	var left []entry
	for it.Seek(txnOidPrefix(last + 1)); it.Valid(); it.Next() {
		tid, oid, err := parseTxnOidKey(it.Item().Key())
		if err != nil {
			it.Close()
			return err
		}
		left = append(left, entry{tid, oid})
	}
	it.Close()
	if len(left) == 0 {
		return nil
	}
	wb := s.db.NewManagedWriteBatch()
	defer wb.Cancel()
	tids := map[stack.Tid]int{}
	for _, e := range left {
		for _, k := range [][]byte{objectKey(e.oid, e.tid), txnOidKey(e.tid, e.oid)} {
			if err := wb.DeleteAt(k, uint64(e.tid)); err != nil {
				return err
			}
		}
		tids[e.tid]++
		if s.blobs != nil {
			os.Remove(s.blobs.File(e.oid, e.tid))
		}
	}
	if err := wb.Flush(); err != nil {
		return err
	}
	if err := s.db.Sync(); err != nil {
		return err
	}
	for tid, n := range tids {
		s.log.WithFields(logrus.Fields{"tid": tid.String(), "records": n}).Warn("removed a transaction that a crash left uncommitted")
	}
	return nil
}

// writeMeta writes metadata entries in one Badger transaction, at the
// version of the last metadata write, which it replaces.
func (s *Storage) writeMeta(kv map[string]uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	txn := s.db.NewTransactionAt(math.MaxUint64, true)
	defer txn.Discard()
	for k, v := range kv {
		if err := txn.Set([]byte(k), uint64Value(v)); err != nil {
			return err
		}
	}
	return txn.CommitAt(s.metaTs, nil)
}

// Close closes Badger (flushing it) and the watchers' channels. A
// transaction still open is aborted by its owner's Abort, which then
// finds the storage closed.
func (s *Storage) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.wmu.Lock()
	err := s.db.Close()
	s.wmu.Unlock()
	s.mu.Unlock()
	s.watch.Close()
	if err != nil {
		return s.fail("close", nil, nil, err)
	}
	return nil
}

func (s *Storage) setBroken(err error) {
	s.brokenMu.Lock()
	s.broken = err
	s.brokenMu.Unlock()
}

func (s *Storage) brokenErr() error {
	s.brokenMu.Lock()
	defer s.brokenMu.Unlock()
	return s.broken
}

// fail wraps a backend failure in an OpError naming the node; logical
// answers (not found, conflicts, ...) pass unchanged.
func (s *Storage) fail(op string, oid *stack.Oid, tid *stack.Tid, err error) error {
	if err == nil || !stack.IsBackendFailure(err) {
		return err
	}
	var oe *stack.OpError
	if errors.As(err, &oe) {
		return err
	}
	return &stack.OpError{Node: s.node, Op: op, Oid: oid, Tid: tid, Err: err}
}

// view runs f in a Badger read transaction at the last committed tid.
func (s *Storage) view(ctx context.Context, f func(txn *badger.Txn, last stack.Tid) error) error {
	return s.at(ctx, 0, f)
}

// at runs f in a Badger read transaction at readTs (0: the last
// committed tid), holding the read lock that keeps Close out.
func (s *Storage) at(ctx context.Context, readTs stack.Tid, f func(txn *badger.Txn, at stack.Tid) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return stack.ErrClosed
	}
	if readTs == 0 {
		readTs = stack.Tid(s.last.Load())
	}
	txn := s.db.NewTransactionAt(uint64(readTs), false)
	defer txn.Discard()
	return f(txn, readTs)
}

// Path is the Badger directory.
func (s *Storage) Path() string { return string(s.opts.Path) }

// BlobDir is the configured blob directory ("" without blobs).
func (s *Storage) BlobDir() string { return string(s.opts.BlobDir) }

// Options returns the options the storage was opened with.
func (s *Storage) Options() Options { return s.opts }

// newest returns oid's newest revision visible in txn, found false when
// the object has none.
func newest(txn *badger.Txn, oid stack.Oid) (revision, bool, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: objectPrefix(oid)})
	defer it.Close()
	it.Rewind()
	if !it.Valid() {
		return revision{}, false, nil
	}
	return itemRevision(it.Item())
}

// itemRevision decodes the revision at an object key.
func itemRevision(item *badger.Item) (revision, bool, error) {
	_, tid, err := parseObjectKey(item.Key())
	if err != nil {
		return revision{}, false, err
	}
	var r revision
	err = item.Value(func(v []byte) error {
		r, err = parseRevision(tid, v)
		return err
	})
	return r, err == nil, err
}

// LoadBefore is ZODB's loadBefore: the newest revision before `before`,
// with the tid of the revision after it.
func (s *Storage) LoadBefore(ctx context.Context, oid stack.Oid, before stack.Tid) (stack.Revision, error) {
	var rev stack.Revision
	err := s.view(ctx, func(txn *badger.Txn, last stack.Tid) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: objectPrefix(oid)})
		defer it.Close()
		it.Rewind()
		if !it.Valid() {
			return &stack.NotFoundError{Oid: oid}
		}
		r, _, err := itemRevision(it.Item())
		if err != nil {
			return err
		}
		if r.tid < before {
			if r.data == nil {
				return &stack.NotFoundError{Oid: oid}
			}
			rev = stack.Revision{Data: r.data, Serial: r.tid}
			return nil
		}
		if before <= 1 {
			return nil
		}
		it.Seek(objectKey(oid, before-1))
		if !it.Valid() {
			return nil // created at or after before
		}
		if r, _, err = itemRevision(it.Item()); err != nil {
			return err
		}
		if r.data == nil {
			return &stack.NotFoundError{Oid: oid}
		}
		rev = stack.Revision{Data: r.data, Serial: r.tid}
		next := txn.NewIterator(badger.IteratorOptions{Prefix: objectPrefix(oid), Reverse: true})
		defer next.Close()
		next.Seek(objectKey(oid, r.tid+1))
		if next.Valid() {
			_, tid, err := parseObjectKey(next.Item().Key())
			if err != nil {
				return err
			}
			rev.NextSerial = tid
		}
		return nil
	})
	return rev, s.fail("loadBefore", &oid, nil, err)
}

// LoadSerial is ZODB's loadSerial.
func (s *Storage) LoadSerial(ctx context.Context, oid stack.Oid, serial stack.Tid) ([]byte, error) {
	var data []byte
	err := s.view(ctx, func(txn *badger.Txn, last stack.Tid) error {
		r, found, err := getRevision(txn, oid, serial)
		if err != nil {
			return err
		}
		if !found || r.data == nil {
			return &stack.NotFoundError{Oid: oid, Tid: serial}
		}
		data = r.data
		return nil
	})
	return data, s.fail("loadSerial", &oid, &serial, err)
}

// getRevision reads oid's revision tid.
func getRevision(txn *badger.Txn, oid stack.Oid, tid stack.Tid) (revision, bool, error) {
	item, err := txn.Get(objectKey(oid, tid))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return revision{}, false, nil
	}
	if err != nil {
		return revision{}, false, err
	}
	return itemRevision(item)
}

// getTxn reads the transaction record of tid.
func getTxn(txn *badger.Txn, tid stack.Tid) (txnRecord, bool, error) {
	item, err := txn.Get(txnKey(tid))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return txnRecord{}, false, nil
	}
	if err != nil {
		return txnRecord{}, false, err
	}
	var r txnRecord
	err = item.Value(func(v []byte) error {
		r, err = parseTxn(tid, v)
		return err
	})
	return r, err == nil, err
}

// History is ZODB's history: newest first, deletions included (size 0).
func (s *Storage) History(ctx context.Context, oid stack.Oid, size int) ([]stack.HistoryEntry, error) {
	if size < 1 {
		size = 1
	}
	var out []stack.HistoryEntry
	err := s.view(ctx, func(txn *badger.Txn, last stack.Tid) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: objectPrefix(oid)})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(out) < size; it.Next() {
			r, _, err := itemRevision(it.Item())
			if err != nil {
				return err
			}
			t, found, err := getTxn(txn, r.tid)
			if err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("revision %s of object %s has no transaction record", r.tid, oid)
			}
			out = append(out, stack.HistoryEntry{Tid: r.tid, User: t.meta.User, Description: t.meta.Description, Extension: t.meta.Extension, Size: len(r.data)})
		}
		if len(out) == 0 {
			return &stack.NotFoundError{Oid: oid}
		}
		return nil
	})
	return out, s.fail("history", &oid, nil, err)
}

// LastTransaction is ZODB's lastTransaction.
func (s *Storage) LastTransaction(ctx context.Context) (stack.Tid, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, stack.ErrClosed
	}
	return stack.Tid(s.last.Load()), nil
}

// NewOIDs hands out oids after every oid handed out or stored. The next
// oid is written to Badger before the call returns, so a restart never
// hands an oid out twice.
func (s *Storage) NewOIDs(ctx context.Context, n int) ([]stack.Oid, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.opts.ReadOnly {
		return nil, stack.ErrReadOnly
	}
	if n < 0 {
		return nil, &stack.StorageError{Msg: fmt.Sprintf("new_oids: negative count %d", n)}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, stack.ErrClosed
	}
	s.oidMu.Lock()
	defer s.oidMu.Unlock()
	out := make([]stack.Oid, n)
	for i := range out {
		out[i] = s.nextOid
		s.nextOid++
	}
	if err := s.writeMeta(map[string]uint64{string(keyNewOid): uint64(s.nextOid)}); err != nil {
		return nil, s.fail("new_oids", nil, nil, err)
	}
	return out, nil
}

// storedOid moves the next oid past oid, stored by a commit.
func (s *Storage) storedOid(oid stack.Oid) {
	s.oidMu.Lock()
	if oid >= s.nextOid {
		s.nextOid = oid + 1
	}
	s.oidMu.Unlock()
}

// Info reports the directory, the number of objects and the space the
// directory takes on disk.
func (s *Storage) Info(ctx context.Context) (stack.Info, error) {
	var info stack.Info
	err := s.view(ctx, func(*badger.Txn, stack.Tid) error {
		size, err := diskUsage(string(s.opts.Path))
		info = stack.Info{Name: string(s.opts.Path), Length: s.count.Load(), Size: size}
		return err
	})
	return info, s.fail("info", nil, nil, err)
}

// diskUsage is the space the files of dir take on disk (Badger's log
// files are sparse: their length says little).
func diskUsage(dir string) (int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range entries {
		fi, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue // removed by a compaction meanwhile
		}
		if err != nil {
			return 0, err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		} else {
			n += fi.Size()
		}
	}
	return n, nil
}

// Watch registers ch for events of transactions committed after the
// returned tid.
func (s *Storage) Watch(ch chan<- stack.Event) stack.Tid { return s.watch.Watch(ch) }

// Unwatch stops and closes ch.
func (s *Storage) Unwatch(ch chan<- stack.Event) { s.watch.Unwatch(ch) }

// Capabilities: everything; blobs only with a blob directory.
func (s *Storage) Capabilities() stack.Capabilities {
	return stack.Capabilities{
		ReadOnly:   s.opts.ReadOnly,
		Iterate:    true,
		RecordIter: true,
		Restore:    true,
		Undo:       true,
		Pack:       true,
		Blobs:      s.blobs != nil,
		Delete:     true,
	}
}

package sqlitestorage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/blobdir"
)

// Storage is one open SQLite file. Readers use a pool of connections and
// see, statement by statement, the last committed state (WAL snapshots);
// they never wait for a commit. Writes go through a single connection:
// a transaction's SQL transaction is open on it from Vote to Finish.
type Storage struct {
	opts  Options
	node  string // node path for errors ("main/1"), or the file
	log   logrus.FieldLogger
	rd    *sql.DB // reader connections (query_only)
	wr    *sql.DB // the writer connection; nil when read-only
	lock  *writerLock
	blobs *blobdir.Dir // nil without blob-dir

	current, loadBefore, loadSerial, history *sql.Stmt // on rd

	commitLock chan struct{} // held from Begin to Finish or Abort
	done       chan struct{} // closed by Close: wakes a Begin waiting for the commit lock
	lastTs     stack.Tid     // tid generator state; guarded by commitLock

	// closed is set first by Close; a call that fails because Close
	// closed the pools under it reports ErrClosed. database/sql makes
	// closing a pool under running statements safe.
	closed atomic.Bool
	// mu is held shared around every use of a transaction's SQL
	// transaction and exclusively by Close, which rolls back the one
	// still open.
	mu     sync.RWMutex
	active *txn // the transaction holding the commit lock; written by its holder under mu.RLock

	brokenMu sync.Mutex
	broken   error // a commit failed after its vote: writes refused until reopened

	last    atomic.Uint64 // last committed tid
	objects atomic.Int64  // live objects
	oidMu   sync.Mutex
	nextOid stack.Oid // guarded by oidMu

	packing atomic.Bool
	watch   *stack.Notifier
	// announced is the last tid watchers were told about before an Empty:
	// transactions committed again up to it are not announced twice.
	// Guarded by commitLock.
	announced stack.Tid
}

var (
	_ stack.Storage        = (*Storage)(nil)
	_ stack.Iterator       = (*Storage)(nil)
	_ stack.RecordIterator = (*Storage)(nil)
	_ stack.Undoer         = (*Storage)(nil)
	_ stack.Packer         = (*Storage)(nil)
	_ stack.Blobber        = (*Storage)(nil)
)

// Open opens (or creates) the storage in the file opts.Path. node names it
// in errors (the file when empty). A writable open takes <file>.lock.
func Open(opts Options, node string, log logrus.FieldLogger) (_ *Storage, err error) {
	if log == nil {
		l := logrus.New()
		l.Out = io.Discard
		log = l
	}
	path := string(opts.Path)
	if path == "" {
		return nil, errors.New("sqlitestorage: path is empty")
	}
	if node == "" {
		node = path
	}
	log = log.WithField("path", path)
	s := &Storage{opts: opts, node: node, log: log, commitLock: make(chan struct{}, 1), done: make(chan struct{})}
	defer func() {
		if err != nil {
			s.closeAll()
			err = fmt.Errorf("sqlitestorage %s: %w", path, err)
		}
	}()
	start := time.Now()
	ctx := context.Background()
	readers := max(4, 2*runtime.GOMAXPROCS(0))
	if opts.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("read-only needs an existing file: %w", err)
		}
		if s.rd, err = openDB(path, readers, "mode=ro", "_pragma=query_only(1)"); err != nil {
			return nil, err
		}
		if err := initSchema(ctx, s.rd, true); err != nil {
			return nil, err
		}
	} else {
		if s.lock, err = lockWriter(path + ".lock"); err != nil {
			return nil, err
		}
		// One writer connection: journal_mode is persistent, synchronous
		// FULL syncs the WAL at every COMMIT, and BEGIN takes the write
		// lock at once so a vote's checks and writes see one state.
		if s.wr, err = openDB(path, 1, "_pragma=journal_mode(WAL)", "_pragma=synchronous(FULL)", "_txlock=immediate"); err != nil {
			return nil, err
		}
		if err := checkDurable(ctx, s.wr); err != nil {
			return nil, err
		}
		if err := initSchema(ctx, s.wr, false); err != nil {
			return nil, err
		}
		if s.rd, err = openDB(path, readers, "_pragma=query_only(1)"); err != nil {
			return nil, err
		}
	}
	m, err := readMeta(ctx, s.rd)
	if err != nil {
		return nil, err
	}
	s.last.Store(uint64(m.last))
	s.lastTs = m.last
	s.objects.Store(m.objects)
	s.nextOid = m.nextOid
	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	if opts.BlobDir != "" {
		if s.blobs, err = blobdir.Open(string(opts.BlobDir), opts.ReadOnly); err != nil {
			return nil, err
		}
	}
	s.watch = stack.NewNotifier(m.last)
	log.WithFields(logrus.Fields{"last_tid": m.last.String(), "objects": m.objects, "read_only": opts.ReadOnly,
		"took": time.Since(start).Round(time.Millisecond).String()}).Info("opened")
	return s, nil
}

// checkDurable makes sure the writer connection got WAL and
// synchronous=FULL: SQLite silently keeps another journal mode where the
// file system cannot share memory for WAL, and acknowledging a commit
// before it is synced is not an option.
func checkDurable(ctx context.Context, wr *sql.DB) error {
	var mode string
	var sync int
	if err := wr.QueryRowContext(ctx, `SELECT journal_mode, synchronous FROM pragma_journal_mode(), pragma_synchronous()`).Scan(&mode, &sync); err != nil {
		return err
	}
	if mode != "wal" || sync != 2 {
		return fmt.Errorf("the writer connection runs with journal_mode %s and synchronous %d, want wal and 2 (FULL)", mode, sync)
	}
	return nil
}

// prepare prepares the hot read statements.
func (s *Storage) prepare(ctx context.Context) error {
	var err error
	s.current, err = s.rd.PrepareContext(ctx, `SELECT tid, data FROM object_state WHERE oid = ? ORDER BY tid DESC LIMIT 1`)
	if err != nil {
		return err
	}
	// One statement, so one snapshot: the newest revision before ?2, the
	// tid of the one after it, and whether the object exists at all.
	s.loadBefore, err = s.rd.PrepareContext(ctx, `SELECT x.tid, x.data,
		(SELECT min(n.tid) FROM object_state n WHERE n.oid = ?1 AND n.tid > x.tid),
		EXISTS (SELECT 1 FROM object_state WHERE oid = ?1)
		FROM (SELECT 1) LEFT JOIN
		(SELECT tid, data FROM object_state WHERE oid = ?1 AND tid < ?2 ORDER BY tid DESC LIMIT 1) x`)
	if err != nil {
		return err
	}
	s.loadSerial, err = s.rd.PrepareContext(ctx, `SELECT data FROM object_state WHERE oid = ? AND tid = ?`)
	if err != nil {
		return err
	}
	s.history, err = s.rd.PrepareContext(ctx, `SELECT o.tid, coalesce(length(o.data), 0), t.user, t.description, t.extension
		FROM object_state o JOIN transactions t ON t.tid = o.tid
		WHERE o.oid = ? ORDER BY o.tid DESC LIMIT ?`)
	return err
}

// closeAll closes what Open or Close finds open.
func (s *Storage) closeAll() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.current, s.loadBefore, s.loadSerial, s.history} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	for _, db := range []*sql.DB{s.rd, s.wr} {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	errs = append(errs, s.lock.unlock())
	return errors.Join(errs...)
}

// Close closes the file and the watchers' channels. A transaction still
// open is rolled back; its owner's later calls find the storage closed.
func (s *Storage) Close() (err error) {
	defer stack.WrapOp(&err, s.node, "close", nil, nil)
	if s.closed.Swap(true) {
		return nil
	}
	close(s.done)
	s.mu.Lock()
	if t := s.active; t != nil && t.sqlTx != nil {
		_ = t.sqlTx.Rollback()
		t.sqlTx = nil
	}
	err = s.closeAll()
	s.mu.Unlock()
	s.watch.Close()
	if err == nil {
		s.log.Info("closed")
	}
	return err
}

// use runs f, which uses the databases, unless the storage is closed;
// f's failure because Close closed them meanwhile is ErrClosed.
func (s *Storage) use(ctx context.Context, f func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return stack.ErrClosed
	}
	err := f()
	if err != nil && stack.IsBackendFailure(err) && s.closed.Load() {
		return stack.ErrClosed
	}
	return err
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

// Options returns the options the storage was opened with.
func (s *Storage) Options() Options { return s.opts }

// LoadBefore is ZODB's loadBefore: the newest revision before `before`,
// with the tid of the revision after it. The common case, a load of the
// current revision, reads the newest revision alone.
func (s *Storage) LoadBefore(ctx context.Context, oid stack.Oid, before stack.Tid) (rev stack.Revision, err error) {
	defer stack.WrapOp(&err, s.node, "loadBefore", &oid, &before)
	err = s.use(ctx, func() error {
		var tid, data, next []byte
		err := s.current.QueryRowContext(ctx, p64(oid)).Scan(&tid, &data)
		if errors.Is(err, sql.ErrNoRows) {
			return &stack.NotFoundError{Oid: oid}
		}
		if err != nil {
			return err
		}
		newest, err := u64[stack.Tid](tid)
		if err != nil {
			return err
		}
		if newest < before {
			if data == nil {
				return &stack.NotFoundError{Oid: oid} // deleted
			}
			rev = stack.Revision{Data: data, Serial: newest}
			return nil
		}
		var exists bool
		if err := s.loadBefore.QueryRowContext(ctx, p64(oid), p64(before)).Scan(&tid, &data, &next, &exists); err != nil {
			return err
		}
		switch {
		case !exists:
			return &stack.NotFoundError{Oid: oid}
		case tid == nil:
			return nil // created at or after before
		case data == nil:
			return &stack.NotFoundError{Oid: oid} // deleted
		}
		if rev.Serial, err = u64[stack.Tid](tid); err != nil {
			return err
		}
		if rev.NextSerial, err = u64[stack.Tid](next); err != nil {
			return err
		}
		rev.Data = data
		return nil
	})
	if err != nil {
		return stack.Revision{}, err
	}
	return rev, nil
}

// LoadSerial is ZODB's loadSerial.
func (s *Storage) LoadSerial(ctx context.Context, oid stack.Oid, serial stack.Tid) (data []byte, err error) {
	defer stack.WrapOp(&err, s.node, "loadSerial", &oid, &serial)
	return s.revisionData(ctx, oid, serial)
}

// revisionData reads the data of oid's revision serial; *NotFoundError
// when there is none or it is a deletion.
func (s *Storage) revisionData(ctx context.Context, oid stack.Oid, serial stack.Tid) (data []byte, err error) {
	err = s.use(ctx, func() error {
		err := s.loadSerial.QueryRowContext(ctx, p64(oid), p64(serial)).Scan(&data)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && data == nil) {
			return &stack.NotFoundError{Oid: oid, Tid: serial}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return data, nil
}

// History is ZODB's history: newest first, deletions included (size 0).
func (s *Storage) History(ctx context.Context, oid stack.Oid, size int) (out []stack.HistoryEntry, err error) {
	defer stack.WrapOp(&err, s.node, "history", &oid, nil)
	size = max(size, 1)
	err = s.use(ctx, func() error {
		rows, err := s.history.QueryContext(ctx, p64(oid), size)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var tid []byte
			var e stack.HistoryEntry
			if err := rows.Scan(&tid, &e.Size, &e.User, &e.Description, &e.Extension); err != nil {
				return err
			}
			if e.Tid, err = u64[stack.Tid](tid); err != nil {
				return err
			}
			out = append(out, e)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(out) == 0 {
			return &stack.NotFoundError{Oid: oid}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// LastTransaction is ZODB's lastTransaction.
func (s *Storage) LastTransaction(ctx context.Context) (tid stack.Tid, err error) {
	defer stack.WrapOp(&err, s.node, "lastTransaction", nil, nil)
	err = s.use(ctx, func() error {
		tid = stack.Tid(s.last.Load())
		return nil
	})
	return tid, err
}

// NewOIDs hands out oids after every oid handed out or stored. The next
// oid is committed to the file before the call returns, so a restart
// never hands an oid out twice.
func (s *Storage) NewOIDs(ctx context.Context, n int) (oids []stack.Oid, err error) {
	defer stack.WrapOp(&err, s.node, "new_oids", nil, nil)
	if s.opts.ReadOnly {
		return nil, stack.ErrReadOnly
	}
	if n < 0 {
		return nil, &stack.StorageError{Msg: fmt.Sprintf("new_oids: negative count %d", n)}
	}
	err = s.use(ctx, func() error {
		s.oidMu.Lock()
		defer s.oidMu.Unlock()
		next := s.nextOid + stack.Oid(n)
		if _, err := s.wr.ExecContext(ctx, `UPDATE meta SET value = ? WHERE name = 'next_oid'`, p64(next)); err != nil {
			return err
		}
		oids = make([]stack.Oid, n)
		for i := range oids {
			oids[i] = s.nextOid + stack.Oid(i)
		}
		s.nextOid = next
		return nil
	})
	if err != nil {
		return nil, err
	}
	return oids, nil
}

// storedOid moves the next oid past oid, which a commit stored.
func (s *Storage) storedOid(oid stack.Oid) {
	s.oidMu.Lock()
	if oid >= s.nextOid {
		s.nextOid = oid + 1
	}
	s.oidMu.Unlock()
}

// Info reports the file, the number of live objects and the file's size
// (database pages, the WAL not counted).
func (s *Storage) Info(ctx context.Context) (info stack.Info, err error) {
	defer stack.WrapOp(&err, s.node, "get_info", nil, nil)
	err = s.use(ctx, func() error {
		var pages, pageSize int64
		if err := s.rd.QueryRowContext(ctx, `SELECT page_count, page_size FROM pragma_page_count(), pragma_page_size()`).Scan(&pages, &pageSize); err != nil {
			return err
		}
		info = stack.Info{Name: string(s.opts.Path), Length: s.objects.Load(), Size: pages * pageSize}
		return nil
	})
	return info, err
}

// Watch registers ch for events of transactions committed after the
// returned tid.
func (s *Storage) Watch(ch chan<- stack.Event) stack.Tid { return s.watch.Watch(ch) }

// Unwatch stops and closes ch.
func (s *Storage) Unwatch(ch chan<- stack.Event) { s.watch.Unwatch(ch) }

// Capabilities: everything the contract has; blobs only with a blob
// directory.
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

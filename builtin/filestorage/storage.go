package filestorage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/blobdir"
)

// Storage is one open Data.fs. Reads use pread on the shared file handle
// under a read lock held only for the read itself; a commit writes past the
// published end and publishes its index entries at Finish, so readers never
// wait for a commit in progress.
type Storage struct {
	path string
	// node names the storage in errors (stack.OpError): the node path of
	// the section that opened it, or the file's path when opened directly.
	node     string
	opts     Options                 // as opened
	live     atomic.Pointer[Options] // as last configured: the keys a reload changes (Reconfigure)
	log      logrus.FieldLogger
	readOnly bool
	blobs    *blobdir.Dir // nil without blob-dir

	commitLock chan struct{} // held from Begin to Finish/Abort, and by pack's last phase
	// spareBody and spareRec are the buffers of the last transaction,
	// reused by the next (guarded by commitLock): a recovery restoring
	// thousands of transactions does not allocate and clear each anew.
	spareBody, spareRec []byte
	done                chan struct{} // closed by Close: wakes Begin waiting for the commit lock
	// ioMu is held shared by every write to the file (vote, finish, abort)
	// and exclusively by Close, so Close never cuts a transaction whose
	// finish is under way, and writes never hit a closed file.
	ioMu   sync.RWMutex
	lastTs stack.Tid // tid generator state; guarded by commitLock

	mu     sync.RWMutex // guards everything below
	f      *os.File
	rd     reader
	ix     *index
	pos    int64 // end of committed data (_pos)
	ltid   stack.Tid
	maxOid stack.Oid
	closed bool
	broken error // set when a finish failed half-way: no more writes
	// announced is set by Empty: the last tid watchers were told about.
	// History committed again up to it is not announced a second time,
	// as watchers rely on increasing tids.
	announced stack.Tid

	txnsMu sync.Mutex // see txnIndex
	txns   txnIndex

	packing atomic.Bool
	lock    *lockFile
	watch   *stack.Notifier
}

// Open opens (or creates) the Data.fs at path. It takes the .lock file
// unless read-only, loads or rebuilds the index and cuts a damaged or
// uncommitted tail off (saving it to path.trN) as Python does.
func Open(path string, opts Options, log logrus.FieldLogger) (*Storage, error) {
	if log == nil {
		l := logrus.New()
		l.Out = io.Discard
		log = l
	}
	log = log.WithField("path", path)
	if opts.Packer != "" && !isDefaultPacker(opts.Packer) {
		return nil, fmt.Errorf("filestorage %s: packer %q is not supported: only the default packer (ZODB.FileStorage.packed.FileStoragePacker) exists in zeoraid", path, opts.Packer)
	}
	s := &Storage{path: path, node: path, opts: opts, log: log, readOnly: opts.ReadOnly, commitLock: make(chan struct{}, 1), done: make(chan struct{})}
	s.live.Store(&opts)
	if !s.readOnly {
		l, err := lock(path + ".lock")
		if err != nil {
			return nil, err
		}
		s.lock = l
	}
	if err := s.open(); err != nil {
		s.lock.unlock()
		if s.f != nil {
			s.f.Close()
		}
		return nil, err
	}
	return s, nil
}

func (s *Storage) open() error {
	if s.opts.Create && !s.readOnly {
		for _, p := range []string{s.path, s.path + ".index", s.path + ".tmp"} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		if s.opts.BlobDir != "" {
			if err := os.RemoveAll(string(s.opts.BlobDir)); err != nil {
				return err
			}
		}
	}
	var err error
	if s.readOnly {
		s.f, err = os.Open(s.path)
	} else {
		s.f, err = os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o644)
	}
	if err != nil {
		return err
	}
	s.rd = reader{r: s.f, path: s.path}
	fi, err := s.f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if size == 0 && !s.readOnly {
		if _, err := s.f.WriteAt([]byte(magicFS30), 0); err != nil {
			return err
		}
		if err := s.f.Sync(); err != nil {
			return err
		}
		size = int64(len(magicFS30))
	}
	if size > 0 {
		var m [4]byte
		if err := s.rd.readFull(0, m[:]); err != nil {
			return err
		}
		switch string(m[:]) {
		case magicFS30:
		case magicFS21:
			return fmt.Errorf("%s: %w", s.path, errFS21)
		default:
			return &FormatError{Path: s.path, Pos: 0, Msg: fmt.Sprintf("not a FileStorage: magic %q, want %q", m[:], magicFS30)}
		}
	}
	if err := s.loadIndex(size); err != nil {
		return err
	}
	s.lastTs = s.ltid
	s.watch = stack.NewNotifier(s.ltid)
	if now := stack.TidFromTime(time.Now()); s.ltid > now {
		ahead := s.ltid.Time().Sub(time.Now())
		f := s.log.WithFields(logrus.Fields{"tid": s.ltid.String(), "ahead": ahead.String()})
		if ahead > 30*time.Minute {
			f.Error("last transaction is far in the future; new transactions will use later tids")
		} else {
			f.Warn("last transaction is in the future")
		}
	}
	if s.opts.BlobDir != "" {
		b, err := blobdir.Open(string(s.opts.BlobDir), s.readOnly)
		if err != nil {
			return err
		}
		s.blobs = b
	}
	return nil
}

// loadIndex trusts the .index if it passes the sanity check and rescans
// from its position, else scans the whole file; then it handles the tail.
func (s *Storage) loadIndex(size int64) error {
	start := int64(len(magicFS30))
	usedIndex := false
	var res scanResult
	if pos, ix, err := readIndex(s.path + ".index"); err == nil {
		ltid, err := checkIndex(s.rd, size, pos, ix)
		if err == nil {
			res, err = scan(s.rd, size, pos, ltid, ix, s.log)
		}
		if err == nil {
			usedIndex = true
			s.ix = ix
		} else {
			s.log.WithError(err).Warn("ignoring the .index file; rescanning")
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		s.log.WithError(err).Warn("cannot read the .index file; rescanning")
	}
	if !usedIndex {
		s.ix = newIndex()
		var err error
		if res, err = scan(s.rd, size, start, 0, s.ix, s.log); err != nil {
			return err
		}
	}
	s.pos, s.ltid = res.pos, res.ltid
	if size < start {
		s.pos = start // a read-only empty file
	}
	if res.tail {
		f := s.log.WithFields(logrus.Fields{"end": res.pos, "size": size, "reason": res.reason})
		if s.readOnly {
			f.Warn("ignoring incomplete transaction at the end of the file (read-only)")
		} else {
			if res.copyTail {
				saved, err := s.saveTail(res.pos, size)
				if err != nil {
					return err
				}
				f = f.WithField("saved_to", saved)
			}
			if err := s.f.Truncate(res.pos); err != nil {
				return err
			}
			if err := s.f.Sync(); err != nil {
				return err
			}
			f.Warn("truncated incomplete transaction at the end of the file")
		}
	}
	s.maxOid = s.ix.maxOid()
	if !usedIndex && !s.readOnly {
		if err := writeIndex(s.path+".index", s.pos, s.ix); err != nil {
			s.log.WithError(err).Warn("cannot save the index")
		}
	}
	return nil
}

// saveTail copies bytes [from, size) to the first unused path.trN.
func (s *Storage) saveTail(from, size int64) (string, error) {
	for i := 0; ; i++ {
		name := fmt.Sprintf("%s.tr%d", s.path, i)
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		err = copyRange(f, s.f, from, size-from)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return name, err
	}
}

// Close saves the index (when writable), releases the lock and closes the
// file. Watchers' channels are closed.
func (s *Storage) Close() error {
	s.ioMu.Lock()
	defer s.ioMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	var err error
	if !s.readOnly && s.broken == nil {
		// A transaction voted but not finished is not committed: cut it.
		if fi, serr := s.f.Stat(); serr == nil && fi.Size() > s.pos {
			err = s.f.Truncate(s.pos)
		}
		// Bulk restores (BeginBulk) may have left finished
		// transactions not yet on disk: the .index must not be ahead.
		if serr := s.f.Sync(); err == nil {
			err = serr
		}
		if ierr := writeIndex(s.path+".index", s.pos, s.ix); err == nil {
			err = ierr
		}
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.mu.Unlock()
	s.watch.Close()
	if lerr := s.lock.unlock(); err == nil {
		err = lerr
	}
	return err
}

// readable takes the read lock; callers defer s.mu.RUnlock() when it
// returns nil.
func (s *Storage) readable() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return stack.ErrClosed
	}
	return nil
}

// Path is the Data.fs path as given to Open.
func (s *Storage) Path() string { return s.path }

// LoadBefore is ZODB's loadBefore (docs/filestorage.md §3.2).
func (s *Storage) LoadBefore(ctx context.Context, oid stack.Oid, before stack.Tid) (_ stack.Revision, err error) {
	defer stack.WrapOp(&err, s.node, "loadBefore", &oid, &before)
	if err := s.readable(); err != nil {
		return stack.Revision{}, err
	}
	defer s.mu.RUnlock()
	pos, ok := s.ix.get(oid)
	if !ok {
		return stack.Revision{}, &stack.NotFoundError{Oid: oid}
	}
	var end stack.Tid
	for {
		h, data, err := s.rd.dataRecord(pos)
		if err != nil {
			return stack.Revision{}, err
		}
		if h.tid < before {
			if data != nil {
				return stack.Revision{Data: data, Serial: h.tid, NextSerial: end}, nil
			}
			data, err := s.rd.resolve(h)
			if err == errNoData {
				return stack.Revision{}, &stack.NotFoundError{Oid: oid}
			}
			if err != nil {
				return stack.Revision{}, err
			}
			return stack.Revision{Data: data, Serial: h.tid, NextSerial: end}, nil
		}
		end = h.tid
		if h.prev == 0 {
			return stack.Revision{}, nil
		}
		if h.prev >= pos {
			return stack.Revision{}, s.rd.corrupt(pos, "previous record pointer %d does not go back", h.prev)
		}
		pos = h.prev
	}
}

// LoadSerial is ZODB's loadSerial (docs/filestorage.md §3.2).
func (s *Storage) LoadSerial(ctx context.Context, oid stack.Oid, serial stack.Tid) (_ []byte, err error) {
	defer stack.WrapOp(&err, s.node, "loadSerial", &oid, &serial)
	if err := s.readable(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	h, err := s.findSerial(oid, serial)
	if err != nil {
		return nil, err
	}
	data, err := s.rd.resolve(h)
	if err == errNoData {
		return nil, &stack.NotFoundError{Oid: oid, Tid: serial}
	}
	return data, err
}

// findSerial walks oid's revisions back to the one written by serial.
// The caller holds the read lock.
func (s *Storage) findSerial(oid stack.Oid, serial stack.Tid) (dataHeader, error) {
	pos, ok := s.ix.get(oid)
	if !ok {
		return dataHeader{}, &stack.NotFoundError{Oid: oid, Tid: serial}
	}
	for {
		h, err := s.rd.dataHeader(pos)
		if err != nil {
			return h, err
		}
		if h.tid == serial {
			return h, nil
		}
		if h.tid < serial || h.prev == 0 {
			return h, &stack.NotFoundError{Oid: oid, Tid: serial}
		}
		if h.prev >= pos {
			return h, s.rd.corrupt(pos, "previous record pointer %d does not go back", h.prev)
		}
		pos = h.prev
	}
}

// History is ZODB's history (docs/filestorage.md §3.3): newest first, markers included. Size
// is the length of the revision's data, as the contract says, also for
// backpointer records (Python reports 0 for those).
func (s *Storage) History(ctx context.Context, oid stack.Oid, size int) (_ []stack.HistoryEntry, err error) {
	defer stack.WrapOp(&err, s.node, "history", &oid, nil)
	if err := s.readable(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	pos, ok := s.ix.get(oid)
	if !ok {
		return nil, &stack.NotFoundError{Oid: oid}
	}
	var out []stack.HistoryEntry
	for pos != 0 && len(out) < size {
		h, err := s.rd.dataHeader(pos)
		if err != nil {
			return nil, err
		}
		th, err := s.rd.txnHeader(h.tloc)
		if err != nil {
			return nil, err
		}
		meta, err := s.rd.txnMeta(&th)
		if err != nil {
			return nil, err
		}
		size := h.plen
		if h.plen == 0 && h.back != 0 {
			data, err := s.rd.resolve(h)
			if err != nil && err != errNoData {
				return nil, err
			}
			size = int64(len(data))
		}
		out = append(out, stack.HistoryEntry{Tid: h.tid, User: meta.User, Description: meta.Description, Extension: meta.Extension, Size: int(size)})
		if h.prev >= pos {
			return nil, s.rd.corrupt(pos, "previous record pointer %d does not go back", h.prev)
		}
		pos = h.prev
	}
	return out, nil
}

// LastTransaction is ZODB's lastTransaction.
func (s *Storage) LastTransaction(ctx context.Context) (_ stack.Tid, err error) {
	defer stack.WrapOp(&err, s.node, "lastTransaction", nil, nil)
	if err := s.readable(); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	return s.ltid, nil
}

// NewOIDs hands out oids after the largest oid stored or handed out. As
// in Python, oids handed out but never stored are not remembered across a
// restart (nothing in Data.fs can hold them compatibly).
func (s *Storage) NewOIDs(ctx context.Context, n int) (_ []stack.Oid, err error) {
	defer stack.WrapOp(&err, s.node, "new_oids", nil, nil)
	if s.readOnly {
		return nil, stack.ErrReadOnly
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, stack.ErrClosed
	}
	out := make([]stack.Oid, n)
	for i := range out {
		s.maxOid++
		out[i] = s.maxOid
	}
	return out, nil
}

// Info reports the path, the number of objects (markers included, as
// Python's len) and the committed size.
func (s *Storage) Info(ctx context.Context) (_ stack.Info, err error) {
	defer stack.WrapOp(&err, s.node, "get_info", nil, nil)
	if err := s.readable(); err != nil {
		return stack.Info{}, err
	}
	defer s.mu.RUnlock()
	return stack.Info{Name: s.path, Length: int64(s.ix.len()), Size: s.pos}, nil
}

// Watch registers ch for events of transactions committed after the
// returned tid.
func (s *Storage) Watch(ch chan<- stack.Event) stack.Tid {
	return s.watch.Watch(ch)
}

// Unwatch stops and closes ch.
func (s *Storage) Unwatch(ch chan<- stack.Event) { s.watch.Unwatch(ch) }

// Capabilities reports what this Data.fs supports: everything, blobs only
// with a blob directory.
func (s *Storage) Capabilities() stack.Capabilities {
	return stack.Capabilities{
		ReadOnly:   s.readOnly,
		Iterate:    true,
		RecordIter: true,
		Restore:    true,
		Undo:       true,
		Pack:       true,
		Blobs:      s.blobs != nil,
		Delete:     true,
	}
}

func (s *Storage) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// Package mappingstorage is the <mappingstorage> section: an in-memory,
// history-preserving MVCC storage (ZODB's MappingStorage, with history,
// undo and pack). It is the reference implementation ("oracle") of the
// conformance suite in stack/storagetest, so it favours plain data
// structures and one mutex over speed. It has no blobs and forgets
// everything on Close.
package mappingstorage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
)

// Options are the keys of a <mappingstorage> section.
type Options struct {
	Name string `zconfig:"name,default=Mapping Storage" doc:"the storage name reported by get_info and in logs"`
}

func init() {
	stack.Register(stack.Module{
		Type:    "mappingstorage",
		Doc:     "An in-memory, history-preserving storage with undo and pack; its contents are lost when the server stops. Meant for tests and as the reference the conformance suite compares other storages with.",
		Options: &Options{},
		Open: func(_ context.Context, n *stack.Node, opts any) (stack.Storage, error) {
			o, ok := opts.(*Options)
			if !ok {
				return nil, fmt.Errorf("mappingstorage: options of type %T, want *Options", opts)
			}
			s := New(o.Name, n.Log)
			s.node = n.Path
			return s, nil
		},
	})
}

// revision is one record of an object: data nil means a deletion or an
// undone creation.
type revision struct {
	tid     stack.Tid
	data    []byte
	dataTxn stack.Tid // backpointer-like origin of data (undo, restore), 0 if none
}

// txnRecord is one committed transaction.
type txnRecord struct {
	meta    stack.TxnMeta // Tid and Status always set
	records []stack.DataRecord
}

// Storage is an in-memory MVCC storage. All state is guarded by mu; the
// commit semaphore serialises transactions from Begin to Finish or Abort.
type Storage struct {
	name string
	// node names the storage in errors (stack.OpError): its node path
	// when built from a configuration, else its name.
	node     string
	log      logrus.FieldLogger
	notifier *stack.Notifier
	commit   chan struct{} // holds one token while a transaction is open

	mu      sync.Mutex
	closed  bool
	objects map[stack.Oid][]revision // oldest first
	txns    []*txnRecord             // tid order
	byTid   map[stack.Tid]*txnRecord
	last    stack.Tid
	nextOid stack.Oid
	// announced is set by Empty: the last tid watchers were told about.
	// History committed again up to it is not announced a second time,
	// as watchers rely on increasing tids.
	announced stack.Tid
}

// New returns an empty storage named name, logging to log (nil: no logging).
func New(name string, log logrus.FieldLogger) *Storage {
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	return &Storage{
		name:     name,
		node:     name,
		log:      log,
		notifier: stack.NewNotifier(0),
		commit:   make(chan struct{}, 1),
		objects:  map[stack.Oid][]revision{},
		byTid:    map[stack.Tid]*txnRecord{},
		nextOid:  1,
	}
}

var (
	_ stack.Storage        = (*Storage)(nil)
	_ stack.Iterator       = (*Storage)(nil)
	_ stack.RecordIterator = (*Storage)(nil)
	_ stack.Undoer         = (*Storage)(nil)
	_ stack.Packer         = (*Storage)(nil)
	_ stack.RestoreTxn     = (*txn)(nil)
	_ stack.UndoTxn        = (*txn)(nil)
	_ stack.DeleteTxn      = (*txn)(nil)
)

// lock takes mu and fails with ErrClosed (releasing it) when closed, or
// with the context's error.
func (s *Storage) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return stack.ErrClosed
	}
	return nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// LoadBefore implements stack.Storage (ZODB loadBefore).
func (s *Storage) LoadBefore(ctx context.Context, oid stack.Oid, before stack.Tid) (_ stack.Revision, err error) {
	defer stack.WrapOp(&err, s.node, "loadBefore", &oid, &before)
	if err := s.lock(ctx); err != nil {
		return stack.Revision{}, err
	}
	defer s.mu.Unlock()
	revs, ok := s.objects[oid]
	if !ok {
		return stack.Revision{}, &stack.NotFoundError{Oid: oid}
	}
	i := sort.Search(len(revs), func(i int) bool { return revs[i].tid >= before }) - 1
	if i < 0 {
		return stack.Revision{}, nil
	}
	if revs[i].data == nil {
		return stack.Revision{}, &stack.NotFoundError{Oid: oid}
	}
	r := stack.Revision{Data: clone(revs[i].data), Serial: revs[i].tid}
	if i+1 < len(revs) {
		r.NextSerial = revs[i+1].tid
	}
	return r, nil
}

// LoadSerial implements stack.Storage (ZODB loadSerial).
func (s *Storage) LoadSerial(ctx context.Context, oid stack.Oid, serial stack.Tid) (_ []byte, err error) {
	defer stack.WrapOp(&err, s.node, "loadSerial", &oid, &serial)
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	for _, r := range s.objects[oid] {
		if r.tid == serial && r.data != nil {
			return clone(r.data), nil
		}
	}
	return nil, &stack.NotFoundError{Oid: oid, Tid: serial}
}

// History implements stack.Storage (ZODB history): newest first, deletions
// included with size 0; size < 1 means 1.
func (s *Storage) History(ctx context.Context, oid stack.Oid, size int) (_ []stack.HistoryEntry, err error) {
	defer stack.WrapOp(&err, s.node, "history", &oid, nil)
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	revs, ok := s.objects[oid]
	if !ok {
		return nil, &stack.NotFoundError{Oid: oid}
	}
	if size < 1 {
		size = 1
	}
	var out []stack.HistoryEntry
	for i := len(revs) - 1; i >= 0 && len(out) < size; i-- {
		t := s.byTid[revs[i].tid]
		out = append(out, stack.HistoryEntry{
			Tid:         revs[i].tid,
			User:        clone(t.meta.User),
			Description: clone(t.meta.Description),
			Extension:   clone(t.meta.Extension),
			Size:        len(revs[i].data),
		})
	}
	return out, nil
}

// LastTransaction implements stack.Storage.
func (s *Storage) LastTransaction(ctx context.Context) (_ stack.Tid, err error) {
	defer stack.WrapOp(&err, s.node, "lastTransaction", nil, nil)
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	return s.last, nil
}

// NewOIDs implements stack.Storage: oids count up from 1, past every oid
// handed out or stored.
func (s *Storage) NewOIDs(ctx context.Context, n int) (_ []stack.Oid, err error) {
	defer stack.WrapOp(&err, s.node, "new_oids", nil, nil)
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	if n < 0 {
		return nil, &stack.StorageError{Msg: fmt.Sprintf("new_oids: negative count %d", n)}
	}
	oids := make([]stack.Oid, n)
	for i := range oids {
		oids[i] = s.nextOid
		s.nextOid++
	}
	return oids, nil
}

// Watch implements stack.Storage.
func (s *Storage) Watch(ch chan<- stack.Event) stack.Tid { return s.notifier.Watch(ch) }

// Unwatch implements stack.Storage.
func (s *Storage) Unwatch(ch chan<- stack.Event) { s.notifier.Unwatch(ch) }

// Info implements stack.Storage: Length counts live objects, Size the bytes
// of all stored revisions.
func (s *Storage) Info(ctx context.Context) (_ stack.Info, err error) {
	defer stack.WrapOp(&err, s.node, "get_info", nil, nil)
	if err := s.lock(ctx); err != nil {
		return stack.Info{}, err
	}
	defer s.mu.Unlock()
	info := stack.Info{Name: s.name}
	for _, revs := range s.objects {
		if revs[len(revs)-1].data != nil {
			info.Length++
		}
		for _, r := range revs {
			info.Size += int64(len(r.data))
		}
	}
	return info, nil
}

// Capabilities implements stack.Storage: everything but blobs and read-only.
func (s *Storage) Capabilities() stack.Capabilities {
	return stack.Capabilities{Iterate: true, RecordIter: true, Restore: true, Undo: true, Pack: true, Delete: true}
}

// Close implements stack.Storage: it drops the data and closes watchers.
func (s *Storage) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.objects, s.txns, s.byTid = nil, nil, nil
	s.mu.Unlock()
	s.notifier.Close()
	return nil
}

// Empty drops every transaction and object: the storage is as new, for
// a RAID rebuilding this child (raid_recover NAME rebuild). It waits for
// a transaction in progress. Watchers stay registered.
func (s *Storage) Empty(ctx context.Context) (err error) {
	defer stack.WrapOp(&err, s.node, "empty", nil, nil)
	select {
	case s.commit <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.commit }()
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.objects, s.txns, s.byTid = map[stack.Oid][]revision{}, nil, map[stack.Tid]*txnRecord{}
	s.last, s.nextOid = 0, 1
	s.announced = max(s.announced, s.notifier.Last())
	s.log.Info("emptied")
	return nil
}

// Iterate implements stack.Iterator. The iterator works on a snapshot of
// the transactions taken now.
func (s *Storage) Iterate(ctx context.Context, start, stop stack.Tid) (_ stack.TxnIterator, err error) {
	defer stack.WrapOp(&err, s.node, "iterator_start", nil, nil)
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var recs []stack.TxnRecord
	for _, t := range s.txns {
		if (start != 0 && t.meta.Tid < start) || (stop != 0 && t.meta.Tid > stop) {
			continue
		}
		recs = append(recs, copyTxn(t))
	}
	return &txnIterator{s: s, recs: recs}, nil
}

func copyTxn(t *txnRecord) stack.TxnRecord {
	r := stack.TxnRecord{TxnMeta: t.meta}
	r.User, r.Description, r.Extension = clone(t.meta.User), clone(t.meta.Description), clone(t.meta.Extension)
	for _, d := range t.records {
		d.Data = clone(d.Data)
		r.Records = append(r.Records, d)
	}
	return r
}

type txnIterator struct {
	s    *Storage
	recs []stack.TxnRecord
}

func (it *txnIterator) Next(ctx context.Context) (_ stack.TxnRecord, _ bool, err error) {
	defer stack.WrapOp(&err, it.s.node, "iterator_next", nil, nil)
	if err := it.s.lock(ctx); err != nil {
		return stack.TxnRecord{}, false, err
	}
	it.s.mu.Unlock()
	if len(it.recs) == 0 {
		return stack.TxnRecord{}, false, nil
	}
	r := it.recs[0]
	it.recs = it.recs[1:]
	return r, true, nil
}

func (it *txnIterator) Close() error { it.recs = nil; return nil }

// liveOids returns the oids whose current revision is not a deletion, sorted.
func (s *Storage) liveOids() []stack.Oid {
	var oids []stack.Oid
	for oid, revs := range s.objects {
		if revs[len(revs)-1].data != nil {
			oids = append(oids, oid)
		}
	}
	sort.Slice(oids, func(i, j int) bool { return oids[i] < oids[j] })
	return oids
}

// RecordIterNext implements stack.RecordIterator. When no live object has
// an oid >= from it returns a *NotFoundError.
func (s *Storage) RecordIterNext(ctx context.Context, from stack.Oid) (_ stack.DataRecord, _ stack.Oid, _ bool, err error) {
	defer stack.WrapOp(&err, s.node, "record_iternext", &from, nil)
	if err := s.lock(ctx); err != nil {
		return stack.DataRecord{}, 0, false, err
	}
	defer s.mu.Unlock()
	oids := s.liveOids()
	i := sort.Search(len(oids), func(i int) bool { return oids[i] >= from })
	if i == len(oids) {
		return stack.DataRecord{}, 0, false, &stack.NotFoundError{Oid: from}
	}
	revs := s.objects[oids[i]]
	cur := revs[len(revs)-1]
	rec := stack.DataRecord{Oid: oids[i], Tid: cur.tid, Data: clone(cur.data), DataTxn: cur.dataTxn}
	if i+1 < len(oids) {
		return rec, oids[i+1], true, nil
	}
	return rec, 0, false, nil
}

// UndoLog implements stack.Undoer (ZODB undoLog): newest first, stopping
// at a packed transaction and skipping other non-normal ones. The id is
// the tid's 8 bytes.
func (s *Storage) UndoLog(ctx context.Context, first, last int, match func(stack.UndoInfo) bool) (_ []stack.UndoInfo, err error) {
	defer stack.WrapOp(&err, s.node, "undoLog", nil, nil)
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	if last < 0 {
		last = first - last
	}
	var out []stack.UndoInfo
	i := 0
	for k := len(s.txns) - 1; k >= 0 && i < last; k-- {
		t := s.txns[k]
		if t.meta.Status == 'p' {
			break
		}
		if t.meta.Status != ' ' {
			continue
		}
		size := 0
		for _, r := range t.records {
			size += len(r.Data)
		}
		info := stack.UndoInfo{
			ID: t.meta.Tid.Bytes(), Tid: t.meta.Tid, Size: size,
			User: clone(t.meta.User), Description: clone(t.meta.Description), Extension: clone(t.meta.Extension),
		}
		if match == nil || match(info) {
			if i >= first {
				out = append(out, info)
			}
			i++
		}
	}
	return out, nil
}

// Pack implements stack.Packer. It keeps, for every object, the revision
// current at the pack time and all later ones; an object deleted at the
// pack time loses its revisions up to then. With gc, objects not reachable
// from the root (oid 0) in the pack-time state, nor from any revision
// after the pack time, lose their revisions up to the pack time too.
// Transactions up to the pack time that keep records get status 'p';
// those left empty disappear. When nothing would be removed, nothing
// changes (as FileStorage).
func (s *Storage) Pack(ctx context.Context, t time.Time, gc bool) (err error) {
	defer stack.WrapOp(&err, s.node, "pack", nil, nil)
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	pt := stack.TidFromTime(t)
	// keepFrom[oid] is the index of the first revision kept.
	keepFrom := map[stack.Oid]int{}
	for oid, revs := range s.objects {
		k := sort.Search(len(revs), func(i int) bool { return revs[i].tid > pt }) - 1
		switch {
		case k < 0:
			keepFrom[oid] = 0
		case revs[k].data == nil:
			keepFrom[oid] = k + 1
		default:
			keepFrom[oid] = k
		}
	}
	if gc {
		reachable := map[stack.Oid]bool{}
		var todo []stack.Oid
		visit := func(data []byte) error {
			refs, err := stack.Refs(data)
			if err != nil {
				return err
			}
			todo = append(todo, refs...)
			return nil
		}
		todo = append(todo, 0)
		for oid, revs := range s.objects {
			for _, r := range revs {
				if r.tid > pt && r.data != nil {
					if err := visit(r.data); err != nil {
						return &stack.StorageError{Msg: fmt.Sprintf("pack: references of object %s at %s: %v", oid, r.tid, err)}
					}
				}
			}
		}
		for len(todo) > 0 {
			oid := todo[len(todo)-1]
			todo = todo[:len(todo)-1]
			if reachable[oid] {
				continue
			}
			reachable[oid] = true
			revs := s.objects[oid]
			if k := keepFrom[oid]; k < len(revs) && revs[k].tid <= pt && revs[k].data != nil {
				if err := visit(revs[k].data); err != nil {
					return &stack.StorageError{Msg: fmt.Sprintf("pack: references of object %s at %s: %v", oid, revs[k].tid, err)}
				}
			}
		}
		for oid, revs := range s.objects {
			if !reachable[oid] {
				k := sort.Search(len(revs), func(i int) bool { return revs[i].tid > pt })
				keepFrom[oid] = k
			}
		}
	}
	removed := 0
	for _, k := range keepFrom {
		removed += k
	}
	if removed == 0 {
		return nil
	}
	kept := map[stack.Oid]map[stack.Tid]bool{}
	for oid, revs := range s.objects {
		revs = revs[keepFrom[oid]:]
		if len(revs) == 0 {
			delete(s.objects, oid)
			continue
		}
		s.objects[oid] = append([]revision(nil), revs...)
		kept[oid] = map[stack.Tid]bool{}
		for _, r := range revs {
			kept[oid][r.tid] = true
		}
	}
	var txns []*txnRecord
	for _, t := range s.txns {
		var recs []stack.DataRecord
		for _, r := range t.records {
			if kept[r.Oid][t.meta.Tid] {
				if t.meta.Tid <= pt {
					r.DataTxn = 0 // as FileStorage: data inline, no backpointer before the pack time
				}
				recs = append(recs, r)
			}
		}
		if t.meta.Tid <= pt {
			if len(recs) == 0 {
				delete(s.byTid, t.meta.Tid)
				continue
			}
			t.meta.Status = 'p'
		}
		t.records = recs
		txns = append(txns, t)
	}
	for oid, revs := range s.objects {
		for i := range revs {
			if revs[i].tid <= pt {
				revs[i].dataTxn = 0
			}
		}
		s.objects[oid] = revs
	}
	s.txns = txns
	s.log.WithFields(logrus.Fields{"pack_tid": pt.String(), "gc": gc, "removed": removed}).Info("packed")
	return nil
}

// pending is one object write of an open transaction.
type pending struct {
	oid     stack.Oid
	serial  stack.Tid // expected current tid, checked at Vote
	check   bool      // whether serial is checked (not for Restore and Undo)
	data    []byte    // nil: deletion or undone creation
	dataTxn stack.Tid
}

type txnState int

const (
	txnOpen txnState = iota
	txnVoted
	txnDone
)

// txn is an open transaction; it holds the storage's commit token.
type txn struct {
	s        *Storage
	meta     stack.TxnMeta
	state    txnState
	writes   []*pending // in first-store order; a later store of an oid replaces its entry
	byOid    map[stack.Oid]*pending
	checks   map[stack.Oid]stack.Tid
	resolved []stack.Oid // oids changed by Undo
}

// Begin implements stack.Storage (ZODB tpc_begin). It blocks until the
// previous transaction finishes or aborts, or ctx ends. An explicit tid
// must follow the last committed one.
func (s *Storage) Begin(ctx context.Context, meta stack.TxnMeta) (_ stack.Txn, err error) {
	defer stack.WrapOp(&err, s.node, "tpc_begin", nil, nil)
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	s.mu.Unlock()
	select {
	case s.commit <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := s.lock(ctx); err != nil {
		<-s.commit
		return nil, err
	}
	defer s.mu.Unlock()
	if meta.Tid != 0 && meta.Tid <= s.last {
		<-s.commit
		return nil, &stack.StorageError{Msg: fmt.Sprintf("tpc_begin: explicit tid %s does not follow the last transaction %s", meta.Tid, s.last)}
	}
	if meta.Status == 0 {
		meta.Status = ' '
	}
	meta.User, meta.Description, meta.Extension = clone(meta.User), clone(meta.Description), clone(meta.Extension)
	return &txn{s: s, meta: meta, byOid: map[stack.Oid]*pending{}, checks: map[stack.Oid]stack.Tid{}}, nil
}

// open checks the transaction may still take writes.
func (t *txn) open(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.state != txnOpen {
		return fmt.Errorf("write after vote or end: %w", stack.ErrTxnState)
	}
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	if t.s.closed {
		return stack.ErrClosed
	}
	return nil
}

func (t *txn) put(p *pending) {
	if old, ok := t.byOid[p.oid]; ok {
		*old = *p
		return
	}
	t.byOid[p.oid] = p
	t.writes = append(t.writes, p)
}

// Store implements stack.Txn; conflicts are reported by Vote.
func (t *txn) Store(ctx context.Context, oid stack.Oid, serial stack.Tid, data []byte) (err error) {
	defer stack.WrapOp(&err, t.s.node, "store", &oid, nil)
	if err := t.open(ctx); err != nil {
		return err
	}
	if len(data) == 0 {
		return stack.ErrEmptyData
	}
	t.put(&pending{oid: oid, serial: serial, check: true, data: clone(data)})
	return nil
}

// Delete implements stack.DeleteTxn; a stale serial fails at Vote.
func (t *txn) Delete(ctx context.Context, oid stack.Oid, serial stack.Tid) (err error) {
	defer stack.WrapOp(&err, t.s.node, "deleteObject", &oid, nil)
	if err := t.open(ctx); err != nil {
		return err
	}
	t.put(&pending{oid: oid, serial: serial, check: true})
	return nil
}

// Restore implements stack.RestoreTxn: no conflict check.
func (t *txn) Restore(ctx context.Context, oid stack.Oid, data []byte, prevTxn stack.Tid) (err error) {
	defer stack.WrapOp(&err, t.s.node, "restore", &oid, nil)
	if err := t.open(ctx); err != nil {
		return err
	}
	if data != nil && len(data) == 0 {
		return stack.ErrEmptyData
	}
	t.put(&pending{oid: oid, data: clone(data), dataTxn: prevTxn})
	return nil
}

// CheckCurrentSerial implements stack.Txn; checked at Vote.
func (t *txn) CheckCurrentSerial(ctx context.Context, oid stack.Oid, serial stack.Tid) (err error) {
	defer stack.WrapOp(&err, t.s.node, "checkCurrentSerial", &oid, nil)
	if err := t.open(ctx); err != nil {
		return err
	}
	t.checks[oid] = serial
	return nil
}

// Undo implements stack.UndoTxn (ZODB transactional undo): each object the
// undone transaction wrote goes back to its state before it; it fails with
// *UndoError when an object changed since (unless the later change wrote
// the same bytes) or the transaction is unknown or packed.
func (t *txn) Undo(ctx context.Context, id []byte) (_ []stack.Oid, err error) {
	defer stack.WrapOp(&err, t.s.node, "undo", nil, nil)
	if err := t.open(ctx); err != nil {
		return nil, err
	}
	tid, err := stack.TidFromBytes(id)
	if err != nil {
		return nil, &stack.UndoError{Reason: "invalid transaction id"}
	}
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.byTid[tid]
	if !ok {
		return nil, &stack.UndoError{Reason: fmt.Sprintf("transaction %s not found", tid)}
	}
	if rec.meta.Status != ' ' {
		return nil, &stack.UndoError{Reason: "non-undoable transaction"}
	}
	var ps []*pending
	for _, r := range rec.records {
		revs := s.objects[r.Oid]
		cur := revs[len(revs)-1]
		if p, ok := t.byOid[r.Oid]; ok {
			cur = revision{tid: 0, data: p.data}
		}
		if cur.tid != tid && !bytes.Equal(cur.data, r.Data) {
			return nil, &stack.UndoError{Oid: r.Oid, Reason: "some data were modified by a later transaction"}
		}
		i := sort.Search(len(revs), func(i int) bool { return revs[i].tid >= tid }) - 1
		p := &pending{oid: r.Oid}
		if i >= 0 {
			p.data, p.dataTxn = clone(revs[i].data), revs[i].tid
			if p.data == nil {
				p.dataTxn = 0
			}
		}
		ps = append(ps, p)
	}
	oids := make([]stack.Oid, len(ps))
	for i, p := range ps {
		t.put(p)
		oids[i] = p.oid
		t.resolved = append(t.resolved, p.oid)
	}
	return oids, nil
}

// Vote implements stack.Txn: it checks every serial and returns all write
// conflicts as stack.Conflicts, or the first read conflict.
func (t *txn) Vote(ctx context.Context) (_ []stack.Oid, err error) {
	defer stack.WrapOp(&err, t.s.node, "tpc_vote", nil, nil)
	if err := t.open(ctx); err != nil {
		return nil, err
	}
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	current := func(oid stack.Oid) stack.Tid {
		if revs := s.objects[oid]; len(revs) > 0 {
			return revs[len(revs)-1].tid
		}
		return 0
	}
	var conflicts stack.Conflicts
	for _, p := range t.writes {
		if cur := current(p.oid); p.check && cur != p.serial {
			conflicts = append(conflicts, &stack.ConflictError{Oid: p.oid, Committed: cur, Read: p.serial, Data: clone(p.data)})
		}
	}
	if len(conflicts) > 0 {
		return nil, conflicts
	}
	oids := make([]stack.Oid, 0, len(t.checks))
	for oid := range t.checks {
		oids = append(oids, oid)
	}
	sort.Slice(oids, func(i, j int) bool { return oids[i] < oids[j] })
	for _, oid := range oids {
		if cur := current(oid); cur != t.checks[oid] {
			return nil, &stack.ReadConflictError{Oid: oid, Committed: cur, Read: t.checks[oid]}
		}
	}
	t.state = txnVoted
	return append([]stack.Oid(nil), t.resolved...), nil
}

// Finish implements stack.Txn: it commits, publishes the event and
// releases the commit token.
func (t *txn) Finish(ctx context.Context) (_ stack.Tid, err error) {
	defer stack.WrapOp(&err, t.s.node, "tpc_finish", nil, nil)
	if t.state != txnVoted {
		return 0, fmt.Errorf("finish before vote: %w", stack.ErrTxnState)
	}
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	t.state = txnDone
	defer func() { <-s.commit }()
	if s.closed {
		return 0, stack.ErrClosed
	}
	tid := t.meta.Tid
	if tid == 0 {
		tid = stack.NewTid(s.last, time.Now())
	}
	rec := &txnRecord{meta: t.meta}
	rec.meta.Tid = tid
	ev := stack.Event{Tid: tid}
	for _, p := range t.writes {
		rec.records = append(rec.records, stack.DataRecord{Oid: p.oid, Tid: tid, Data: p.data, DataTxn: p.dataTxn})
		s.objects[p.oid] = append(s.objects[p.oid], revision{tid: tid, data: p.data, dataTxn: p.dataTxn})
		if p.oid >= s.nextOid {
			s.nextOid = p.oid + 1
		}
		ev.Oids = append(ev.Oids, p.oid)
	}
	s.txns = append(s.txns, rec)
	s.byTid[tid] = rec
	s.last = tid
	if tid <= s.announced {
		return tid, nil
	}
	if err := s.notifier.Publish(ev); err != nil {
		s.log.WithError(err).WithField("tid", tid.String()).Error("invalidation not published")
	}
	return tid, nil
}

// Abort implements stack.Txn; it is idempotent.
func (t *txn) Abort(ctx context.Context) error {
	if t.state == txnDone {
		return nil
	}
	t.state = txnDone
	<-t.s.commit
	return nil
}
